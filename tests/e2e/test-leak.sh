#!/usr/bin/env bash
# Resource-leak test for the vhu-blk daemon: 500 cycles of connect, full
# handshake, verified I/O and disconnect, with the daemon's open fds and
# resident memory sampled after a warm-up and at the end.
#
#   tests/e2e/test-leak.sh BUILD [CYCLES]
#
# Each cycle is one `vhu bench` run (its own connection: features, memory
# table, rings, I/O, disconnect): even cycles write a pattern, odd cycles
# read it back with --verify (pairs alternate between one and two of the
# device's two queues, split and packed rings); every 50th cycle adds a
# `vhu probe`.
# A session that leaks one fd or one mapping per connection shows up as
# hundreds here.
set -u

build=${1:?usage: test-leak.sh BUILD [CYCLES]}
cycles=${2:-500}
warmup=20
rss_bound_kb=2048          # RSS may grow by less than this after warm-up
budget=240                 # seconds for all cycles

blk=$build/tools/vhu-blk
vhu=$build/tools/vhu
if [ ! -x "$blk" ] || [ ! -x "$vhu" ]; then
	echo "1..1"
	echo "ok 1 - leak test # SKIP vhu-blk or vhu not built in $build"
	exit 0
fi

echo "1..7"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vhu-leak.XXXXXX")
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

sock=$tmp/blk.sock
img=$tmp/disk.img
truncate -s 16M "$img"
"$blk" --socket-path "$sock" --blk-file "$img" --num-queues 2 \
	--control "$tmp/ctl.sock" \
	>"$tmp/blk.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	[ -S "$sock" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
if [ ! -S "$sock" ]; then
	fail=1; echo "not ok 1 - vhu-blk started"
	sed 's/^/# /' "$tmp/blk.log"
	for i in 2 3 4 5 6 7; do echo "not ok $i - # vhu-blk did not start"; done
	exit 1
fi
echo "ok 1 - vhu-blk started (pid $pid)"

fds() { ls "/proc/$pid/fd" 2>/dev/null | wc -l; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null; }
maps() { wc -l <"/proc/$pid/maps" 2>/dev/null; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$pid/status" 2>/dev/null; }

# The daemon handles a disconnect asynchronously: wait until its fd
# count stops changing (or reaches want) before sampling.
settle() {
	local want=${1:-0} prev=-1 cur
	for _ in $(seq 50); do
		cur=$(fds)
		if [ "$want" -gt 0 ] && [ "$cur" -le "$want" ]; then break; fi
		if [ "$want" -eq 0 ] && [ "$cur" = "$prev" ]; then break; fi
		prev=$cur
		sleep 0.1
	done
}

cycle() {
	# A new pattern seed per write/read pair: a read that returned an
	# older cycle's data fails the check.
	# Pairs alternate between one and two queues (two worker threads),
	# and every other two pairs use packed rings.
	local k=$1 out seed=$((k / 2 + 1)) q=$((k / 2 % 2 + 1)) pk=
	[ $((k / 4 % 2)) -eq 1 ] && pk=--packed
	if [ $((k % 2)) -eq 0 ]; then
		out=$(timeout 30 "$vhu" bench "$sock" --pattern write --verify \
			--seed "$seed" --queues "$q" ${pk:+"$pk"} --bs 4k --size 64k --count 16 --iodepth 4 \
			--quiet 2>&1) || { echo "$out"; return 1; }
	else
		out=$(timeout 30 "$vhu" bench "$sock" --pattern read --verify \
			--seed "$seed" --queues "$q" ${pk:+"$pk"} --bs 4k --size 64k --count 16 --iodepth 4 \
			--quiet 2>&1) || { echo "$out"; return 1; }
		case $out in
		*"verify: 16 reads checked, 0 mismatches"*) ;;
		*) echo "$out"; return 1 ;;
		esac
	fi
	if [ $((k % 50)) -eq 49 ]; then
		out=$(timeout 30 "$vhu" probe "$sock" 2>&1) || { echo "$out"; return 1; }
	fi
	return 0
}

