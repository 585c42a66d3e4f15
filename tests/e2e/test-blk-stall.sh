#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk with hostile front-ends, no VM: one that sends half a vhost-user
# message and goes quiet must not hold up the control socket or SIGTERM
# (the session's processing never waits for the rest of a message).
# Usage: tests/e2e/test-blk-stall.sh BUILD_DIR    (prints TAP)
set -u

. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
e2e_bins "${1:-build}" tools/vhu-blk tools/vhu
e2e_setup vhu-blk-stall
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
	e2e_daemon "$1" --blk-file "$T/img" --socket-path "$T/s" --control "$T/c"
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

finish
