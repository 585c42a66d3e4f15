#!/bin/bash
# SPDX-License-Identifier: MIT
# End-to-end test: vhu-blk serving RBD images (--blk-file rbd:POOL/IMAGE)
# from a real single-node Ceph cluster that scripts/ceph-cluster starts
# under the scratch directory (one monitor, one memstore OSD, no
# authentication) and stops at the end, also on failure.
#
#   tests/e2e/test-blk-rbd.sh BUILD_DIR
#
# Checks: malformed URIs and missing pools, images and configurations are
# refused with a reason; `vhu bench --verify` over two queues and `vhu
# check` on an image; ctl info/stats name the back-end and its lock state;
# the exclusive lock: a second vhu-blk on the same image opens while the
# first one's queues run (a migration's destination), cannot write nor
# resize meanwhile, and can write once they stopped (the hand-over a
# migration needs); a client that writes the image (as a VM does) makes
# vhu-blk refuse to start and keeps its lock; `vhu ctl resize` goes through to the image (a shrink only
# with --shrink); `rbd resize` by another client reaches the front-end as
# CONFIG_CHANGE_MSG; a snapshot is served read-only; and a QEMU guest
# writes data that `rbd export` reads back, sees an `rbd resize` live and
# uses the new end.  Needs the Ceph packages (scripts/deps installs them)
# and a vhu-blk built with librbd; QEMU and the guest kernel as the other
# guest tests.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
E2E_SMP=${E2E_SMP:-1,maxcpus=2}
. "$HERE/guest/lib.sh"
e2e_bins "${1:-build}" tools/vhu-blk tools/vhu
CLUSTER=$HERE/../../scripts/ceph-cluster
for t in ceph-mon ceph-osd ceph rbd; do
	command -v $t >/dev/null ||
		skip_all "$t not installed (scripts/deps installs the Ceph packages)"
done

