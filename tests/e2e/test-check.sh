#!/bin/bash
# SPDX-License-Identifier: MIT
# End to end: `vhu check` against vhu-blk (every case must pass; the
# checker's own TAP lines are this test's lines, renumbered), against
# examples/ramdisk as `--device generic` (every case passes or is skipped
# as block-only; the still-serves check is the handshake alone), against
# examples/rng as `--device rng` when it is built (the still-serves check
# is one filled buffer), against vhu-vsock as `--device vsock` (its queues
# start) and, as a report only,
# against qemu-storage-daemon (printed as "# qsd: ..." comments, never a
# failure), for the system's qemu-storage-daemon (7.2, "# qsd: ...") and
# for QEMU 10.0's ("# qsd10: ...", see tests/e2e/peers/fetch-qemu10).
# qemu-storage-daemon is restarted after every case it fails,
# so that one case that wedges it does not hide the others.
# Usage: test-check.sh BUILD_DIR
set -u
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
BLK=$BUILD/tools/vhu-blk
RAMDISK=$BUILD/examples/ramdisk
RNG=$BUILD/examples/rng
VSOCK=$BUILD/tools/vhu-vsock
VHU=$BUILD/tools/vhu
QSD=${QSD:-/usr/bin/qemu-storage-daemon}
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
START=$SECONDS
BUDGET=240   # seconds for vhu-blk and the qsd 7.2 report
QSD10_BUDGET=150   # seconds for the qsd 10.0 report

if [ -x "$BUILD/tools/vhu" ] && "$BUILD/tools/vhu" check --help 2>/dev/null | grep -q -- --case; then
	CHECK=("$BUILD/tools/vhu" check)
elif [ -x "$BUILD/tools/check/vhu-check" ]; then
	CHECK=("$BUILD/tools/check/vhu-check")
else
	echo "not ok 1 - vhu-check is built in $BUILD"
	exit 1
fi
if [ ! -x "$BLK" ]; then
	echo "not ok 1 - vhu-blk is built in $BUILD"
	exit 1
fi

tmp=$(e2e_tmpdir vhu-e2e-check)
blk_pid='' qsd_pid='' dev_pid=''
stop() { e2e_stop "$1"; }
cleanup() {
	stop "$blk_pid"
	stop "$qsd_pid"
	stop "$dev_pid"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

wait_sock() {
	for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
	return 1
}

# The checker's TAP lines, renumbered into this script's own sequence (it
# runs the checker more than once), with PREFIX before each case name; its
# plan and summary become comments.  tap FILE PREFIX
n=0
tap() {
	local line
	while IFS= read -r line; do
		case $line in
		"ok "*) n=$((n + 1)); echo "ok $n - $2${line#ok * - }" ;;
		"not ok "*) n=$((n + 1)); echo "not ok $n - $2${line#not ok * - }" ;;
		1..*) ;;
		*) echo "# $line" ;;
		esac
	done <"$1"
}
# own test lines: result NAME COMMAND...
result() {
	local name=$1; shift
	n=$((n + 1))
	if "$@"; then echo "ok $n - $name"; else echo "not ok $n - $name"; rc=1; fi
}

# --- vhu-blk: everything must pass ----------------------------------------
truncate -s 64M "$tmp/blk.img"
"$BLK" --socket-path "$tmp/blk.sock" --blk-file "$tmp/blk.img" >"$tmp/blk.log" 2>&1 &
blk_pid=$!
if ! wait_sock "$tmp/blk.sock"; then
	echo "not ok 1 - vhu-blk starts"
	sed 's/^/# /' "$tmp/blk.log"
	exit 1
fi
timeout 200 "${CHECK[@]}" --timeout 2000 --pid "$blk_pid" "$tmp/blk.sock" >"$tmp/blk.out" 2>&1
rc=$?
tap "$tmp/blk.out" ""
if ! kill -0 "$blk_pid" 2>/dev/null; then
	echo "# vhu-blk is no longer running"
	rc=1
fi
if [ $rc -ne 0 ]; then
	echo "# vhu-blk log (last lines):"
	tail -20 "$tmp/blk.log" | sed 's/^/#   /'
fi
stop "$blk_pid"
blk_pid=''

