#!/bin/bash
# SPDX-License-Identifier: MIT
# End to end: `vhu check` against vhu-blk (every case must pass; the
# checker's own TAP lines are this test's lines) and, as a report only,
# against qemu-storage-daemon (printed as "# qsd: ..." comments, never a
# failure).  qemu-storage-daemon is restarted after every case it fails,
# so that one case that wedges it does not hide the others.
# Usage: test-check.sh BUILD_DIR
set -u
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
BLK=$BUILD/tools/vhu-blk
QSD=${QSD:-/usr/bin/qemu-storage-daemon}
START=$SECONDS
BUDGET=240   # seconds for the whole script

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

base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
tmp=$(mktemp -d "$base/vhu-e2e-check.XXXXXX")
blk_pid='' qsd_pid=''
stop() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}
cleanup() {
	stop "$blk_pid"
	stop "$qsd_pid"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

wait_sock() {
	for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
	return 1
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
timeout 200 "${CHECK[@]}" --timeout 2000 --pid "$blk_pid" "$tmp/blk.sock"
rc=$?
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
else
	echo "# self-test: cannot start the silent peer, skipped"
fi
stop "$silent_pid"

# --- qemu-storage-daemon: a report only ------------------------------------
qsd_start() {
	stop "$qsd_pid"
	rm -f "$tmp/qsd.sock"
	"$QSD" --blockdev driver=file,node-name=f0,filename="$tmp/qsd.img" \
		--blockdev driver=raw,node-name=d0,file=f0 \
		--export type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path="$tmp/qsd.sock",writable=on \
		>>"$tmp/qsd.log" 2>&1 &
	qsd_pid=$!
	wait_sock "$tmp/qsd.sock"
}
if [ -x "$QSD" ]; then
	truncate -s 64M "$tmp/qsd.img"
	qp=0 qf=0 restarts=0 qn=0
	mapfile -t cases < <("${CHECK[@]}" --list)
	qsd_start || echo "# qsd: does not start"
	for c in "${cases[@]}"; do
		if [ $((SECONDS - START)) -ge $BUDGET ]; then
			echo "# qsd: out of time budget, $((${#cases[@]} - qn)) cases not run"
			break
		fi
		qn=$((qn + 1))
		line=$(timeout 30 "${CHECK[@]}" --timeout 500 --case "$c" "$tmp/qsd.sock" 2>&1 |
			grep -E '^(not )?ok ' | head -1)
		[ -n "$line" ] || line="not ok 1 - $c: checker printed nothing (timed out)"
		line=$(sed -E "s/^(not ok|ok) [0-9]+ /\1 $qn /" <<<"$line")
		echo "# qsd: $line"
		case $line in
		ok*) qp=$((qp + 1)) ;;
		*)
			qf=$((qf + 1))
			kill -0 "$qsd_pid" 2>/dev/null || echo "# qsd:   (qemu-storage-daemon exited)"
			qsd_start
			restarts=$((restarts + 1))
			;;
		esac
	done
	echo "# qsd: $qp passed, $qf failed ($restarts restarts of qemu-storage-daemon)"
else
	echo "# qsd: qemu-storage-daemon not installed, report skipped"
fi
exit $rc
