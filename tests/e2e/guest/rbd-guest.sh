#!/bin/sh
# Guest half of tests/e2e/test-blk-rbd.sh; runs as /test.sh under busybox.
# One disk (vda), served by vhu-blk from an RBD image.  Prints
#   RESULT <name> ok|fail <detail>
# lines; for the live resize "WAITING resize <sectors>" and polls the size
# until the host has run `rbd resize`.
r() { echo "RESULT $1 $2 $3"; }

i=0
while [ $i -lt 50 ] && [ ! -e /sys/block/vda ]; do usleep 100000; i=$((i + 1)); done
[ -e /sys/block/vda ] || { r disk fail "no vda"; exit 1; }
r disk ok "$(cat /sys/block/vda/size)"

# 1 MiB of random data at 1 MiB, direct and synced: the host reads it back
# with `rbd export` and compares the checksum.
dd if=/dev/urandom of=/tmp/data bs=65536 count=16 2>/dev/null
dd if=/tmp/data of=/dev/vda bs=65536 seek=16 oflag=direct conv=fsync 2>/dev/null
rc=$?
r write "$([ $rc = 0 ] && echo ok || echo fail)" "$(md5sum </tmp/data | cut -d' ' -f1)"
got=$(dd if=/dev/vda bs=65536 skip=16 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
r readback "$([ "$got" = "$(md5sum </tmp/data | cut -d' ' -f1)" ] && echo ok || echo fail)" "$got"

old=$(cat /sys/block/vda/size)
echo "WAITING resize $old"
n=0
while [ "$(cat /sys/block/vda/size)" = "$old" ] && [ $n -lt 600 ]; do
	usleep 100000; n=$((n + 1))
done
new=$(cat /sys/block/vda/size)
r resize "$([ "$new" != "$old" ] && echo ok || echo fail)" "$new"
# The new end is usable: write and read the last sector.
last=$((new - 1))
echo vhu-rbd-last-sector | dd of=/dev/vda bs=512 seek=$last count=1 conv=sync,fsync 2>/dev/null
got=$(dd if=/dev/vda bs=512 skip=$last count=1 iflag=direct 2>/dev/null | head -c 19)
r resize_io "$([ "$got" = vhu-rbd-last-sector ] && echo ok || echo fail)" "$got"
echo "WAITING done 0"
exit 0