# --- another device: every case passes or is skipped as block-only -------
# dev_check TAG DEVICE SOCKET PID: the whole catalogue with --device DEVICE;
# its lines are this test's lines ("TAG: case"), then its counts.
dev_check() {
	local tag=$1 dev=$2 sock=$3 pid=$4 drc sum
	timeout 200 "${CHECK[@]}" --timeout 2000 --device "$dev" --pid "$pid" "$sock" \
		>"$tmp/$tag.out" 2>&1
	drc=$?
	tap "$tmp/$tag.out" "$tag: "
	sum=$(tail -n 1 "$tmp/$tag.out")
	result "$tag: vhu check --device $dev exits 0 ($sum)" [ $drc -eq 0 ]
	# The block-only cases say so; the others ran (and passed above).
	result "$tag: block-only cases are skipped as such" \
		grep -q '^ok [0-9]* - blk/short-header # SKIP not blk' "$tmp/$tag.out"
	result "$tag: protocol cases ran" \
		grep -q '^ok [0-9]* - framing/size-over-max: ' "$tmp/$tag.out"
	result "$tag: back-end still running" kill -0 "$pid"
}
if [ -x "$RAMDISK" ]; then
	"$RAMDISK" "$tmp/rd.sock" 64 >"$tmp/rd.log" 2>&1 &
	dev_pid=$!
	if wait_sock "$tmp/rd.sock"; then
		dev_check ramdisk-generic generic "$tmp/rd.sock" "$dev_pid"
		# The other commands and --device: probe decodes what the device
		# module knows, bench and watch refuse what they cannot speak.
		out=$(timeout 20 "$VHU" probe --device generic "$tmp/rd.sock" 2>&1)
		result "probe --device generic: config space as raw hex" \
			grep -q "^config (96 bytes):" <<<"$out"
		out=$(timeout 20 "$VHU" probe --device rng "$tmp/rd.sock" 2>&1)
		result "probe --device rng: no config space, said as such" \
			grep -q "^config: none (the device has no config space)" <<<"$out"
		out=$(timeout 20 "$VHU" bench --device rng --count 10 "$tmp/rd.sock" 2>&1); brc=$?
		result "bench --device rng: refused, naming the device (exit $brc)" \
			bash -c '[ "$1" -eq 2 ] && grep -q "virtio-blk load only; --device rng" <<<"$2"' _ "$brc" "$out"
		out=$(timeout 20 "$VHU" watch --device vsock "$tmp/rd.sock" 2>&1); brc=$?
		result "watch --device vsock: refused, naming the device (exit $brc)" \
			bash -c '[ "$1" -eq 2 ] && grep -q "virtio-blk capacity only; --device vsock" <<<"$2"' _ "$brc" "$out"
	else
		result "ramdisk starts" false
	fi
	stop "$dev_pid"
	dev_pid=''
else
	n=$((n + 1)); echo "ok $n - ramdisk --device generic # SKIP examples/ramdisk not built"
fi
if [ -x "$RNG" ]; then
	"$RNG" "$tmp/rng.sock" >"$tmp/rng.log" 2>&1 &
	dev_pid=$!
	if wait_sock "$tmp/rng.sock"; then
		dev_check rng rng "$tmp/rng.sock" "$dev_pid"
		out=$(timeout 20 "$VHU" probe --device rng "$tmp/rng.sock" 2>&1); brc=$?
		result "rng: probe --device rng exits 0 and shows no config space (exit $brc)" \
			bash -c '[ "$1" -eq 0 ] && grep -q "^config: none (" <<<"$2"' _ "$brc" "$out"
		out=$(timeout 20 "$VHU" bench --count 10 "$tmp/rng.sock" 2>&1); brc=$?
		result "rng: bench without --device says it loads virtio-blk only (exit $brc)" \
			bash -c '[ "$1" -eq 1 ] && grep -q "no virtio-blk config space.*virtio-blk only" <<<"$2"' _ "$brc" "$out"
	else
		result "rng starts" false
		sed 's/^/#   /' "$tmp/rng.log"
	fi
	stop "$dev_pid"
	dev_pid=''
else
	n=$((n + 1)); echo "ok $n - rng --device rng # SKIP examples/rng not built"
fi
# The second device: vhu-vsock, every case but the block-only ones.
if [ -x "$VSOCK" ]; then
	"$VSOCK" --socket-path "$tmp/vsock.sock" --uds-path "$tmp/vsock-host" \
		--guest-cid 3 >"$tmp/vsock.log" 2>&1 &
	dev_pid=$!
	if wait_sock "$tmp/vsock.sock"; then
		dev_check vsock vsock "$tmp/vsock.sock" "$dev_pid"
		out=$(timeout 20 "$VHU" probe --device vsock "$tmp/vsock.sock" 2>&1); brc=$?
		result "vsock: probe --device vsock decodes guest_cid 3 (exit $brc)" \
			bash -c '[ "$1" -eq 0 ] && grep -q "^  guest_cid: 3$" <<<"$2"' _ "$brc" "$out"
	else
		result "vhu-vsock starts" false
		sed 's/^/#   /' "$tmp/vsock.log"
	fi
	stop "$dev_pid"
	dev_pid=''
else
	n=$((n + 1)); echo "ok $n - vhu-vsock --device vsock # SKIP tools/vhu-vsock not built"
fi

# --- the checker itself: a peer that never answers must fail it ----------
silent_pid=''
python3 - "$tmp/silent.sock" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
s.settimeout(0.2)
conns, end = [], time.time() + 30
while time.time() < end:
    try:
        conns.append(s.accept()[0])
    except socket.timeout:
        pass
