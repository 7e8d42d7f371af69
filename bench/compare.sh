#!/bin/sh
# SPDX-License-Identifier: MIT
# bench/compare.sh [BUILD] - examples/smtpd against Postfix's smtp-sink on
# loopback, same run, interleaved (see bench/compare.py). Needs `make
# bench` and Postfix's test tools (`make deps`); only smtp-sink and
# smtp-source run, never Postfix's own daemon.
set -e
cd "$(dirname "$0")/.."
BUILD=${1:-build}
make --no-print-directory "$BUILD/examples/smtpd" "$BUILD/bench/smtp-load" >/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 bench/compare.py "$BUILD"
