#!/bin/sh
# SPDX-License-Identifier: MIT
# bench/rcpt-cost.sh [BUILD] - what one RCPT costs examples/smtpd, in CPU
# instructions counted by callgrind (deterministic: no clock, so another
# benchmark on the machine does not move it). smtpd runs under callgrind
# twice, each time fed MSGS messages by bench/smtp-load over 2 pipelining
# sessions: with R recipients each, then with 1; the difference divided
# by MSGS*(R-1) is the cost of one more recipient (library + smtpd), the
# first run's total divided by MSGS the cost of an R-recipient message
# (start-up included). Loopback only; PORT (default: a free one), MSGS
# (400), R (50), KEEP=1 keeps the profiles (printed) for callgrind_annotate.
set -e
cd "$(dirname "$0")/.."
BUILD=${1:-build}
MSGS=${MSGS:-400}
R=${R:-50}
make --no-print-directory "$BUILD/examples/smtpd" "$BUILD/bench/smtp-load" \
    >/dev/null
command -v valgrind >/dev/null || { echo "rcpt-cost: needs valgrind"; exit 1; }
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/rcpt-cost.XXXXXX")

# run NRCPT: prints the instructions smtpd spent serving MSGS messages
run() {
    out="$TMP/cg.$1"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BUILD/examples/smtpd" --listen "127.0.0.1:$PORT" \
        --hostname bench.test --local-domain example.test \
        --max-clients 20000 --max-size 20000000 --spool "$TMP/spool" \
        --discard --no-fsync >"$TMP/log.$1" 2>&1 &
    pid=$!
    i=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT)).close()" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 300 ] || { kill "$pid"; echo "rcpt-cost: smtpd did not start" >&2; exit 1; }
        sleep 0.1
    done
    "$BUILD/bench/smtp-load" --server "127.0.0.1:$PORT" -s 2 -m "$MSGS" \
        -l 1024 -r "$1" --quiet >"$TMP/load.$1"
    kill "$pid"; wait "$pid" || true
    sed -n 's/^summary: //p' "$out"
}
# (the readiness probe is one connection without a command: a few
# thousand instructions, the same in both runs)
many=$(run "$R")
one=$(run 1)
echo "smtpd, $MSGS messages of 1024 octets over 2 sessions (callgrind, Ir):"
echo "  $R recipients: $many instructions, $((many / MSGS)) per message"
echo "  1 recipient:  $one instructions, $((one / MSGS)) per message"
echo "  per extra recipient: $(( (many - one) / (MSGS * (R - 1)) ))"
if [ -n "$KEEP" ]; then
    echo "profiles: $TMP/cg.$R $TMP/cg.1 (callgrind_annotate --inclusive=yes)"
else
    rm -rf "$TMP"
fi