PY
silent_pid=$!
if wait_sock "$tmp/silent.sock"; then
	out=$(timeout 30 "${CHECK[@]}" --timeout 200 --case 'conf/handshake' "$tmp/silent.sock" 2>&1)
	src=$?
	if [ $src -eq 1 ] && grep -q '^not ok 1 - conf/handshake: no valid reply' <<<"$out"; then
		echo "# self-test: a silent peer fails the checker (exit $src)"
	else
		echo "# self-test FAILED: a silent peer gave exit $src:"
		sed 's/^/#   /' <<<"$out"
		rc=1
	fi
	# The handshake-only check after a case must fail on it too.
	out=$(timeout 30 "${CHECK[@]}" --timeout 200 --device generic --case 'framing/version-0' "$tmp/silent.sock" 2>&1)
	src=$?
	if [ $src -eq 1 ] && grep -q '^not ok 1 - framing/version-0: ' <<<"$out"; then
		echo "# self-test: a silent peer fails --device generic (exit $src)"
	else
		echo "# self-test FAILED: --device generic on a silent peer gave exit $src:"
		sed 's/^/#   /' <<<"$out"
		rc=1
	fi
else
	echo "# self-test: cannot start the silent peer, skipped"
fi
stop "$silent_pid"

# --- qemu-storage-daemon: a report only ------------------------------------
# Twice: the system's qemu-storage-daemon ("# qsd: ...", QEMU 7.2 on
# Debian bookworm) and QEMU 10.0 from bookworm-backports ("# qsd10: ...",
# fetched by tests/e2e/peers/fetch-qemu10), each with its own time budget.
qsd_bin=''
qsd_start() {
	stop "$qsd_pid"
	rm -f "$tmp/qsd.sock"
	"$qsd_bin" --blockdev driver=file,node-name=f0,filename="$tmp/qsd.img" \
		--blockdev driver=raw,node-name=d0,file=f0 \
		--export type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path="$tmp/qsd.sock",writable=on \
		>>"$tmp/qsd.log" 2>&1 &
	qsd_pid=$!
	wait_sock "$tmp/qsd.sock"
}
declare -A verdict
# qsd_report BINARY TAG DEADLINE(seconds since start): "# TAG: ..." lines
qsd_report() {
	local tag=$2 deadline=$3 qp=0 qf=0 restarts=0 qn=0 line c
	qsd_bin=$1
	rm -f "$tmp/qsd.img"
	truncate -s 64M "$tmp/qsd.img"
	echo "# $tag: $("$qsd_bin" --version 2>/dev/null | head -n 1)"
	qsd_start || echo "# $tag: does not start"
	for c in "${cases[@]}"; do
		if [ $((SECONDS - START)) -ge "$deadline" ]; then
			echo "# $tag: out of time budget, $((${#cases[@]} - qn)) cases not run"
			break
		fi
		qn=$((qn + 1))
		line=$(timeout 30 "${CHECK[@]}" --timeout 500 --case "$c" "$tmp/qsd.sock" 2>&1 |
			grep -E '^(not )?ok ' | head -1)
		[ -n "$line" ] || line="not ok 1 - $c: checker printed nothing (timed out)"
		line=$(sed -E "s/^(not ok|ok) [0-9]+ /\1 $qn /" <<<"$line")
		echo "# $tag: $line"
		# For the comparison: verdict and detail, without number and path.
		verdict[$tag/$c]=$(sed -E "s/^(not ok|ok) [0-9]+ - /\1: /; s#$tmp/##g" <<<"$line")
		case $line in
		ok*) qp=$((qp + 1)) ;;
		*)
			qf=$((qf + 1))
			kill -0 "$qsd_pid" 2>/dev/null || echo "# $tag:   (qemu-storage-daemon exited)"
			qsd_start
			restarts=$((restarts + 1))
			;;
		esac
	done
	stop "$qsd_pid"
	qsd_pid=''
	echo "# $tag: $qp passed, $qf failed ($restarts restarts of qemu-storage-daemon)"
}
mapfile -t cases < <("${CHECK[@]}" --list)
if [ -x "$QSD" ]; then
	qsd_report "$QSD" qsd $BUDGET
else
	echo "# qsd: qemu-storage-daemon not installed, report skipped"
fi
if [ -n "${QSD10:-}" ]; then
	q10=$QSD10
elif d=$("$(dirname "$0")/peers/fetch-qemu10"); then
	q10=$d/bin/qemu-storage-daemon
else
	q10='' why=$d
fi
if [ -n "$q10" ] && [ -x "$q10" ]; then
	qsd_report "$q10" qsd10 $((SECONDS - START + QSD10_BUDGET))
	# What changed between the two versions, case by case.
	if [ -x "$QSD" ]; then
		nd=0
		for c in "${cases[@]}"; do
			a=${verdict[qsd/$c]:-} b=${verdict[qsd10/$c]:-}
			if [ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ]; then
				echo "# qsd10: differs from 7.2: $a"
				echo "# qsd10:                -> $b"
				nd=$((nd + 1))
			fi
		done
		echo "# qsd10: $nd cases answered differently from qsd 7.2"
	fi
else
	echo "# qsd10: QEMU 10.0 cannot be fetched, report skipped: ${why:-$q10 not executable}"
fi
echo "1..$n"
exit $rc
