#!/bin/sh
# Guest half of tests/e2e/test-restart.sh; runs as /test.sh under busybox.
#
# One vhost-user-blk disk (PCI slot 4).  Two generations of write + verify
# over the whole disk with blkload (per-block generation, block number
# and crc32: it tells lost, stale and torn writes apart); the host kills and
# restarts vhu-blk while the passes run (it watches the PROGRESS lines).
# Then a whole-disk read whose md5 the host compares with the image, and
# the kernel log's I/O errors.  Lines for the host:
#   READY <blocks>      PROGRESS/PASS/BAD (blkload)
#   RESULT <name> ok|fail <detail>

WORKERS=8
r() { echo "RESULT $1 $2 $3"; }
okfail() { if [ "$1" = 0 ]; then echo ok; else echo fail; fi; }

i=0
while [ $i -lt 50 ] && [ ! -e /sys/block/vda ]; do
	usleep 100000; i=$((i + 1))
done
A=
for b in /sys/block/vd*; do
	case "$(readlink -f "$b")" in */0000:00:04.0/*) A=${b##*/} ;; esac
done
[ -n "$A" ] || { r devices fail "no disk at 00:04.0"; exit 1; }
bytes=$(blockdev --getsize64 /dev/$A)
blocks=$((bytes / 4096))
r devices ok "$A nr_queues=$(ls /sys/block/$A/mq | wc -l) features=$(cat /sys/block/$A/device/features)"
echo "READY $blocks"

for gen in 1 2; do
	blkload write /dev/$A $gen $blocks $WORKERS
	r "write$gen" "$(okfail $?)" "-"
	blkload verify /dev/$A $gen $blocks $WORKERS
	r "verify$gen" "$(okfail $?)" "-"
done

# Whole-disk read through the block layer (the host compares the md5 with
# its image after power-off).
sum=$( (dd if=/dev/$A bs=1048576 iflag=direct 2>/tmp/dd.err; echo $? >/tmp/dd.rc) | md5sum | cut -d' ' -f1)
r wholeread "$(okfail "$(cat /tmp/dd.rc)")" "$sum $(tail -n 1 /tmp/dd.err | tr ' ' _)"

# The guest kernel must not have failed a request.
n=$(dmesg | grep -c -E 'I/O error|blk_update_request|critical medium|Buffer I/O')
r kernel_errors "$( [ "$n" = 0 ] && echo ok || echo fail)" "$n"
dmesg | grep -E 'I/O error|blk_update_request|virtio_blk|vda' | tail -n 5 | sed 's/^/KLOG /'
echo "WAITING done 0"
exit 0
