#!/bin/sh
# SPDX-License-Identifier: MIT
# bench/compare.sh [BUILD] - examples/smtpd against Postfix's smtp-sink on
# loopback, and with its durable spool against a real, private Postfix
# (its own configuration, queue and port, started and stopped here; the
# system's Postfix is never touched), same run, interleaved (see
# bench/compare.py). Needs `make bench`, Postfix and its test tools
# (`make deps`), strace, and root (Postfix's daemons drop privileges).
set -e
cd "$(dirname "$0")/.."
BUILD=${1:-build}
make --no-print-directory "$BUILD/examples/smtpd" "$BUILD/bench/smtp-load" \
    "$BUILD/bench/floor" >/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 bench/compare.py "$BUILD"
