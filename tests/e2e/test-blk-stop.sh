#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk stopping every queue at once behind an NBD server that does not
# answer (nbdkit's delay filter holding every read for 60 s), no VM: four
# queues busy with reads, the front-end goes away (a disconnect stops all
# queues); again, and the export shrinks (refresh quiesces every queue).
# Each queue gives up on its unanswered requests after 5 s; the queues are
# all asked to stop first and waited for together, so the control socket
# answers after about one give-up period, not one per queue (about 20 s for
# four queues when they stopped one after the other), each time.  A new
# session then serves verified I/O from a server that answers.
# Usage: tests/e2e/test-blk-stop.sh BUILD_DIR    (prints TAP)
set -u

. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
e2e_bins "${1:-build}" tools/vhu-blk tools/vhu
"$BIN" --print-capabilities | grep -q '"nbd"' ||
	skip_all "vhu-blk built without libnbd (meson -Dnbd=enabled)"
command -v nbdkit >/dev/null || skip_all "nbdkit not installed (scripts/deps)"
e2e_setup vhu-blk-stop
e2e_diag() { sed 's/^/# /' "$T"/log* 2>/dev/null | tail -12; }
export VHU_LOG=info
ms() { date +%s%3N; }
Q=4

# nbdkit_start ARGS...: an nbdkit on $T/nbd.sock serving $T/disk.img; NK
# is its pid.
nbdkit_start() {
	rm -f "$T/nbd.sock"
	nbdkit -f --unix "$T/nbd.sock" "$@" 2>>"$T/log.nbdkit" &
	NK=$!
	PIDS+=("$NK")
	wait_for "$T/nbd.sock"
}
ctl() { "$VHU" ctl --timeout 60 "$T/ctl" "$@" 2>&1; }
# How many queues hold requests in flight now.
busy_queues() {
	ctl --json stats | python3 -c '
import json, sys
print(sum(1 for q in json.load(sys.stdin)["queues"] if q["in_flight"] > 0))'
}

# held_server: an nbdkit that holds every read for 60 s (a fresh one each
# time: nbdkit 1.32, Debian 12's, now and then aborts when a connection
# closes under a delayed reply, raw_send_socket: Assertion `sock >= 0').
held_server() {
	[ -n "${NK:-}" ] && { kill -9 "$NK"; wait "$NK"; } 2>/dev/null
	nbdkit_start --filter=delay file "$T/disk.img" delay-read=60
}
# load NAME: random reads on every queue, below 8 MiB (the export shrinks
# to 12 MiB under them), B its pid; until every queue has reads in flight.
load() {
	local n=0
	"$VHU" bench "$T/v" --quiet --pattern randread --queues $Q --iodepth 4 \
		--size 8M --time 50 >"$T/bench.$1" 2>&1 &
	B=$!
	PIDS+=("$B")
	for _ in $(seq 50); do
		n=$(busy_queues)
		[ "$n" = "$Q" ] && break
		sleep 0.1
	done
	check "$1: reads in flight on all $Q queues ($n)" test "$n" = "$Q"
}
gave_up() { grep -c "queue stops: .* unanswered by .* after 5 s failed" "$T/log.vhu-blk"; }

truncate -s 16M "$T/disk.img"
check "nbdkit up, every read held 60 s" held_server
rm -f "$T/v" "$T/ctl"
e2e_daemon "$T/log.vhu-blk" --blk-file "nbd+unix:///?socket=$T/nbd.sock" \
	--socket-path "$T/v" --control "$T/ctl" --num-queues $Q
check "vhu-blk up with $Q queues" wait_for "$T/v"

# --- a disconnect stops every queue ---
load "disconnect"
check "disconnect: the bench is still running when its front-end goes" kill -0 "$B"
g0=$(gave_up)
{ kill -9 "$B"; wait "$B"; } 2>/dev/null
t0=$(ms)
# Let the daemon see the disconnect first: the control request must wait
# behind the stop of the queues.
sleep 0.5
out=$(ctl info); rc=$?
t=$(( $(ms) - t0 ))
echo "# ctl info answered $t ms after the disconnect"
check "disconnect: ctl info answers after the stop" \
	bash -c '[ "$1" = 0 ] && grep -q "^backend: nbd" <<<"$2"' _ "$rc" "$out"
# One give-up period (5 s) for all queues; one after the other took 20 s.
check "disconnect: ... within one give-up period for $Q queues (< 12 s: $t ms)" \
	test "$t" -lt 12000
check "disconnect: ... after the queues gave up (>= 4 s: $t ms)" test "$t" -ge 4000
check "disconnect: every queue gave up on its unanswered reads" \
	test $(( $(gave_up) - g0 )) -eq $Q

# --- refresh after the export shrank quiesces every queue (to read the
# size with no write in flight) ---
check "nbdkit up again, every read held 60 s" held_server
load "shrink"
truncate -s 12M "$T/disk.img"
check "shrink: the bench is still running when refresh quiesces" kill -0 "$B"
g0=$(gave_up)
t0=$(ms)
out=$(ctl refresh); rc=$?
t=$(( $(ms) - t0 ))
echo "# ctl refresh answered in $t ms"
check "shrink: refresh answers" test -n "$out"
check "shrink: ... within one give-up period for $Q queues (< 12 s: $t ms)" \
	test "$t" -lt 12000
check "shrink: ... after the queues gave up (>= 4 s: $t ms)" test "$t" -ge 4000
check "shrink: every queue gave up on its unanswered reads" \
	test $(( $(gave_up) - g0 )) -eq $Q
# The size is read again after the quiesce: from no server when nbdkit
# aborted as the queues gave up.
if kill -0 "$NK" 2>/dev/null; then
	check "shrink: refresh sees the new size" \
		bash -c '[ "$1" = 0 ] && grep -q "^size: 12582912" <<<"$2"' _ "$rc" "$out"
else
	skip "shrink: refresh sees the new size" "nbdkit aborted when the queues gave up"
fi
{ kill -9 "$B"; wait "$B"; } 2>/dev/null
# That disconnect stops the queues too (up to 5 s): a new front-end's
# handshake must not wait behind it.
sleep 0.5
ctl info >/dev/null

# --- the server answers again (no delay): the next session serves ---
{ kill -9 "$NK"; wait "$NK"; } 2>/dev/null
check "nbdkit up again, answering" nbdkit_start file "$T/disk.img"
check "next session: writes across $Q queues" \
	bash -c 'timeout 60 "$1" bench "$2" --quiet --pattern write --verify --size 8M \
		--count 2048 --seed 5 --queues "$3" >"$4" 2>&1 && grep -q "errors: 0$" "$4"' \
	_ "$VHU" "$T/v" $Q "$T/bench.write"
check "next session: every block reads back" \
	bash -c 'timeout 60 "$1" bench "$2" --quiet --pattern read --verify --size 8M \
		--count 2048 --seed 5 --queues "$3" >"$4" 2>&1 && grep -q "errors: 0$" "$4" &&
		! grep -q "mismatches: [1-9]" "$4"' \
	_ "$VHU" "$T/v" $Q "$T/bench.read"
check "daemon still running" kill -0 "$D"
e2e_stop "$D"
e2e_stop "$NK"

finish
