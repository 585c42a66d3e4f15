#!/bin/sh
# Guest half of tests/e2e/test-migrate.sh; runs as /test.sh under busybox.
#
# One disk (PCI slot 4).  Kernel command line: vhu.workers=N (one blkverify
# per vCPU, each pinned to its CPU so that each hardware queue sees I/O;
# each writes its own slice of the region).
#
#   PHASE write   write passes (generation 1, 2, ...) until the host writes
#                 the marker "VHU-GO" at 32 MiB; the host migrates meanwhile
#   RESULT write_verify  the whole region holds the last generation
#   PHASE read    verify passes until the marker at 36 MiB; the host
#                 migrates again meanwhile
#   RESULT read_verify   every read of every pass was right
#   RESULT kernel_io_errors N   I/O error / timeout lines in dmesg
MiB=1048576
REGION=$((16 * MiB))
MARK_WRITE=$((32 * MiB))
MARK_READ=$((36 * MiB))
WORKERS=1
for arg in $(cat /proc/cmdline); do
	case "$arg" in vhu.workers=*) WORKERS=${arg#*=} ;; esac
done
SLICE=$((REGION / WORKERS))

r() { echo "RESULT $1 $2 $3"; }

i=0
while [ $i -lt 50 ] && [ ! -b /dev/vda ]; do usleep 100000; i=$((i + 1)); done
[ -b /dev/vda ] || { r disk fail "no /dev/vda"; exit 1; }
r nr_queues ok "$(ls -d /sys/block/vda/mq/* 2>/dev/null | wc -l)"
r features ok "$(cat /sys/block/vda/device/features 2>/dev/null)"

# run MODE MARK GEN...: one blkverify per worker, each on its slice, worker
# w with the (w+1)-th GEN (the last one for the workers after); prints the
# workers' BLKVERIFY lines and returns the sum of their error counts in
# ERRS and their pass counts in PASSES.
run() {
	mode=$1 until=$2
	shift 2
	w=0
	while [ $w -lt $WORKERS ]; do
		g=$1
		[ $# -gt 1 ] && shift
		blkverify "$mode" /dev/vda $((w * SLICE)) $SLICE "$g" --cpu $w \
			--until "$until" 2>/tmp/bv.$w.err | tee /tmp/bv.$w &
		w=$((w + 1))
	done
	wait
	ERRS=0 PASSES=
	w=0
	while [ $w -lt $WORKERS ]; do
		line=$(grep '^BLKVERIFY' /tmp/bv.$w)
		head -n 8 /tmp/bv.$w.err
		e=$(echo "$line" | sed -n 's/.* errors=\([0-9]*\).*/\1/p')
		[ -n "$e" ] || e=1
		ERRS=$((ERRS + e))
		PASSES="$PASSES $(echo "$line" | sed -n 's/.* passes=\([0-9]*\).*/\1/p')"
		w=$((w + 1))
	done
}

# Every worker stops at the same marker, but each finishes its own pass:
# their last generations may differ, so each slice is checked for its own.
echo "PHASE write"
run write $MARK_WRITE 1
WERR=$ERRS
w=0 VERR=0 gens=
while [ $w -lt $WORKERS ]; do
	g=$(sed -n 's/.* gen=\([0-9]*\).*/\1/p' /tmp/bv.$w)
	gens="$gens ${g:-0}"
	out=$(blkverify verify /dev/vda $((w * SLICE)) $SLICE "${g:-0}" 2>&1)
	echo "$out" | head -n 9
	e=$(echo "$out" | sed -n 's/.* errors=\([0-9]*\).*/\1/p')
	VERR=$((VERR + ${e:-1}))
	w=$((w + 1))
done
r write_verify "$([ $WERR = 0 ] && [ $VERR = 0 ] && echo ok || echo fail)" \
	"write_errors=$WERR verify_errors=$VERR generations=$(echo $gens | tr ' ' ,)"

# The read phase checks the generation each slice was left with.
echo "PHASE read"
run verify $MARK_READ $gens
r read_verify "$([ $ERRS = 0 ] && echo ok || echo fail)" \
	"errors=$ERRS passes=$(echo $PASSES | tr ' ' ,)"

n=$(dmesg | grep -Eci 'I/O error|blk_update_request|timed out|hung task|virtio_blk.*(error|fail)')
r kernel_io_errors "$([ "$n" = 0 ] && echo ok || echo fail)" "$n"
dmesg | grep -Ei 'I/O error|blk_update_request|timed out|hung task' | head -n 5
