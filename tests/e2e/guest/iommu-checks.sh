#!/bin/sh
# Guest half of tests/e2e/test-guest-iommu.sh; runs as /test.sh under
# busybox with one vhost-user-blk disk (iommu_platform=on).  Writes 4 MiB
# of a known pattern, drops the page cache, reads it back.  Prints
# "RESULT <name> ok|fail <detail>" lines; the host judges them (and the
# image).

r() { echo "RESULT $1 $2 $3"; }

i=0
while [ $i -lt 50 ] && ! [ -b /dev/vda ]; do
	usleep 100000; i=$((i + 1))
done
[ -b /dev/vda ] || { r disk fail "no /dev/vda"; exit 1; }
r disk ok ""
# The bits the guest negotiated, bit 0 first (ACCESS_PLATFORM is 33).
r features ok "$(cat /sys/bus/virtio/devices/virtio*/features | head -n 1)"
yes VHU-IOMMU | head -c 4194304 >/tmp/pattern
if dd if=/tmp/pattern of=/dev/vda bs=65536 2>/tmp/dd.err && sync; then
	r write ok ""
else
	r write fail "$(head -c 200 /tmp/dd.err)"
fi
echo 3 >/proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/back bs=65536 count=64 2>/dev/null
if cmp -s /tmp/pattern /tmp/back; then r readback ok ""; else r readback fail differs; fi
r ioerrors ok "$(dmesg | grep -c -i 'I/O error')"
