#!/bin/sh
# Guest half of scripts/demo: report the disk, wait for the host to resize
# it live, report again.  Lines starting with "guest:" are shown to the user.
dev=vda
mib() { echo $(( $(blockdev --getsize64 /dev/$dev) / 1048576 )); }
i=0
while [ ! -e /sys/block/$dev ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
if [ ! -e /sys/block/$dev ]; then
	echo "guest: no virtio disk appeared"
	exit 1
fi
echo "guest: /dev/$dev is $(mib) MiB ($(cat /sys/block/$dev/size) sectors of 512 bytes)"
echo "guest: logical block size $(cat /sys/block/$dev/queue/logical_block_size), serial '$(cat /sys/block/$dev/serial 2>/dev/null)', cache '$(cat /sys/block/$dev/cache_type)', $(ls /sys/block/$dev/mq | wc -l) queue(s)"
echo "hello from the guest" | dd of=/dev/$dev bs=512 conv=sync,fsync 2>/dev/null &&
	echo "guest: wrote sector 0, read back: '$(dd if=/dev/$dev bs=512 count=1 iflag=direct 2>/dev/null | tr -d '\000' | head -n 1)'"
old=$(cat /sys/block/$dev/size)
echo "DEMO-WAITING-RESIZE"
n=0
while [ "$(cat /sys/block/$dev/size)" = "$old" ] && [ $n -lt 600 ]; do
	usleep 100000; n=$((n + 1))
done
if [ "$(cat /sys/block/$dev/size)" = "$old" ]; then
	echo "guest: the size did not change within 60 s"
	exit 1
fi
echo "guest: /dev/$dev is now $(mib) MiB, noticed after about $((n / 10)).$((n % 10)) s"
dmesg | grep "capacity change" | tail -n 1 | sed 's/^\[[ 0-9.]*\] */guest: kernel log: /'
echo "guest: powering off"
exit 0
