#!/bin/bash
# SPDX-License-Identifier: MIT
# End to end: the programs in examples/, built on libvhu's public API.
#   - `vhu check` against examples/ramdisk: every case must pass or skip
#     (each case is a test line here, "check ramdisk: ...");
#   - a Linux guest in QEMU on ramdisk: the disk appears with its size and
#     serial (GET_ID), reads zeroes, takes a write that reads back, flushes;
#   - examples/probe against ramdisk, vhu-blk and qemu-storage-daemon: it
#     prints the features and the capacity from the config space;
#   - examples/rng: probe names every ring feature it offers and shows no
#     config space; SIGTERM ends vhu_backend_run() and the socket goes (a
#     guest on it: tests/e2e/test-guest-rng.sh).
# Usage: test-examples.sh BUILD_DIR    (TAP on stdout)
set -u
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
RAMDISK=$BUILD/examples/ramdisk
RNG=$BUILD/examples/rng
PROBE=$BUILD/examples/probe
VHU=$BUILD/tools/vhu
BLK=$BUILD/tools/vhu-blk
QSD=${QSD:-/usr/bin/qemu-storage-daemon}
. "$HERE/guest/lib.sh"

n=0 fails=0
ok()    { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; fails=$((fails + 1)); [ -n "${2:-}" ] && echo "#   $2"; }
skip()  { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check() { # check NAME DIAG COMMAND...
	local name=$1 diag=$2; shift 2
	if "$@"; then ok "$name"; else notok "$name" "$diag"; fi
}
finish() { echo "1..$n"; [ "$fails" -eq 0 ]; exit $?; }

for p in "$RAMDISK" "$RNG" "$PROBE" "$VHU" "$BLK"; do
	[ -x "$p" ] || { notok "$p is built"; finish; }
done

base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
tmp=$(mktemp -d "$base/vhu-e2e-examples.XXXXXX")
cleanup() {
	e2e_cleanup
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

MiB=$((1 << 20))
# start_ramdisk NAME SIZE_MIB: sets RD_PID, 0 when the socket appeared
start_ramdisk() {
	e2e_spawn "$RAMDISK" "$tmp/$1.sock" "$2" >"$tmp/$1.log" 2>&1
	RD_PID=$E2E_LAST_PID
	e2e_wait_path "$tmp/$1.sock" 10
}
no_capacity() { ! grep -q capacity <<<"$1"; }
# probe_check TAG SOCKET SECTORS: probe succeeds, decodes the capacity when
# told the device is a block device and not otherwise
probe_check() {
	local tag=$1 sock=$2 sectors=$3 out rc
	out=$(timeout 20 "$PROBE" "$sock" 2>&1); rc=$?
	check "probe $tag: exits 0" "exit $rc: $(head -c 300 <<<"$out")" [ $rc -eq 0 ]
	check "probe $tag: no device named, no block decoding" "$(grep capacity <<<"$out")" \
		no_capacity "$out"
	out=$(timeout 20 "$PROBE" "$sock" blk 2>&1); rc=$?
	check "probe $tag blk: prints the capacity" "$(grep capacity <<<"$out")" \
		grep -q "^as virtio-blk: capacity $sectors sectors" <<<"$out"
	check "probe $tag: names the protocol features" "$(head -c 300 <<<"$out")" \
		grep -q "^  CONFIG$" <<<"$out"
	check "probe $tag: names VERSION_1" "" grep -q "^  VERSION_1$" <<<"$out"
}

# --- vhu check against ramdisk ------------------------------------------------
if start_ramdisk check 64; then
	ok "ramdisk starts"
	timeout 300 "$VHU" check --timeout 2000 --pid "$RD_PID" "$tmp/check.sock" >"$tmp/check.out" 2>&1
	rc=$?
	while IFS= read -r line; do
		case $line in
		"ok "*" # SKIP"*) name=${line#ok * - }; skip "check ramdisk: ${name%% # SKIP*}" "${name#* # SKIP }" ;;
		"ok "*) ok "check ramdisk: ${line#ok * - }" ;;
		"not ok "*) notok "check ramdisk: ${line#not ok * - }" ;;
		esac
	done <"$tmp/check.out"
	check "vhu check exits 0 against ramdisk" "exit $rc; $(tail -n 1 "$tmp/check.out")" [ $rc -eq 0 ]
	check "ramdisk survives the checker" "$(tail -n 5 "$tmp/check.log")" kill -0 "$RD_PID"
	probe_check ramdisk "$tmp/check.sock" $((64 * MiB / 512))
	kill -TERM "$RD_PID"
	e2e_wait_exit "$RD_PID" 5
	check "ramdisk exits on SIGTERM and removes its socket" "" [ ! -e "$tmp/check.sock" ]
else
	notok "ramdisk starts" "$(tail -n 5 "$tmp/check.log")"
fi