e2e_setup vhu-e2e-rbd
e2e_cleanup_extra() {
	e2e_cleanup     # QEMU (guest/lib.sh)
	"$CLUSTER" stop "$T/ceph" >/dev/null 2>&1
}
e2e_diag() { tail -n 5 "$T"/*.log 2>/dev/null | sed 's/^/#   /'; }

CONF=$T/ceph/ceph.conf
export CEPH_CONF=$CONF
rbdc() { timeout 60 rbd "$@" >/dev/null 2>&1; }
info() { timeout 10 "$VHU" ctl "$1" info 2>&1; }
field() { sed -n "s/^$2: //p" <<<"$1"; }   # field TEXT NAME
# serve NAME URI [ARGS...]: vhu-blk in the background on $T/NAME.sock with
# control socket $T/NAME.ctl; D is its pid.
serve() {
	local name=$1 uri=$2
	shift 2
	e2e_daemon "$T/$name.log" --socket-path "$T/$name.sock" --blk-file "$uri" \
		--control "$T/$name.ctl" "$@"
	wait_for "$T/$name.ctl"
}
# refused URI TEXT: vhu-blk exits 1 at once, its error names TEXT.
refused() {
	local out rc
	out=$(timeout 60 "$BIN" --socket-path "$T/bad.sock" --blk-file "$1" 2>&1); rc=$?
	if [ $rc = 1 ] && grep -qF -- "$2" <<<"$out"; then return 0; fi
	echo "#   rc $rc: $out"
	return 1
}

check "--print-capabilities lists the rbd back-end (built with librbd)" \
	bash -c '"$1" --print-capabilities | grep -q "\"backends\": \[[^]]*\"rbd\""' _ "$BIN"

# ---- the cluster ----
SECONDS=0
out=$("$CLUSTER" start "$T/ceph" 2>&1); rc=$?
check "ceph-cluster start prints the configuration path (${SECONDS}s)" \
	test $rc = 0 -a "$(tail -1 <<<"$out")" = "$CONF"
[ $rc = 0 ] || { echo "#   $out"; tail -n 20 "$T"/ceph/log/*.log | sed 's/^/#   /'; finish; }
check "ceph-cluster status: monitor and OSD run" bash -c "'$CLUSTER' status '$T/ceph' >/dev/null"
check "rbd create" rbdc create rbd/img --size 64M

# ---- URIs and open errors ----
check "URI without an image refused" refused "rbd:rbd" "no '/' between pool and image"
check "URI with an unknown option refused" refused "rbd:rbd/img:mon_host=x" "unknown option 'mon_host'"
check "URI with an empty snapshot name refused" refused "rbd:rbd/img@" "empty snapshot name"
check "missing configuration file refused" refused "rbd:rbd/img:conf=$T/none.conf" \
	"cannot read the Ceph configuration '$T/none.conf'"
check "missing pool refused" refused "rbd:nopool/img:conf=$CONF" "pool 'nopool': no such pool"
check "missing image refused" refused "rbd:rbd/nope:conf=$CONF" "cannot open 'rbd/nope': no such image"
check "missing snapshot refused" refused "rbd:rbd/img@nope:conf=$CONF" "no such image or snapshot"

# ---- I/O through two queues, conformance ----
VHU_LOG=info check "vhu-blk serves rbd:rbd/img" serve a "rbd:rbd/img:conf=$CONF" --num-queues 2
A=$D
i=$(info "$T/a.ctl")
check "info: backend rbd, unlocked before the guest starts its queues, 64 MiB" \
	test "$(field "$i" backend)/$(field "$i" backend_state)/$(field "$i" size)" = "rbd/unlocked/67108864"
b=$(timeout 120 "$VHU" bench "$T/a.sock" --queues 2 --pattern write --size 8M --count 2048 \
	--verify --quiet 2>&1)
check "bench: sequential write of 8 MiB over two queues, no error" grep -q "errors: 0" <<<"$b"
b=$(timeout 120 "$VHU" bench "$T/a.sock" --queues 2 --pattern randread --size 8M --time 3 \
	--verify --quiet 2>&1)
check "bench --verify: random reads over two queues find what was written" \
	grep -q "verify: [1-9][0-9]* reads checked, 0 mismatches" <<<"$b"
b=$(timeout 120 "$VHU" bench "$T/a.sock" --pattern randrw --size 8M --time 3 --verify --quiet 2>&1)
check "bench --verify: random read-write, no error, no mismatch" \
	grep -q "errors: 0" <<<"$b"
s=$(timeout 10 "$VHU" ctl "$T/a.ctl" stats 2>&1)
check "stats: backend rbd, requests counted" \
	test "$(field "$s" backend)" = rbd -a -n "$(grep -E '^total.requests: [1-9]' <<<"$s")"
c=$(timeout 300 "$VHU" check "$T/a.sock" 2>&1 | tail -1)
check "vhu check: $c" grep -q "^[0-9]* passed, 0 failed" <<<"$c"

# ---- exclusive lock ----
# Dirty logging switched on and off while the queues run (the library
# restarts them at the same positions, as in a live migration) keeps the
# lock: taken once when the queues start, released once when they stop.
# unlocked_after LOG N: the lock thread logged its N-th release (it
# releases after the front-end left, on a thread of its own)
unlocked_after() {
	for _ in $(seq 100); do
		[ "$(grep -c "exclusive lock released" "$1")" -ge "$2" ] && return
		sleep 0.1
	done
}
unlocked_after "$T/a.log" "$(grep -c "exclusive lock taken" "$T/a.log")"
t0=$(grep -c "exclusive lock taken" "$T/a.log") r0=$(grep -c "exclusive lock released" "$T/a.log")
timeout 60 "$VHU" bench "$T/a.sock" --pattern randrw --count 512 --dirty-log --hold 1 \
	--quiet >"$T/dirty.out" 2>&1
unlocked_after "$T/a.log" $((r0 + 1))
sleep 0.5   # a second release would be logged by now
t1=$(grep -c "exclusive lock taken" "$T/a.log") r1=$(grep -c "exclusive lock released" "$T/a.log")
check "dirty logging on and off while the queues run keeps the lock (taken $((t1 - t0)), released $((r1 - r0)) times)" \
	test "$((t1 - t0))" = 1 -a "$((r1 - r0))" = 1 -a -n "$(grep "errors: 0" "$T/dirty.out")"
timeout 60 "$VHU" bench "$T/a.sock" --pattern write --count 64 --quiet --hold 10 \
	>"$T/hold.out" 2>&1 &
HOLD=$!
for _ in $(seq 50); do
	[ "$(field "$(info "$T/a.ctl")" backend_state)" = locked ] && break
	sleep 0.1
done
check "info: locked while the queues run" test "$(field "$(info "$T/a.ctl")" backend_state)" = locked
check "rbd lock ls shows the exclusive lock" bash -c "rbd lock ls rbd/img | grep -q 'exclusive lock'"
# A migration's destination starts while the source holds the lock: the
# source recorded itself as a vhu-blk, so this is no VM's lock to take.
check "a second vhu-blk opens the image while the first holds the lock, with a warning" \
	serve b "rbd:rbd/img:conf=$CONF"
check "... that names the other vhu-blk" grep -q "being written by another vhu-blk" "$T/b.log"
# Its resize would be forwarded by librbd to the lock's holder and run
# under the first one's guest: refused, saying why.
rsize() { rbd info --format json rbd/img | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])'; }
out=$(timeout 10 "$VHU" ctl "$T/b.ctl" resize --shrink 32M 2>&1); rc=$?
echo "# $out"
check "second vhu-blk: resize --shrink refused while the first holds the lock, saying why" \
	test $rc != 0 -a -n "$(grep 'holds its exclusive lock' <<<"$out")" -a "$(rsize)" = 67108864
out=$(timeout 10 "$VHU" ctl "$T/b.ctl" resize 80M 2>&1); rc=$?
check "second vhu-blk: growing refused too, the image unchanged" \
	test $rc != 0 -a -n "$(grep 'holds its exclusive lock' <<<"$out")" -a "$(rsize)" = 67108864
check "... while the first one's writes still ran (locked)" \
	test "$(kill -0 $HOLD 2>/dev/null && field "$(info "$T/a.ctl")" backend_state)" = locked
timeout 60 "$VHU" bench "$T/b.sock" --pattern write --count 64 --quiet --hold 2 \
	>"$T/refused.out" 2>&1 &
sleep 1
check "second writer: info says lock-refused while its queues run" \
	test "$(field "$(info "$T/b.ctl")" backend_state)" = lock-refused
wait $!
check "second writer: every write fails while the first serves" grep -q "errors: 64" "$T/refused.out"
b=$(timeout 60 "$VHU" bench "$T/b.sock" --pattern read --count 64 --quiet 2>&1)
check "second writer: reads still work" grep -q "errors: 0" <<<"$b"
wait $HOLD
check "first writer's writes all done" grep -q "errors: 0" "$T/hold.out"
check "info: unlocked once the first writer's queues stopped" \
	test "$(field "$(info "$T/a.ctl")" backend_state)" = unlocked
b=$(timeout 60 "$VHU" bench "$T/b.sock" --pattern write --count 64 --quiet 2>&1)
check "second writer takes the lock over and writes" grep -q "errors: 0" <<<"$b"
e2e_stop "$D"

# ---- resize ----
timeout 10 "$VHU" ctl "$T/a.ctl" resize 80M >/dev/null 2>&1
check "ctl resize 80M grows the RBD image" test "$(rsize)" = 83886080
check "ctl resize 64M without --shrink refused" bash -c "! timeout 10 '$VHU' ctl '$T/a.ctl' resize 64M >/dev/null 2>&1"
check "... the image keeps its size" test "$(rsize)" = 83886080
timeout 10 "$VHU" ctl "$T/a.ctl" resize --shrink 64M >/dev/null 2>&1
check "ctl resize --shrink 64M shrinks it" test "$(rsize)" = 67108864
timeout 30 "$VHU" watch "$T/a.sock" --timeout 25 >"$T/watch.out" 2>&1 &
W=$!
sleep 1
rbdc resize --size 96M rbd/img
wait $W
check "rbd resize by another client: CONFIG_CHANGE_MSG with the new capacity" \
	grep -q "config change: capacity 196608 sectors" "$T/watch.out"
check "info: the new size" test "$(field "$(info "$T/a.ctl")" size)" = 100663296
b=$(timeout 120 "$VHU" bench "$T/a.sock" --pattern write --size 8M --count 2048 --seed 7 --verify --quiet 2>&1)
check "bench: 8 MiB written again (seed 7)" grep -q "errors: 0" <<<"$b"
e2e_stop "$A"

# ---- a snapshot is read-only ----
check "rbd snap create" rbdc snap create rbd/img@s1
serve w "rbd:rbd/img:conf=$CONF"
b=$(timeout 60 "$VHU" bench "$T/w.sock" --pattern write --size 1M --count 256 --seed 8 --verify --quiet 2>&1)
check "the image changes after the snapshot (seed 8)" grep -q "errors: 0" <<<"$b"
e2e_stop "$D"
check "vhu-blk serves the snapshot" serve s "rbd:rbd/img@s1:conf=$CONF"
i=$(info "$T/s.ctl")
check "snapshot: read-only, no lock" \
	test "$(field "$i" read_only)/$(field "$i" backend_state)" = true/connected
b=$(timeout 60 "$VHU" bench "$T/s.sock" --pattern write --count 16 --quiet 2>&1)
check "snapshot: the device is read-only for writers" grep -q "the device is read-only" <<<"$b"
b=$(timeout 60 "$VHU" bench "$T/s.sock" --pattern randread --size 8M --time 1 --seed 7 --verify \
	--quiet 2>&1)
check "snapshot: reads find the data of the snapshot (seed 7), not the later writes" \
	grep -q "verify: [1-9][0-9]* reads checked, 0 mismatches" <<<"$b"
e2e_stop "$D"

# ---- a lock owner that does not answer ----
# rbd bench holds the lock of rbd/dl, then stops (SIGSTOP): librbd asks
# it to hand the lock over and waits.  vhu-blk's control thread does not:
# info answers at once and says "locking"; the writes wait.  The owner
# killed, librbd breaks its lock once its watch timed out (about 30 s).
check "rbd create rbd/dl" rbdc create rbd/dl --size 64M
serve dq "rbd:rbd/dl:conf=$CONF"
DQ=$D
rbd bench --io-type write --io-pattern rand --io-size 4K --io-threads 1 --io-total 1G rbd/dl \
	>/dev/null 2>&1 &
RB=$!
for _ in $(seq 100); do rbd lock ls rbd/dl 2>/dev/null | grep -q client && break; sleep 0.1; done
sleep 1
# A client that writes the image holds the lock in librbd's automatic mode
# (as QEMU does): vhu-blk refuses to start rather than take it away.
owner=$(rbd lock ls rbd/dl 2>/dev/null | grep client)
out=$(timeout 60 "$BIN" --socket-path "$T/bad.sock" --blk-file "rbd:rbd/dl:conf=$CONF" 2>&1); rc=$?
echo "# $out" | tail -1
check "vhu-blk refuses an image another client holds the lock of, naming --lock off" \
	test $rc = 1 -a -n "$(grep 'holds its exclusive lock and writes the image.*--lock off' <<<"$out")"
check "... the other client still writes, its lock untouched" \
	test -n "$owner" -a "$(kill -0 $RB 2>/dev/null && rbd lock ls rbd/dl 2>/dev/null | grep client)" = "$owner"
# A vhu-blk that opened the image before that client took the lock does
# not take it away either when its front-end starts the queues.
b=$(timeout 60 "$VHU" bench "$T/dq.sock" --pattern write --count 16 --quiet 2>&1)
check "a vhu-blk opened before the client took the lock: its queues start, its writes fail" \
	grep -q "errors: 16" <<<"$b"
check "... it said why" grep -q "holds the exclusive lock and writes the image" "$T/dq.log"
check "... and the other client still writes, its lock untouched" \
	test "$(kill -0 $RB 2>/dev/null && rbd lock ls rbd/dl 2>/dev/null | grep client)" = "$owner"
e2e_stop "$DQ"
kill -STOP $RB
serve dl "rbd:rbd/dl:conf=$CONF" --lock off
DL=$D
timeout 60 "$VHU" bench "$T/dl.sock" --pattern write --count 64 --quiet >"$T/dl.out" 2>&1 &
BP=$!
sleep 2
SECONDS=0
i=$(info "$T/dl.ctl")
check "a stopped client holds the lock: ctl info answers (${SECONDS}s), backend_state locking" \
	test "$(field "$i" backend_state)" = locking -a $SECONDS -le 2
kill -KILL $RB
wait $BP; rc=$?
check "the writes that waited for the lock end (done, or given up on at the stop), rc $rc" \
	test $rc != 124 -a -n "$(grep -E '^requests: ' "$T/dl.out")"
SECONDS=0
for _ in $(seq 120); do
	[ "$(field "$(info "$T/dl.ctl")" backend_state)" = unlocked ] && break
	sleep 0.5
done
b=$(timeout 120 "$VHU" bench "$T/dl.sock" --pattern write --count 64 --quiet 2>&1)
check "the dead owner's lock broken by librbd: the writes go through (${SECONDS}s)" \
	grep -q "errors: 0" <<<"$b"
e2e_stop "$DL"

# ---- a lock owner that died ----
# A client killed while it held the lock keeps the lock until someone
# breaks it, its watch only until that times out (about 30 s): then it is
# no running VM, and vhu-blk starts; librbd breaks the lock when the
# queues start.
check "rbd create rbd/dd" rbdc create rbd/dd --size 64M
rbd bench --io-type write --io-pattern rand --io-size 4K --io-threads 1 --io-total 1G rbd/dd \
	>/dev/null 2>&1 &
RB=$!
for _ in $(seq 100); do rbd lock ls rbd/dd 2>/dev/null | grep -q client && break; sleep 0.1; done
kill -KILL $RB
wait $RB 2>/dev/null
SECONDS=0
for _ in $(seq 90); do
	rbd status rbd/dd 2>/dev/null | grep -q "watcher=" || break
	sleep 1
done
check "a killed client's watch times out (${SECONDS}s), its lock stays" \
	test -z "$(rbd status rbd/dd 2>/dev/null | grep watcher=)" \
	-a -n "$(rbd lock ls rbd/dd 2>/dev/null | grep client)"
check "vhu-blk starts on an image whose lock a client that is gone holds" \
	serve dd "rbd:rbd/dd:conf=$CONF"
check "... with a warning" grep -q "held by a client that is gone" "$T/dd.log"
b=$(timeout 60 "$VHU" bench "$T/dd.sock" --pattern write --count 16 --quiet 2>&1)
check "... and its writes go through (librbd broke the dead lock)" grep -q "errors: 0" <<<"$b"
e2e_stop "$D"

# ---- a cluster that does not answer ----
# The OSD stopped (SIGSTOP) under load, the front-end gone: the queue stop
# gives up on the requests after 5 s (IOERR) instead of waiting for ever,
# keeps what librbd will still write to, and the OSD's return crashes
# nothing.
check "rbd create rbd/st" rbdc create rbd/st --size 64M
serve st "rbd:rbd/st:conf=$CONF"
ST=$D
OSD=$(cat "$T/ceph/run/osd.0.pid")
timeout 120 "$VHU" bench "$T/st.sock" --pattern randrw --size 8M --time 30 --quiet \
	>"$T/st.out" 2>&1 &
BP=$!
sleep 2
kill -STOP "$OSD"
sleep 1
kill -KILL $BP
SECONDS=0
for _ in $(seq 100); do
	grep -q "queue 0 stops: .* unanswered after 5 s failed" "$T/st.log" && break
	sleep 0.2
done
check "OSD stopped: the queue stop returns after giving up (${SECONDS}s)" \
	grep -q "queue 0 stops: [1-9][0-9]* requests* unanswered after 5 s failed" "$T/st.log"
check "... and the daemon answers (backend_state $(field "$(info "$T/st.ctl")" backend_state))" \
	test -n "$(field "$(info "$T/st.ctl")" backend_state)"
# A resize the cluster does not answer: the control thread waits 8 s for
# it, then answers and serves the control socket again.
SECONDS=0
out=$(timeout 60 "$VHU" ctl "$T/st.ctl" resize 80M 2>&1); rc=$?
echo "# $out"
check "OSD stopped: ctl resize answers after its bound (${SECONDS}s), saying the resize goes on" \
	test $rc != 0 -a $rc != 124 -a -n "$(grep 'has not finished the resize after 8 s' <<<"$out")"
check "... and the control socket answers after it" \
	test "$(field "$(info "$T/st.ctl")" size)" = 67108864
kill -CONT "$OSD"
for _ in $(seq 60); do
	[ "$(field "$(info "$T/st.ctl")" size)" = 83886080 ] && break
	sleep 0.5
done
check "OSD back: the resize given up on ends and the daemon takes the new size" \
	test "$(field "$(info "$T/st.ctl")" size)" = 83886080
sleep 1
check "OSD back: the late completions crash nothing" kill -0 "$ST"
b=$(timeout 120 "$VHU" bench "$T/st.sock" --pattern randrw --size 8M --time 2 --verify --quiet 2>&1)
check "OSD back: a new front-end reads and writes, no error" grep -q "errors: 0" <<<"$b"
e2e_stop "$ST"

# ---- a guest ----
guest() {
	local why log=$T/console.log qpid sum got
	if ! why=$(e2e_kernel); then notok "guest kernel" "$why"; return; fi
	e2e_kernel >/dev/null
	if ! why=$(e2e_build_initrd "$T/initrd.cpio" "$HERE/guest/rbd-guest.sh"); then
		notok "guest image" "$why"; return
	fi
	e2e_probe_accel "$T"
	rbdc create rbd/gimg --size 64M
	check "vhu-blk serves rbd:rbd/gimg" serve g "rbd:rbd/gimg:conf=$CONF"
	e2e_boot_one_disk "$T/initrd.cpio" "$log" "$T/g.sock" "$T/qemu.log"
	qpid=$E2E_LAST_PID
	e2e_wait_log "$log" "WAITING resize" 180 "$qpid"
	check "guest ($E2E_ACCEL) sees the disk" grep -q "RESULT disk ok 131072" "$log"
	check "guest writes 1 MiB and reads it back" grep -q "RESULT readback ok" "$log"
	sum=$(sed -n 's/.*RESULT write ok \([0-9a-f]*\).*/\1/p' "$log" | tr -d '\r')
	got=$(rbd export rbd/gimg - 2>/dev/null | dd bs=65536 skip=16 count=16 iflag=fullblock 2>/dev/null |
	      md5sum | cut -d' ' -f1)
	check "rbd export reads the guest's data" test -n "$sum" -a "$sum" = "$got"
	rbdc resize --size 96M rbd/gimg
	e2e_wait_log "$log" "VHU-GUEST-DONE" 120 "$qpid"
	check "guest sees the rbd resize live (196608 sectors)" grep -q "RESULT resize ok 196608" "$log"
	check "guest writes and reads the new last sector" grep -q "RESULT resize_io ok" "$log"
	e2e_wait_exit "$qpid" 30
	check "vhu-blk logged the change" grep -q "image size 67108864 -> 100663296" "$T/g.log"
	grep RESULT "$log" | tr -d '\r' | sed 's/^/# guest: /'
}
guest

# ---- stop ----
"$CLUSTER" stop "$T/ceph" >/dev/null 2>&1
check "ceph-cluster stop: status says stopped" bash -c "! '$CLUSTER' status '$T/ceph' >/dev/null 2>&1"
check "no Ceph daemon of this cluster left" bash -c "! pgrep -f 'ceph-(mon|osd) -c $CONF' >/dev/null"
finish
