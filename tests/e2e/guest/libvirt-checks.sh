#!/bin/sh
# Guest half of tests/e2e/test-libvirt.sh (a disk libvirt attached as
# <disk type='vhostuser'>): the size, a write the host finds in the image,
# a live resize, and I/O after the back-end was restarted under the guest.
# Lines: "RESULT name ok|fail detail" and "WAITING tag" when the host's
# turn comes.
r() { echo "RESULT $1 $2 $3"; }
b=/sys/block/vda/size
if [ ! -b /dev/vda ]; then
	r disk fail "no /dev/vda"
	exit 1
fi
size=$(cat $b)
r size ok "$size"
# 512 bytes at sector 2048, direct: straight through to the back-end.
printf 'VHU-LIBVIRT-WRITE-1' | dd of=/dev/vda bs=512 seek=2048 conv=sync,notrunc oflag=direct 2>/dev/null &&
	r write1 ok "" || r write1 fail "dd"
echo "WAITING resize $size"
i=0
while [ "$(cat $b)" = "$size" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
r resize ok "$(cat $b)"
# The host restarts the back-end, then writes GO at sector 4096 of the
# image; reading it proves the guest reaches the new process.
echo "WAITING restart"
i=0
while [ $i -lt 120 ]; do
	got=$(dd if=/dev/vda bs=512 skip=4096 count=1 iflag=direct 2>/dev/null | head -c 2)
	[ "$got" = GO ] && break
	sleep 0.5; i=$((i + 1))
done
[ "$got" = GO ] && r reread ok "" || r reread fail "read '$got'"
printf 'VHU-LIBVIRT-WRITE-2' | dd of=/dev/vda bs=512 seek=2049 conv=sync,notrunc oflag=direct 2>/dev/null &&
	r write2 ok "" || r write2 fail "dd"
# The new size's last sector is readable.
last=$(($(cat $b) - 1))
dd if=/dev/vda of=/dev/null bs=512 skip=$last count=1 iflag=direct 2>/dev/null &&
	r lastsector ok "$last" || r lastsector fail "$last"
# The host ends the domain with virsh destroy.
echo "WAITING destroy"
sleep 600
