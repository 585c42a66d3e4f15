#!/bin/sh
# Guest half of tests/e2e/test-examples.sh; runs as /test.sh under busybox
# with one disk, examples/ramdisk.  Prints "RESULT <name> ok|fail <detail>"
# lines on the serial console; the host judges the details.

r() { echo "RESULT $1 $2 $3"; }
okfail() { if [ "$1" = 0 ]; then echo ok; else echo fail; fi; }

i=0
while [ $i -lt 50 ] && ! [ -e /sys/block/vda ]; do
	usleep 100000; i=$((i + 1))
done
[ -e /sys/block/vda ] || { r disk fail "no /sys/block/vda"; exit 1; }
r disk ok vda
r size ok "$(cat /sys/block/vda/size)"
r serial ok "$(cat /sys/block/vda/serial 2>/dev/null)"

# A fresh RAM disk reads as zeroes.
nz=$(dd if=/dev/vda bs=4096 skip=100 count=16 iflag=direct 2>/dev/null | tr -d '\000' | wc -c)
r zeroes ok "$nz"

# Write 64 KiB at 1 MiB and read it back, both bypassing the page cache.
yes vhu-ramdisk-guest | head -c 65536 | dd of=/dev/vda bs=4096 seek=256 oflag=direct conv=fsync 2>/dev/null
rc=$?
sum=$(dd if=/dev/vda bs=4096 skip=256 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
r write "$(okfail $rc)" "$sum"
# The same bytes through the page cache, and the last sector of the disk.
echo 3 >/proc/sys/vm/drop_caches
sum=$(dd if=/dev/vda bs=65536 skip=16 count=1 2>/dev/null | md5sum | cut -d' ' -f1)
r reread ok "$sum"
last=$(( $(cat /sys/block/vda/size) - 1 ))
n=$(dd if=/dev/vda bs=512 skip=$last count=1 iflag=direct 2>/dev/null | wc -c)
r last_sector ok "$n"
blockdev --flushbufs /dev/vda
r flush "$(okfail $?)" ""
