#!/bin/bash
# SPDX-License-Identifier: MIT
# End to end: examples/rng (a virtio-rng back-end on libvhu) serves a Linux
# guest in the system's QEMU (Debian bookworm: 7.2) through
# -device vhost-user-rng-pci.  The guest reads 4 KiB from /dev/hwrng in the
# driver's 64-byte requests and 4 KiB at once; the bytes must arrive, not be
# all zero, and differ between reads (tests/e2e/guest/rng-checks.sh).  Two
# boots against the same rng process: a split ring, then a packed one
# (packed=on), which is also a reconnect.
# Usage: test-guest-rng.sh BUILD_DIR    (TAP on stdout)
set -u
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
RNG=$BUILD/examples/rng
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

[ -x "$RNG" ] || { notok "$RNG is built"; finish; }
command -v "$E2E_QEMU" >/dev/null || { echo "1..0 # SKIP $E2E_QEMU not installed"; exit 0; }
e2e_guest_kernel
e2e_guest_work vhu-e2e-rng
tmp=$E2E_WORK

# The kernel package's virtio-rng module (the cache keeps the block stack
# only); hw_random itself is built into Debian's kernel.
deb=$(ls "$E2E_CACHE_DIR"/dl/"$(cat "$E2E_CACHE_DIR/kernel/PACKAGE")"_*.deb 2>/dev/null | head -n 1)
if [ -z "$deb" ] || ! dpkg-deb --fsys-tarfile "$deb" |
	tar -xO --wildcards '*/hw_random/virtio-rng.ko' >"$tmp/virtio-rng.ko" 2>/dev/null ||
	[ ! -s "$tmp/virtio-rng.ko" ]; then
	echo "Bail out! no virtio-rng.ko in the kernel package ${deb:-(not in $E2E_CACHE_DIR/dl)}"
	exit 1
fi
e2e_guest_image "$tmp" "$HERE/guest/rng-checks.sh" "$tmp/virtio-rng.ko"

e2e_spawn "$RNG" "$tmp/rng.sock" >"$tmp/rng.log" 2>&1
RNG_PID=$E2E_LAST_PID
if ! e2e_wait_path "$tmp/rng.sock" 10; then
	notok "rng starts" "$(tail -n 5 "$tmp/rng.log")"
	finish
fi
ok "rng starts"

# boot LAYOUT PACKED: one guest session, its checks as TAP lines
boot() {
	local layout=$1 packed=$2 log=$tmp/console-$1.log qpid
	: >"$log"
	e2e_qemu_base "$E2E_ACCEL" "$tmp/initrd.cpio" "$log"
	E2E_QEMU_ARGS+=(-chardev "socket,id=c0,path=$tmp/rng.sock"
		-device "vhost-user-rng-pci,chardev=c0,packed=$packed,addr=0x4")
	e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$tmp/qemu-$layout.err"
	qpid=$E2E_LAST_PID
	if ! e2e_wait_log "$log" VHU-GUEST-DONE 100 "$qpid"; then
		notok "guest ($layout ring) finishes" \
			"$(tail -n 5 "$tmp/qemu-$layout.err" "$log" "$tmp/rng.log" | tr '\r' ' ')"
		kill -KILL "$qpid" 2>/dev/null
		return
	fi
	e2e_wait_exit "$qpid" 30 || kill -KILL "$qpid" 2>/dev/null
	res() { grep -ao "RESULT $1 [a-z]* .*" "$log" | tr -d '\r' | tail -n 1 | cut -d' ' -f3-; }
	check "$layout ring: guest has /dev/hwrng from virtio_rng" "$(res hwrng)" \
		grep -q "^ok virtio_rng" <<<"$(res hwrng)"
	check "$layout ring: guest reads 4096 bytes in 64-byte requests" "$(res bytes)" \
		[ "$(res bytes)" = "ok 4096" ]
	local nz
	nz=$(res nonzero | cut -d' ' -f2)
	# Random bytes: about 1 in 256 is zero; far more than 3500 of 4096
	# are not (all zero would leave 0).
	check "$layout ring: the bytes are not zeroes" "$(res nonzero)" [ "${nz:-0}" -gt 3500 ]
	check "$layout ring: guest reads 4096 bytes at once" "$(res bytes_big)" \
		[ "$(res bytes_big)" = "ok 4096" ]
	check "$layout ring: two reads differ" "$(res differ)" [ "$(res differ)" = "ok " ]
	local f want=0
	f=$(res features | cut -d' ' -f2)
	[ "$packed" = on ] && want=1
	check "$layout ring: RING_PACKED negotiated: $want" "features $f" [ "${f:34:1}" = "$want" ]
	check "$layout ring: rng survives the guest" "$(tail -n 5 "$tmp/rng.log")" kill -0 "$RNG_PID"
}
boot split off
boot packed on

kill -TERM "$RNG_PID"
check "rng exits on SIGTERM" "$(tail -n 5 "$tmp/rng.log")" e2e_wait_exit "$RNG_PID" 5
check "rng removes its socket" "" [ ! -e "$tmp/rng.sock" ]
finish
