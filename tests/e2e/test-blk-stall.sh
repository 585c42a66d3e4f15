#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk with hostile front-ends, no VM: one that sends half a vhost-user
# message and goes quiet must not hold up the control socket or SIGTERM
# (the session's processing never waits for the rest of a message).
# Usage: tests/e2e/test-blk-stall.sh BUILD_DIR    (prints TAP)
set -u

BUILD=${1:-build}
B=$(cd "$BUILD" 2>/dev/null && pwd)
BIN=$B/tools/vhu-blk
VHU=$B/tools/vhu
if [ ! -x "$BIN" ] || [ ! -x "$VHU" ]; then
	echo "1..0 # SKIP vhu-blk or vhu not built"
	exit 0
fi

T=$(mktemp -d /tmp/vhu-blk-stall.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

N=0
FAILED=0
ok() { N=$((N + 1)); echo "ok $N - $1"; }
not_ok() { N=$((N + 1)); FAILED=$((FAILED + 1)); echo "not ok $N - $1"; }
check() { # check NAME COMMAND...
	local name=$1; shift
	if "$@"; then ok "$name"; else not_ok "$name"; fi
}
wait_for() { # wait_for PATH: until a socket exists (5 s)
	for _ in $(seq 50); do [ -S "$1" ] && return 0; sleep 0.1; done
	return 1
}
ms() { date +%s%3N; }

# A front-end that sends GET_FEATURES' header minus 4 bytes (with an fd on
# the first byte), then holds the connection open and silent until killed.
cat > "$T/half.py" <<'PY'
import os, socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
hdr = struct.pack("<III", 1, 1, 0)           # GET_FEATURES, version 1
r, w = os.pipe()
s.sendmsg([hdr[:8]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                        struct.pack("i", r))])
open(sys.argv[2], "w").close()               # tell the script: sent
time.sleep(60)
PY

truncate -s 4M "$T/img"
# start_half LOG: a daemon (pid in D) with a half-message front-end (F).
start_half() {
	rm -f "$T/sent" "$T/c"
	"$BIN" --blk-file "$T/img" --socket-path "$T/s" --control "$T/c" 2>"$1" &
	D=$!; PIDS+=($D)
	wait_for "$T/c" || return 1
	python3 "$T/half.py" "$T/s" "$T/sent" &
	F=$!; PIDS+=($F)
	for _ in $(seq 50); do [ -e "$T/sent" ] && break; sleep 0.1; done
	sleep 0.2 # let the daemon read the fragment
	test -e "$T/sent"
}

check "daemon up, front-end sent half a header" start_half "$T/log"
t0=$(ms)
out=$("$VHU" ctl --timeout 10 "$T/c" info 2>&1)
t=$(( $(ms) - t0 ))
echo "# vhu ctl info answered in $t ms"
check "control socket answers while a front-end holds half a message" \
	test -n "$(echo "$out" | grep "^size: 4194304")"
# Before the fix the daemon sat in a 5 s poll for the rest of the message.
check "... at once (< 1 s)" test "$t" -lt 1000
check "the stalled front-end is still connected (not dropped early)" \
	kill -0 $F

# The daemon gives up on the half message after its stall time (5 s).
for _ in $(seq 80); do
	grep -q "part of a message" "$T/log" && break
	sleep 0.1
done
check "a front-end silent mid-message is dropped after the stall time" \
	grep -q "part of a message" "$T/log"
check "daemon still serving afterwards" \
	test -n "$("$VHU" ctl --timeout 5 "$T/c" info 2>&1 | grep "^size: 4194304")"
kill -TERM $D
wait $D
check "SIGTERM exits 0 after" test $? -eq 0
kill $F 2>/dev/null

check "again: daemon up, front-end sent half a header" start_half "$T/log2"
t0=$(ms)
kill -TERM $D
rc=124
for _ in $(seq 300); do
	if ! kill -0 $D 2>/dev/null; then wait $D; rc=$?; break; fi
	sleep 0.02
done
t=$(( $(ms) - t0 ))
echo "# SIGTERM to exit: $t ms"
check "SIGTERM exits 0 while a front-end holds half a message" test $rc -eq 0
check "... promptly (< 1 s)" test "$t" -lt 1000

echo "1..$N"
[ $FAILED -eq 0 ]
