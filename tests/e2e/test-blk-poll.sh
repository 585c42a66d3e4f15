#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk polling and the null device, no VM:
#  - null:SIZE serves `vhu check --null` and verified-size I/O; bad sizes
#    are refused with a message;
#  - every polling mode (default adaptive, --poll-us 0, --poll always,
#    shared --threads, --aio threads) serves verified I/O;
#  - an idle daemon stops polling: with a front-end connected and its
#    queues started but idle, the daemon's CPU ticks over a 2 s window stay
#    far below a spinning thread's (a functional check that polling ends,
#    not a performance claim: at most 10 ticks, 5% of a CPU); --poll always
#    is the control that does spin (at least 30 ticks even on a busy host).
# Usage: tests/e2e/test-blk-poll.sh BUILD_DIR    (prints TAP)
set -u
. "$(dirname "$0")/lib.sh"

BUILD=$(cd "${1:-build}" 2>/dev/null && pwd)
BIN=$BUILD/tools/vhu-blk
VHU=$BUILD/tools/vhu
[ -x "$BIN" ] && [ -x "$VHU" ] || skip_all "vhu-blk or vhu not built"

T=$(e2e_tmpdir vhu-blk-poll)
D=
B=
cleanup() { e2e_stop "$B"; e2e_stop "$D"; rm -rf "$T"; }
trap cleanup EXIT

wait_sock() { for _ in $(seq 50); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null; }
# start ARGS...: a daemon on $T/s (pid in D)
start() {
	rm -f "$T/s"
	"$BIN" --socket-path "$T/s" "$@" 2>"$T/log" &
	D=$!
	wait_sock "$T/s"
}
# verified NAME ARGS...: write a pattern, read it back verified
verified() {
	local name=$1; shift
	timeout 60 "$VHU" bench "$T/s" --quiet --pattern randwrite --verify \
		--count 2000 --size 4M "$@" >/dev/null 2>>"$T/log" &&
	timeout 60 "$VHU" bench "$T/s" --quiet --pattern randread --verify \
		--count 2000 --size 4M "$@" >/dev/null 2>>"$T/log"
	check_rc "$name" $? "$(tail -3 "$T/log")"
}

# ---- the null device
start --blk-file null:64M
check "null:64M starts" kill -0 "$D"
OUT=$(timeout 120 "$VHU" check --null "$T/s" 2>/dev/null | tail -1)
check "vhu check --null passes on null:64M ($OUT)" grep -q " 0 failed" <<<"$OUT"
OUT=$(timeout 20 "$VHU" probe "$T/s" 2>&1)
check "null:64M has 64 MiB" grep -q "capacity: 131072 sectors" <<<"$OUT"
OUT=$(timeout 30 "$VHU" bench "$T/s" --quiet --pattern randrw --count 4000 --backend-pid "$D" 2>&1)
check_rc "null device serves reads and writes" $? "$OUT"
check "bench reports both sides' CPU" \
	bash -c 'grep -q "^front-end CPU" <<<"$1" && grep -q "^back-end CPU" <<<"$1"' _ "$OUT"
e2e_stop "$D"; D=
for bad in null:0 null:513 null:12Q null:; do
	"$BIN" --blk-file "$bad" --socket-path "$T/x" 2>"$T/err"; rc=$?
	check "$bad is refused with a reason" \
		bash -c "[ $rc -ne 0 ] && grep -q 'null:SIZE needs a size' '$T/err'"
done

# ---- every polling mode serves verified I/O
truncate -s 8M "$T/img"
for mode in "" "--poll-us 0" "--poll-us 1000" "--poll always" \
	    "--num-queues 2 --threads 1" "--aio threads"; do
	# shellcheck disable=SC2086
	start --blk-file "$T/img" $mode
	q=1; [[ $mode == *num-queues* ]] && q=2
	verified "verified I/O with ${mode:-the default (adaptive)}" --queues $q
	e2e_stop "$D"; D=
done
"$BIN" --blk-file "$T/img" --socket-path "$T/x" --poll-us -1 2>"$T/err"
check "--poll-us -1 is refused" grep -q "poll-us must be" "$T/err"
"$BIN" --blk-file "$T/img" --socket-path "$T/x" --poll sometimes 2>"$T/err"
check "--poll sometimes is refused" grep -q "poll takes 'always'" "$T/err"

# ---- idle CPU: started but idle queues after a burst of requests
# idle_ticks ARGS...: the daemon's CPU ticks (1/100 s) over 2 s while a
# front-end holds its queues started and idle.
idle_ticks() {
	start --blk-file "$T/img" "$@"
	rm -f "$T/held"
	timeout 60 "$VHU" bench "$T/s" --quiet --iodepth 1 --count 20000 \
		--hold 4 >/dev/null 2>"$T/held" &
	B=$!
	for _ in $(seq 300); do grep -q holding "$T/held" 2>/dev/null && break; sleep 0.1; done
	sleep 0.3
	local a b
	a=$(ticks "$D"); sleep 2; b=$(ticks "$D")
	e2e_stop "$B"; B=
	e2e_stop "$D"; D=
	echo $((b - a))
}
IDLE=$(idle_ticks)
check "idle daemon (default adaptive polling) stops polling: $IDLE ticks in 2 s" \
	[ "$IDLE" -le 10 ]
IDLE=$(idle_ticks --poll-us 1000)
check "idle daemon (--poll-us 1000) stops polling: $IDLE ticks in 2 s" \
	[ "$IDLE" -le 10 ]
SPIN=$(idle_ticks --poll always)
check "--poll always spins while idle (the check's control): $SPIN ticks in 2 s" \
	[ "$SPIN" -ge 30 ]

finish
