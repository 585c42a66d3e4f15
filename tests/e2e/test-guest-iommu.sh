#!/bin/bash
# SPDX-License-Identifier: MIT
# End to end: vhu-blk and VIRTIO_F_ACCESS_PLATFORM (-device
# vhost-user-blk-pci,iommu_platform=on).  With the system's QEMU (Debian
# bookworm: 7.2), the confidential-VM shape, no virtual IOMMU: QEMU offers
# the bit to the guest, not to the back-end, and sends no IOTLB messages.
#   - vhu-blk --iommu off: QEMU refuses to start the device;
#   - vhu-blk (default): the guest negotiates ACCESS_PLATFORM, writes 4 MiB
#     of a pattern, reads it back after dropping its page cache, sees no
#     I/O error, and the image holds the pattern.
# Then behind QEMU 10.0's intel-iommu (device-iotlb, ats=on): the same
# with a split ring and iommu.strict=1 (every unmap invalidated at once)
# and a packed ring with iommu.strict=0 (batched), vhu-blk asking QEMU for
# translations (misses) and QEMU answering.
# (tests/e2e/guest/iommu-checks.sh is the guest half.)
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

# Turned off: not offered, and QEMU says so.
if start_blk plain --iommu off; then
	qemu_args plain
	e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$tmp/qemu-plain.err"
	qpid=$E2E_LAST_PID
	if e2e_wait_exit "$qpid" 60; then
		check "--iommu off: QEMU refuses iommu_platform=on" \
			"$(tail -n 3 "$tmp/qemu-plain.err")" \
			grep -q "iommu_platform=true is not supported" "$tmp/qemu-plain.err"
	else
		kill -KILL "$qpid" 2>/dev/null
		notok "--iommu off: QEMU refuses iommu_platform=on" "QEMU kept running"
	fi
	kill -TERM "$BLK_PID"
	e2e_wait_exit "$BLK_PID" 5
else
	notok "vhu-blk starts" "$(tail -n 5 "$tmp/plain.log")"
fi

if ! VHU_LOG=debug start_blk iommu; then
	notok "vhu-blk starts" "$(tail -n 5 "$tmp/iommu.log")"
	finish
fi
ok "vhu-blk starts"
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
# No vIOMMU: QEMU keeps the bit from the back-end and sends no IOTLB_MSG.
check "no IOTLB messages without a vIOMMU" "$(grep -c 'IOTLB' "$tmp/iommu.log")" \
	bash -c "! grep -q 'IOTLB' '$tmp/iommu.log'"
check "no queue broke" "$(grep -i 'broke' "$tmp/iommu.log" | head -n 3)" \
	bash -c "! grep -qi 'broke' '$tmp/iommu.log'"
kill -TERM "$BLK_PID"
check "vhu-blk exits on SIGTERM" "$(tail -n 5 "$tmp/iommu.log")" e2e_wait_exit "$BLK_PID" 10

# Behind a virtual IOMMU (QEMU 10.0): ring and buffer addresses are IOVAs,
# translated through the IOTLB QEMU fills as vhu-blk asks (misses); the
# guest invalidates each unmap at once (iommu.strict=1) or in batches (0).
viommu() { # viommu NAME PACKED STRICT
	local name=$1 packed=$2 strict=$3 log=$tmp/console-$1.log qpid
	if ! VHU_LOG=debug start_blk "$name"; then
		notok "$name: vhu-blk starts" "$(tail -n 5 "$tmp/$name.log")"
		return
	fi
	: >"$log"
	E2E_MACHINE=q35,kernel-irqchip=split E2E_APPEND="intel_iommu=on iommu.strict=$strict" \
		E2E_QEMU_DATA=$Q10_DATA e2e_qemu_base "$E2E_ACCEL" "$tmp/initrd.cpio" "$log"
	E2E_QEMU_ARGS+=(-device intel-iommu,intremap=on,device-iotlb=on
		-chardev "socket,id=c0,path=$tmp/$name.sock"
		-device "vhost-user-blk-pci,chardev=c0,num-queues=1,addr=0x4,disable-legacy=on,iommu_platform=on,ats=on,packed=$packed")
	e2e_spawn "$Q10" "${E2E_QEMU_ARGS[@]}" 2>"$tmp/qemu-$name.err"
	qpid=$E2E_LAST_PID
	if ! e2e_wait_log "$log" VHU-GUEST-DONE 180 "$qpid"; then
		notok "$name: guest finishes" \
			"$(tail -n 5 "$tmp/qemu-$name.err" "$log" "$tmp/$name.log" | tr '\r' ' ')"
		kill -KILL "$qpid" 2>/dev/null
		kill -TERM "$BLK_PID"; e2e_wait_exit "$BLK_PID" 10
		return
	fi
	e2e_wait_exit "$qpid" 30 || kill -KILL "$qpid" 2>/dev/null
	res() { grep -ao "RESULT $1 [a-z]* .*" "$log" | tr -d '\r' | tail -n 1 | cut -d' ' -f3-; }
	f=$(res features | cut -d' ' -f2)
	check "$name: guest negotiated ACCESS_PLATFORM" "features $f" [ "${f:33:1}" = 1 ]
	# The translations came through vhu-blk's misses and QEMU's updates.
	local misses updates
	misses=$(grep -c 'IOTLB miss' "$tmp/$name.log")
	updates=$(grep -c 'request IOTLB_MSG' "$tmp/$name.log")
	check "$name: vhu-blk asked for translations and got them" \
		"misses $misses, IOTLB_MSG $updates" [ "$misses" -gt 0 -a "$updates" -gt 0 ]
	check "$name: guest writes 4 MiB" "$(res write)" [ "$(res write)" = "ok " ]
	check "$name: guest reads back what it wrote" "$(res readback)" [ "$(res readback)" = "ok " ]
	check "$name: no I/O errors in the guest" "$(res ioerrors)" [ "$(res ioerrors)" = "ok 0" ]
	check "$name: the image holds the pattern" "" \
		cmp -s <(yes VHU-IOMMU | head -c 4194304) <(head -c 4194304 "$tmp/disk.img")
	check "$name: no queue broke" "$(grep -i 'broke' "$tmp/$name.log" | head -n 3)" \
		bash -c "! grep -qi 'broke' '$tmp/$name.log'"
	kill -TERM "$BLK_PID"
	check "$name: vhu-blk exits on SIGTERM" "$(tail -n 5 "$tmp/$name.log")" e2e_wait_exit "$BLK_PID" 10
}
e2e_qemu10
if [ -z "$Q10" ]; then
	for t in "split ring, strict" "packed ring, lazy"; do
		ok "vIOMMU, $t # SKIP no QEMU 10.0: $Q10_WHY"
	done
else
	truncate -s 0 "$tmp/disk.img"; truncate -s 64M "$tmp/disk.img"
	viommu viommu-split off 1
	truncate -s 0 "$tmp/disk.img"; truncate -s 64M "$tmp/disk.img"
	viommu viommu-packed on 0
fi
finish
