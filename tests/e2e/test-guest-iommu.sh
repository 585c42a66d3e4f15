#!/bin/bash
# SPDX-License-Identifier: MIT
# End to end: vhu-blk and VIRTIO_F_ACCESS_PLATFORM with the system's QEMU
# (Debian bookworm: 7.2), the confidential-VM shape: -device
# vhost-user-blk-pci,iommu_platform=on and no virtual IOMMU.  QEMU then
# offers the bit to the guest, asks the back-end for it, and sends no
# IOTLB messages (addresses are as without the feature).
#   - vhu-blk without --iommu on: QEMU refuses to start the device;
#   - vhu-blk --iommu on: the guest negotiates ACCESS_PLATFORM, writes
#     4 MiB of a pattern, reads it back after dropping its page cache,
#     sees no I/O error, and the image holds the pattern.
# (tests/e2e/guest/iommu-checks.sh is the guest half.)  A guest behind a
# virtual IOMMU is not tested: a buffer whose translation the back-end
# lacks stops its queue (docs/vhu-blk.md).
# Usage: test-guest-iommu.sh BUILD_DIR    (TAP on stdout)
set -u
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
VHU_BLK=$BUILD/tools/vhu-blk
E2E_QEMU=${E2E_QEMU:-/usr/bin/qemu-system-x86_64}
. "$HERE/guest/lib.sh"

n=0 fails=0
ok()    { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; fails=$((fails + 1)); [ -n "${2:-}" ] && echo "#   $2"; }
check() { # check NAME DIAG COMMAND...
	local name=$1 diag=$2; shift 2
	if "$@"; then ok "$name"; else notok "$name" "$diag"; fi
}
finish() { echo "1..$n"; [ "$fails" -eq 0 ]; exit $?; }

[ -x "$VHU_BLK" ] || { notok "$VHU_BLK is built"; finish; }
command -v "$E2E_QEMU" >/dev/null || { echo "1..0 # SKIP $E2E_QEMU not installed"; exit 0; }
e2e_guest_kernel
e2e_guest_work vhu-e2e-iommu
tmp=$E2E_WORK
e2e_guest_image "$tmp" "$HERE/guest/iommu-checks.sh"
truncate -s 64M "$tmp/disk.img"

# start_blk NAME ARGS...: vhu-blk on $tmp/NAME.sock; BLK_PID
start_blk() {
	local name=$1
	shift
	e2e_spawn "$VHU_BLK" -b "$tmp/disk.img" -s "$tmp/$name.sock" --lock off "$@" \
		>"$tmp/$name.log" 2>&1
	BLK_PID=$E2E_LAST_PID
	e2e_wait_path "$tmp/$name.sock" 10
}

# qemu_args NAME: a guest with the disk on $tmp/NAME.sock, iommu_platform=on
qemu_args() {
	: >"$tmp/console-$1.log"
	e2e_qemu_base "$E2E_ACCEL" "$tmp/initrd.cpio" "$tmp/console-$1.log"
	E2E_QEMU_ARGS+=(-chardev "socket,id=c0,path=$tmp/$1.sock"
		-device "vhost-user-blk-pci,chardev=c0,num-queues=1,addr=0x4,disable-legacy=on,iommu_platform=on")
}

# Without the option: not offered, and QEMU says so.
if start_blk plain; then
	qemu_args plain
	e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$tmp/qemu-plain.err"
	qpid=$E2E_LAST_PID
	if e2e_wait_exit "$qpid" 60; then
		check "without --iommu on: QEMU refuses iommu_platform=on" \
			"$(tail -n 3 "$tmp/qemu-plain.err")" \
			grep -q "iommu_platform=true is not supported" "$tmp/qemu-plain.err"
	else
		kill -KILL "$qpid" 2>/dev/null
		notok "without --iommu on: QEMU refuses iommu_platform=on" "QEMU kept running"
	fi
	kill -TERM "$BLK_PID"
	e2e_wait_exit "$BLK_PID" 5
else
	notok "vhu-blk starts" "$(tail -n 5 "$tmp/plain.log")"
fi

if ! start_blk iommu --iommu on; then
	notok "vhu-blk --iommu on starts" "$(tail -n 5 "$tmp/iommu.log")"
	finish
fi
ok "vhu-blk --iommu on starts"
qemu_args iommu
log=$tmp/console-iommu.log
e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$tmp/qemu-iommu.err"
qpid=$E2E_LAST_PID
if ! e2e_wait_log "$log" VHU-GUEST-DONE 120 "$qpid"; then
	notok "guest finishes" \
		"$(tail -n 5 "$tmp/qemu-iommu.err" "$log" "$tmp/iommu.log" | tr '\r' ' ')"
	kill -KILL "$qpid" 2>/dev/null
	finish
fi
e2e_wait_exit "$qpid" 30 || kill -KILL "$qpid" 2>/dev/null
res() { grep -ao "RESULT $1 [a-z]* .*" "$log" | tr -d '\r' | tail -n 1 | cut -d' ' -f3-; }
check "guest sees the disk" "$(res disk)" [ "$(res disk)" = "ok " ]
f=$(res features | cut -d' ' -f2)
check "guest negotiated ACCESS_PLATFORM" "features $f" [ "${f:33:1}" = 1 ]
check "guest writes 4 MiB" "$(res write)" [ "$(res write)" = "ok " ]
check "guest reads back what it wrote" "$(res readback)" [ "$(res readback)" = "ok " ]
check "no I/O errors in the guest" "$(res ioerrors)" [ "$(res ioerrors)" = "ok 0" ]
check "the image holds the pattern" "" \
	cmp -s <(yes VHU-IOMMU | head -c 4194304) <(head -c 4194304 "$tmp/disk.img")
check "vhu-blk survives the guest" "$(tail -n 5 "$tmp/iommu.log")" kill -0 "$BLK_PID"
check "no queue broke" "$(grep -i 'broke' "$tmp/iommu.log" | head -n 3)" \
	bash -c "! grep -qi 'broke' '$tmp/iommu.log'"
kill -TERM "$BLK_PID"
check "vhu-blk exits on SIGTERM" "$(tail -n 5 "$tmp/iommu.log")" e2e_wait_exit "$BLK_PID" 10
finish