fail=0
errors=0
first_error=
start=$SECONDS
fd0= rss0= maps0= thr0=
done_cycles=0
for k in $(seq 0 $((cycles - 1))); do
	if ! msg=$(cycle "$k"); then
		errors=$((errors + 1))
		[ -n "$first_error" ] || first_error="cycle $k: $msg"
	fi
	done_cycles=$((k + 1))
	if [ "$done_cycles" -eq "$warmup" ]; then
		settle
		fd0=$(fds)
		rss0=$(rss_kb)
		maps0=$(maps)
		thr0=$(threads)
		echo "# after $warmup warm-up cycles: $fd0 open fds, RSS ${rss0} kB, $maps0 mappings, $thr0 threads"
	fi
	if [ $((done_cycles % 100)) -eq 0 ]; then
		echo "# $done_cycles cycles, $errors errors, $(fds) fds, RSS $(rss_kb) kB, $((SECONDS - start))s"
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		first_error=${first_error:-"vhu-blk died at cycle $k"}
		errors=$((errors + 1))
		break
	fi
	if [ $((SECONDS - start)) -gt "$budget" ]; then
		first_error=${first_error:-"time budget of ${budget}s used up at cycle $k"}
		errors=$((errors + 1))
		break
	fi
done

if [ "$errors" -eq 0 ] && [ "$done_cycles" -eq "$cycles" ]; then
	echo "ok 2 - $cycles connect/handshake/verified-I/O/disconnect cycles in $((SECONDS - start))s"
else
	fail=1; echo "not ok 2 - $done_cycles of $cycles cycles, $errors failed"
	printf '%s\n' "$first_error" | head -n 20 | sed 's/^/# /'
	tail -n 20 "$tmp/blk.log" | sed 's/^/# vhu-blk: /'
fi

# did_not_grow N WHAT BEFORE AFTER: test N passes when AFTER <= BEFORE.
did_not_grow() {
	if [ "$4" -le "$3" ]; then
		echo "ok $1 - $2 did not grow ($3 after warm-up, $4 at the end)"
		return 0
	fi
	fail=1; echo "not ok $1 - $2 grew from $3 to $4"
	return 1
}

if [ -z "$fd0" ] || ! kill -0 "$pid" 2>/dev/null; then
	fail=1; echo "not ok 3 - fd count did not grow # no sample (vhu-blk gone or too few cycles)"
	fail=1; echo "not ok 4 - RSS growth bounded # no sample"
	fail=1; echo "not ok 5 - mappings did not grow # no sample"
	fail=1; echo "not ok 6 - threads did not grow # no sample"
else
	settle "$fd0"
	fd1=$(fds)
	rss1=$(rss_kb)
	did_not_grow 3 "fd count" "$fd0" "$fd1" ||
		ls -l "/proc/$pid/fd" | head -n 40 | sed "s/^/# /"
	growth=$((rss1 - rss0))
	if [ "$growth" -lt "$rss_bound_kb" ]; then
		echo "ok 4 - RSS grew by ${growth} kB (< ${rss_bound_kb} kB: ${rss0} -> ${rss1} kB)"
	else
		fail=1; echo "not ok 4 - RSS grew by ${growth} kB (${rss0} -> ${rss1} kB, bound ${rss_bound_kb} kB)"
	fi
	# A guest-memory region mapped per connection and never unmapped, or
	# a queue worker never joined, shows here even when RSS does not.
	maps1=$(maps)
	thr1=$(threads)
	did_not_grow 5 mappings "$maps0" "$maps1"
	did_not_grow 6 threads "$thr0" "$thr1"
fi

# A clean exit on SIGTERM after all that (no hang in teardown).
kill -TERM "$pid" 2>/dev/null
rc=
for _ in $(seq 100); do
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"
		rc=$?
		break
	fi
	sleep 0.05
done
if [ "$rc" = 0 ]; then
	echo "ok 7 - vhu-blk exited with status 0 on SIGTERM"
else
	fail=1; echo "not ok 7 - vhu-blk on SIGTERM: ${rc:-still running after 5s}"
	tail -n 20 "$tmp/blk.log" | sed 's/^/# vhu-blk: /'
fi
pid=
exit $fail
