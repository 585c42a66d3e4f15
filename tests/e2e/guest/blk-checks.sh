#!/bin/sh
# Guest half of tests/e2e/test-guest-blk.sh; runs as /test.sh under busybox.
#
# Devices (PCI slot -> role): 00:04.0 main read-write disk (2 queues,
# control socket on the host), 00:05.0 disk with 4096-byte logical blocks,
# 00:06.0 read-only disk.  Every observation goes to the serial console as
#   RESULT <name> ok|fail <detail>
# and the host decides what the details must be.  For live resize the guest
# prints "WAITING <tag> <sectors>" and polls the size until the host changes it.

RESIZE_TIMEOUT=60
for arg in $(cat /proc/cmdline); do
	case "$arg" in vhu.resize_timeout=*) RESIZE_TIMEOUT=${arg#*=} ;; esac
done

r() { echo "RESULT $1 $2 $3"; }
okfail() { if [ "$1" = 0 ]; then echo ok; else echo fail; fi; }

dev_at() {
	for b in /sys/block/vd*; do
		[ -e "$b" ] || continue
		case "$(readlink -f "$b")" in
		*/"$1"/*) echo "${b##*/}"; return 0 ;;
		esac
	done
	return 1
}

# Give the virtio probes a moment (they are synchronous, but be tolerant).
i=0
while [ $i -lt 50 ] && [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -lt 3 ]; do
	usleep 100000; i=$((i + 1))
done

A=$(dev_at 0000:00:04.0)
B=$(dev_at 0000:00:05.0)
C=$(dev_at 0000:00:06.0)
r devices "$( [ -n "$A" ] && [ -n "$B" ] && [ -n "$C" ] && echo ok || echo fail)" "main=$A bs4k=$B ro=$C"
[ -n "$A" ] || { echo "no main disk"; exit 1; }

# Geometry and identity.
r size ok "$(cat /sys/block/$A/size)"
r lbs_main ok "$(cat /sys/block/$A/queue/logical_block_size)"
r serial ok "$(cat /sys/block/$A/serial 2>/dev/null)"
r nr_queues ok "$(ls /sys/block/$A/mq | wc -l)"
# Negotiated virtio feature bits, bit 0 first (the host looks at RING_PACKED).
r features ok "$(cat /sys/block/$A/device/features 2>/dev/null)"
# I/O issued on the second CPU goes through the hardware queue mapped to it.
if [ -e /sys/devices/system/cpu/cpu1/online ] && [ "$(cat /sys/devices/system/cpu/cpu1/online)" = 1 ]; then
	taskset -c 1 dd if=/dev/$A of=/dev/null bs=4096 count=64 iflag=direct 2>/dev/null
	rc=$?
	r queue1_io "$(okfail $rc)" "cpu_lists=$(cat /sys/block/$A/mq/*/cpu_list | tr ' \n' ';,')"
else
	r queue1_io skip "cpu1-offline"
fi
if [ -n "$B" ]; then
	r lbs_4k ok "$(cat /sys/block/$B/queue/logical_block_size)"
	r size_4k ok "$(blockdev --getsize64 /dev/$B)"
fi

# A pattern the host wrote at 1 MiB (4 KiB long).
sum=$(dd if=/dev/$A bs=4096 skip=256 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
r pattern ok "$sum"

# Guest write at 2 MiB (64 KiB); the host checks its image after power-off.
yes vhu-guest-write | head -c 65536 | dd of=/dev/$A bs=4096 seek=512 oflag=direct conv=fsync 2>/dev/null
rc=$?
sum=$(dd if=/dev/$A bs=4096 skip=512 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
r guest_write "$(okfail $rc)" "$sum"

# Flush: with a write-back cache the block layer sends VIRTIO_BLK_T_FLUSH.
echo x | dd of=/dev/$A bs=512 seek=8 conv=sync,fsync 2>/dev/null
sync
blockdev --flushbufs /dev/$A
rc=$?
r flush "$(okfail $rc)" "cache=$(cat /sys/block/$A/cache_type | tr ' ' _)"

# Discard 1 MiB at 4 MiB.
dmax=$(cat /sys/block/$A/queue/discard_max_bytes)
if [ "$dmax" -gt 0 ]; then
	blkdiscard -o $((4 << 20)) -l $((1 << 20)) /dev/$A
	r discard "$(okfail $?)" "discard_max_bytes=$dmax"
else
	r discard fail "discard_max_bytes=0"
fi

# Write zeroes 1 MiB at 6 MiB (BLKZEROOUT; without the feature the kernel
# would silently write zero pages, so report the advertised limit too).
wzmax=$(cat /sys/block/$A/queue/write_zeroes_max_bytes)
if [ -x /bin/blkzero ]; then
	blkzero /dev/$A $((6 << 20)) $((1 << 20))
	r write_zeroes "$(okfail $?)" "write_zeroes_max_bytes=$wzmax"
else
	r write_zeroes skip "no-blkzero-helper"
fi

# Read-only disk: the flag is visible and a write fails.
if [ -n "$C" ]; then
	ro=$(cat /sys/block/$C/ro)
	echo overwrite | dd of=/dev/$C bs=512 count=1 conv=sync,fsync 2>/dev/null
	rc=$?
	r read_only "$( [ "$ro" = 1 ] && [ $rc != 0 ] && echo ok || echo fail)" "ro=$ro write_rc=$rc"
fi

# Live resize, interleaved with write-cache toggles that the host checks
# between the steps: write through before resize1, write back before resize2.
ct0=$(cat /sys/block/$A/cache_type)
r cache_initial ok "$(echo "$ct0" | tr ' ' _)"
echo "write through" >/sys/block/$A/cache_type
rc=$?
r cache_wt "$(okfail $rc)" "$(cat /sys/block/$A/cache_type | tr ' ' _)"

wait_resize() {
	tag=$1
	old=$(cat /sys/block/$A/size)
	before=$(dmesg | grep -c "capacity change")
	echo "WAITING $tag $old"
	n=0
	while [ "$(cat /sys/block/$A/size)" = "$old" ] && [ $n -lt $((RESIZE_TIMEOUT * 10)) ]; do
		usleep 100000; n=$((n + 1))
	done
	new=$(cat /sys/block/$A/size)
	after=$(dmesg | grep -c "capacity change")
	if [ "$new" != "$old" ] && [ "$after" -gt "$before" ]; then
		r "$tag" ok "$new"
	else
		r "$tag" fail "$new capacity_change_msgs=$((after - before))"
	fi
}

wait_resize resize1
echo "write back" >/sys/block/$A/cache_type
rc=$?
r cache_wb "$(okfail $rc)" "$(cat /sys/block/$A/cache_type | tr ' ' _)"
wait_resize resize2
wait_resize resize3
wait_resize resize4
# The last size is usable: read the final sector.
last=$(( $(cat /sys/block/$A/size) - 1 ))
dd if=/dev/$A bs=512 skip=$last count=1 iflag=direct 2>/dev/null | wc -c | {
	read n; r resize_io "$( [ "$n" = 512 ] && echo ok || echo fail)" "read_last_sector_bytes=$n"; }
echo "WAITING done 0"
exit 0