# --- examples/rng ----------------------------------------------------------------
e2e_spawn "$RNG" "$tmp/rng.sock" >"$tmp/rng.log" 2>&1
RNG_PID=$E2E_LAST_PID
if e2e_wait_path "$tmp/rng.sock" 10; then
	ok "rng starts"
	out=$(timeout 20 "$PROBE" "$tmp/rng.sock" 2>&1); rc=$?
	check "probe rng: exits 0" "exit $rc: $(head -c 300 <<<"$out")" [ $rc -eq 0 ]
	for f in VERSION_1 INDIRECT_DESC EVENT_IDX RING_PACKED ANY_LAYOUT LOG_ALL; do
		check "probe rng: names $f" "$(head -c 400 <<<"$out")" grep -q "^  $f$" <<<"$out"
	done
	check "probe rng: every feature bit named" "$(grep '  bit ' <<<"$out")" \
		[ -z "$(grep '^  bit ' <<<"$out")" ]
	check "probe rng: no config space" "$(grep config <<<"$out")" \
		grep -q "^config: not offered$" <<<"$out"
	kill -TERM "$RNG_PID"
	check "rng exits on SIGTERM" "$(tail -n 5 "$tmp/rng.log")" e2e_wait_exit "$RNG_PID" 5
	check "rng removes its socket" "" [ ! -e "$tmp/rng.sock" ]
else
	notok "rng starts" "$(tail -n 5 "$tmp/rng.log")"
fi

# --- probe against vhu-blk and qemu-storage-daemon ----------------------------
truncate -s $((32 * MiB)) "$tmp/blk.img"
e2e_spawn "$BLK" --socket-path "$tmp/blk.sock" --blk-file "$tmp/blk.img" >"$tmp/blk.log" 2>&1
if e2e_wait_path "$tmp/blk.sock" 10; then
	probe_check vhu-blk "$tmp/blk.sock" $((32 * MiB / 512))
else
	notok "vhu-blk starts" "$(tail -n 5 "$tmp/blk.log")"
fi
if [ -x "$QSD" ]; then
	truncate -s $((16 * MiB)) "$tmp/qsd.img"
	e2e_spawn "$QSD" --blockdev driver=file,node-name=f0,filename="$tmp/qsd.img" \
		--blockdev driver=raw,node-name=d0,file=f0 \
		--export type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path="$tmp/qsd.sock",writable=on \
		>"$tmp/qsd.log" 2>&1
	if e2e_wait_path "$tmp/qsd.sock" 10; then
		probe_check qemu-storage-daemon "$tmp/qsd.sock" $((16 * MiB / 512))
	else
		notok "qemu-storage-daemon starts" "$(tail -n 5 "$tmp/qsd.log")"
	fi
else
	skip "probe qemu-storage-daemon" "$QSD not installed"
fi
e2e_cleanup

# --- a Linux guest on ramdisk -------------------------------------------------
guest() {
	command -v "$E2E_QEMU" >/dev/null || { skip "guest on ramdisk" "$E2E_QEMU not installed"; return; }
	local why
	if ! why=$(e2e_kernel); then skip "guest on ramdisk" "guest kernel unavailable: $why"; return; fi
	e2e_kernel >/dev/null
	if ! why=$(e2e_build_initrd "$tmp/initrd.cpio" "$HERE/guest/ramdisk-checks.sh"); then
		notok "guest image builds" "$why"
		return
	fi
	e2e_probe_accel "$tmp"
	echo "# accel: $E2E_ACCEL"
	if ! start_ramdisk guest 32; then
		notok "ramdisk starts for the guest" "$(tail -n 5 "$tmp/guest.log")"
		return
	fi
	local log=$tmp/console.log qpid
	e2e_boot_one_disk "$tmp/initrd.cpio" "$log" "$tmp/guest.sock" "$tmp/qemu.err"
	qpid=$E2E_LAST_PID
	if e2e_wait_log "$log" VHU-GUEST-BOOTED 90 "$qpid"; then
		ok "guest boots on ramdisk ($E2E_ACCEL)"
	else
		notok "guest boots on ramdisk ($E2E_ACCEL)" "$(tail -n 5 "$tmp/qemu.err" "$log" | tr '\r' ' ')"
		return
	fi
	e2e_wait_log "$log" VHU-GUEST-DONE 120 "$qpid"
	e2e_wait_exit "$qpid" 30 || kill -KILL "$qpid" 2>/dev/null
	res() { grep -ao "RESULT $1 [a-z]* .*" "$log" | tr -d '\r' | tail -n 1 | cut -d' ' -f3-; }
	local want_sum
	want_sum=$(yes vhu-ramdisk-guest | head -c 65536 | md5sum | cut -d' ' -f1)
	check "guest sees the disk" "$(res disk)" [ "$(res disk)" = "ok vda" ]
	check "guest sees the size (32 MiB)" "$(res size)" [ "$(res size)" = "ok $((32 * MiB / 512))" ]
	check "guest reads the serial (GET_ID)" "$(res serial)" [ "$(res serial)" = "ok vhu-ramdisk" ]
	check "guest reads zeroes from a fresh disk" "$(res zeroes)" [ "$(res zeroes)" = "ok 0" ]
	check "guest write reads back (direct I/O)" "$(res write)" [ "$(res write)" = "ok $want_sum" ]
	check "guest write reads back (page cache)" "$(res reread)" [ "$(res reread)" = "ok $want_sum" ]
	check "guest reads the last sector" "$(res last_sector)" [ "$(res last_sector)" = "ok 512" ]
	check "guest flush succeeds" "$(res flush)" [ "$(res flush | cut -d' ' -f1)" = ok ]
	check "ramdisk survives the guest" "$(tail -n 5 "$tmp/guest.log")" kill -0 "$RD_PID"
	# QEMU is gone; the next front-end is served.
	probe_check "ramdisk after the guest" "$tmp/guest.sock" $((32 * MiB / 512))
}
guest
finish
