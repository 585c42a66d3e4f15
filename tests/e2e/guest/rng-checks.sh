#!/bin/sh
# Guest half of tests/e2e/test-guest-rng.sh; runs as /test.sh under busybox
# with one vhost-user-rng device (examples/rng).  The Debian kernel has the
# hw_random core built in and virtio-rng as a module, carried in /bin.
# Prints "RESULT <name> ok|fail <detail>" lines; the host judges them.

r() { echo "RESULT $1 $2 $3"; }

insmod /bin/virtio-rng.ko 2>/dev/null || insmod /bin/virtio_rng.ko
i=0
while [ $i -lt 50 ] && ! [ -e /dev/hwrng ]; do
	usleep 100000; i=$((i + 1))
done
[ -e /dev/hwrng ] || { r hwrng fail "no /dev/hwrng"; exit 1; }
r hwrng ok "$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"

# 4 KiB in 64-byte reads (the driver's buffers), then as one read.
dd if=/dev/hwrng of=/tmp/a bs=64 count=64 2>/dev/null
r bytes ok "$(wc -c </tmp/a)"
r nonzero ok "$(tr -d '\000' </tmp/a | wc -c)"
dd if=/dev/hwrng of=/tmp/b bs=4096 count=1 2>/dev/null
r bytes_big ok "$(wc -c </tmp/b)"
# Two reads of random bytes differ.
if cmp -s /tmp/a /tmp/b; then r differ fail same; else r differ ok ""; fi
# The negotiated feature bits, bit 0 first (the host checks RING_PACKED).
r features ok "$(cat /sys/bus/virtio/devices/virtio*/features | head -n 1)"
