#!/bin/bash
# SPDX-License-Identifier: MIT
# End-to-end test: a Linux guest in QEMU on a vhu-blk disk whose image is an
# NBD export (nbdkit's file plugin behind a delay filter, so requests are
# always in flight), and the NBD server killed and restarted twice under
# the guest's write+verify load.
#
#   tests/e2e/test-guest-nbd.sh BUILD_DIR
#
# The guest (tests/e2e/guest/restart-guest.sh) writes and verifies the whole
# disk twice with blkload (per-block generation, block number, crc32), then
# reads the whole disk.  During write pass 1 and verify pass 1 the host
# kills nbdkit (SIGKILL) and starts a new one on the same file 2 s later;
# vhu-blk's queues reconnect and send again what was on the lost
# connections.  Checks: the guest boots and sees the disk, its I/O resumes
# after each outage, every pass ends with zero errors, the guest kernel
# logs no I/O error, the whole-disk read equals the file behind nbdkit,
# which holds generation 2 in every block, and vhu-blk logged the losses
# and reconnections.  E2E_KEEP=1 keeps the work directory.
set -u

BUILD=${1:-build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "1..0 # SKIP no build directory"; exit 0; }
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/guest/blkload.sh"

MIB=${E2E_NBD_MIB:-16}
DELAY_MS=${E2E_NBD_DELAY_MS:-2}

N=0
FAILED=0
ok()   { N=$((N + 1)); echo "ok $N - $1"; }
nok()  { N=$((N + 1)); echo "not ok $N - $1"; FAILED=1; [ -n "${2:-}" ] && echo "#   $2"; }
check() { if [ "$2" = 0 ]; then ok "$1"; else nok "$1" "${3:-}"; fi; }

[ -x "$VHU_BLK" ] || { echo "1..0 # SKIP $VHU_BLK not built"; exit 0; }
"$VHU_BLK" --print-capabilities | grep -q '"nbd"' ||
	{ echo "1..0 # SKIP vhu-blk built without libnbd (meson -Dnbd=enabled)"; exit 0; }
command -v nbdkit >/dev/null || { echo "1..0 # SKIP nbdkit not installed (scripts/deps)"; exit 0; }
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not installed"; exit 0; }
if ! why=$(e2e_kernel); then
	echo "1..0 # SKIP guest kernel unavailable: $why"
	exit 0
fi
e2e_kernel >/dev/null

TOP=$(mktemp -d /tmp/vhu-e2e-nbd.XXXXXX)
finish() {
	e2e_cleanup
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		echo "# work directory kept: $TOP"
	else
		rm -rf "$TOP"
	fi
}
trap finish EXIT
trap 'exit 130' INT TERM

e2e_blkload_image "$TOP"

IMG=$TOP/disk.img NSOCK=$TOP/nbd.sock SOCK=$TOP/blk.sock LOG=$TOP/console.log
truncate -s $((MIB << 20)) "$IMG"
: >"$LOG"
STARTS=0
start_nbdkit() {
	STARTS=$((STARTS + 1))
	rm -f "$NSOCK"
	e2e_spawn nbdkit -f --unix "$NSOCK" --filter=delay file "$IMG" \
		delay-read=${DELAY_MS}ms delay-write=${DELAY_MS}ms >"$TOP/nbdkit.$STARTS.log" 2>&1
	NPID=$E2E_LAST_PID
	e2e_wait_path "$NSOCK" 10
}
lines() { grep -a "$1" "$LOG" | tr -d '\r'; }
gwait() { e2e_wait_log "$LOG" "$1" "$2" "$QPID"; }

start_nbdkit || { echo "Bail out! nbdkit did not start: $(tail -n 2 "$TOP/nbdkit.1.log")"; exit 1; }
# nbdkit's file plugin writes into the host's page cache, which outlives
# nbdkit killed with -9: a persistent cache, so the guest's fdatasync
# after the kill may succeed (without the option it fails once, EIO).
VHU_LOG=info e2e_spawn "$VHU_BLK" --socket-path "$SOCK" \
	--blk-file "nbd+unix:///?socket=$NSOCK" --num-queues 2 --reconnect-timeout 60 \
	--nbd-persistent-cache >"$TOP/vhu-blk.log" 2>&1
e2e_wait_path "$SOCK" 10 || { echo "Bail out! vhu-blk did not start: $(tail -n 3 "$TOP/vhu-blk.log")"; exit 1; }

e2e_qemu_base "$E2E_ACCEL" "$TOP/initrd.cpio" "$LOG"
E2E_QEMU_ARGS+=(-chardev "socket,id=c0,path=$SOCK"
	-device vhost-user-blk-pci,chardev=c0,num-queues=2,addr=0x4)
e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$TOP/qemu.err"
QPID=$E2E_LAST_PID
if gwait '^READY ' $BOOT_TIMEOUT; then
	ok "guest boots and sees the NBD-backed disk ($E2E_ACCEL)"
else
	nok "guest boots and sees the NBD-backed disk ($E2E_ACCEL)" \
		"$(tail -n 5 "$TOP/qemu.err" "$LOG" | tr -d '\r')"
fi
echo "# $(lines 'RESULT devices')"

# outage PHASE PERCENT: at PERCENT of PHASE, kill nbdkit, 2 s without a
# server, a new one; the guest's I/O must go on.
outage() {
	local phase=$1 pct=$2 before
	if ! gwait "PROGRESS $phase $pct\b" $STEP_TIMEOUT; then
		nok "server killed during $phase" "the guest never reached $pct % of $phase"
		return
	fi
	kill -KILL "$NPID"
	wait "$NPID" 2>/dev/null
	sleep 2
	before=$(grep -ac "PROGRESS\|PASS\|RESULT" "$LOG")
	if ! start_nbdkit; then
		nok "server killed during $phase: restarts" "$(tail -n 2 "$TOP/nbdkit.$STARTS.log")"
		return
	fi
	local i resumed=1
	for i in $(seq 300); do
		[ "$(grep -ac "PROGRESS\|PASS\|RESULT" "$LOG")" -gt "$before" ] && { resumed=0; break; }
		sleep 0.1
	done
	check "server killed and restarted during $phase: the guest's I/O resumes" $resumed \
		"$(tail -n 3 "$LOG" | tr -d '\r')"
}
outage "write 1" 20
outage "verify 1" 40

gwait 'WAITING done' $STEP_TIMEOUT
e2e_wait_exit "$QPID" 30 || { echo "# guest did not power off; killing QEMU"; kill -KILL "$QPID" 2>/dev/null; }

e2e_blkload_results "$IMG" "the file behind nbdkit"
check "vhu-blk logged the lost connections and the reconnections" \
	"$(grep -q 'lost' "$TOP/vhu-blk.log" && [ "$(grep -c 'reconnected' "$TOP/vhu-blk.log")" -ge 2 ]; echo $?)" \
	"$(tail -n 4 "$TOP/vhu-blk.log")"

echo "1..$N"
exit $FAILED
