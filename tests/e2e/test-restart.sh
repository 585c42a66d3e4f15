#!/bin/bash
# SPDX-License-Identifier: MIT
# End-to-end test: vhu-blk killed and restarted under a live guest's
# write+verify load; the guest must see a pause, never an error or a lost
# write.
#
#   tests/e2e/test-restart.sh BUILD_DIR
#
# Per configuration one guest boot (TCG or KVM, two vCPUs) with one
# vhost-user-blk disk whose chardev reconnects (QEMU 7.2: reconnect=1;
# QEMU 9.2 and later: reconnect-ms=1000).  vhu-blk serves the image
# through slowfs (tests/e2e/peers/slowfs.c, FUSE: every request held
# 30 ms, or held until released), so it always has requests in flight.
# The guest (tests/e2e/guest/restart-guest.sh) writes and verifies the
# whole disk twice with blkload (per-block generation, block number and
# crc32: lost, stale and torn writes are told apart).  Meanwhile the host
# stops vhu-blk and starts a new one on the same socket and image:
#   HELD  write pass 1: the storage holds every request for 1 s, kill -9;
#         the new vhu-blk must resubmit what the old one had taken;
#   KILL  verify pass 1: kill -9 at a random moment;
#   TERM  write pass 2: SIGTERM; vhu-blk completes what it took and exits
#         0 within its 10 s grace period, the new one resubmits nothing;
#   HANG  verify pass 2 (1-queue configurations): the storage stops
#         answering, SIGTERM; vhu-blk gives up after 10 s and exits 0, the
#         storage answers again, the new one resubmits what was stuck.
# QEMU reconnects each time.  Checks: the guest's I/O resumes after every
# restart, every pass ends with zero errors, the guest kernel logs no I/O
# error, a whole-disk read in the guest equals the host image, the image
# holds generation 2 everywhere, and QEMU logs no vring error.  Without
# FUSE (libfuse3-dev, /dev/fuse) the image is served directly and HELD,
# HANG and the resubmission checks are SKIP lines.
#
# Configurations (E2E_RESTART_CONFIGS, default "7.2:split:1 10.0:packed:1
# 7.2:split:2 10.0:packed:2"): VMM (7.2 = the installed QEMU, 10.0 =
# tests/e2e/peers/fetch-qemu10), ring layout, number of queues.  Test names
# end in " (qemu V, LAYOUT, N queues)".  A 10.0 configuration is a SKIP
# line when QEMU 10.0 cannot be fetched.  E2E_RESTART_MIB sets the disk
# size (default 16; a pass must outlast the host's reaction to its first
# PROGRESS lines), E2E_RESTART_SLOW_MS the hold (0: no slowfs),
# E2E_RESTART_PLAN the events (e.g. "write_1:20:KILL verify_1:50:TERM").
# E2E_KEEP=1 keeps the work directories (console.log, daemon logs
# numbered per start, qemu.err).
set -u

BUILD=${1:-build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "1..0 # SKIP no build directory"; exit 0; }
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/guest/blkload.sh"

CONFIGS=${E2E_RESTART_CONFIGS:-7.2:split:1 10.0:packed:1 7.2:split:2 10.0:packed:2}
MIB=${E2E_RESTART_MIB:-16}
SESSION_LIMIT=${E2E_SESSION_LIMIT:-420}
# The events: phase (as blkload prints it), percent done, what.
PLAN1="write_1:20:HELD verify_1:20:KILL write_2:20:TERM verify_2:20:HANG"
PLAN2="write_1:20:HELD verify_1:20:KILL write_2:20:TERM"
# Milliseconds slowfs holds each request (0: serve the image directly).
SLOW_MS=${E2E_RESTART_SLOW_MS:-30}

N=0
FAILED=0
SFX=
ok()   { N=$((N + 1)); echo "ok $N - $1$SFX"; }
nok()  { N=$((N + 1)); echo "not ok $N - $1$SFX"; FAILED=1; [ -n "${2:-}" ] && echo "#   $2"; }
skip() { N=$((N + 1)); echo "ok $N - $1$SFX # SKIP $2"; }
check() { if [ "$2" = 0 ]; then ok "$1"; else nok "$1" "${3:-}"; fi; }

[ -x "$VHU_BLK" ] || { echo "1..0 # SKIP $VHU_BLK not built"; exit 0; }
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not installed"; exit 0; }
e2e_guest_kernel

e2e_guest_work vhu-e2e-restart
TOP=$E2E_WORK
# Before the processes stop: storage held by slowfs answers again and its
# mounts go (lazily), so nothing waits on a request that never completes.
e2e_guest_release() {
	rm -f "$TOP"/*/disk.img.hang
	umount -l "$TOP"/*/mnt 2>/dev/null
}
e2e_blkload_image "$TOP"
# Slow storage (tests/e2e/peers/slowfs.c, FUSE): without it a killed
# vhu-blk has seldom anything in flight, and nothing can hang.
SLOW_BIN='' SLOW_WHY=''
if [ "$SLOW_MS" = 0 ]; then
	SLOW_WHY="E2E_RESTART_SLOW_MS=0"
elif ! pkg-config --exists fuse3 2>/dev/null; then
	SLOW_WHY="libfuse3-dev not installed"
elif [ ! -c /dev/fuse ]; then
	SLOW_WHY="no /dev/fuse"
elif ! cc -O2 -o "$TOP/slowfs" "$HERE/peers/slowfs.c" \
	$(pkg-config --cflags --libs fuse3) 2>"$TOP/slowfs.err"; then
	SLOW_WHY="slowfs does not build: $(head -c 200 "$TOP/slowfs.err")"
else
	SLOW_BIN=$TOP/slowfs
fi

# ---- one configuration ------------------------------------------------------
# Globals of the running session: WORK, SOCK, IMG, LOG, QPID, DPID, STARTS.
start_daemon() {
	STARTS=$((STARTS + 1))
	VHU_LOG=${E2E_VHU_LOG:-info} e2e_spawn "$VHU_BLK" --socket-path "$SOCK" --blk-file "$SERVE" \
		--num-queues "$NQ" >"$WORK/daemon.$STARTS.log" 2>&1
	DPID=$E2E_LAST_PID
	e2e_wait_path "$SOCK" 10 && sleep 0.2 && kill -0 "$DPID" 2>/dev/null
}

# gwait REGEX TIMEOUT: a console line, within the session ceiling; after one
# timeout the guest counts as stuck and later waits fail at once.
gwait() {
	local t=$2 left=$((DEADLINE - SECONDS))
	[ "$STUCK" = 1 ] && return 1
	[ "$t" -gt "$left" ] && t=$left
	[ "$t" -lt 1 ] && t=1
	e2e_wait_log "$LOG" "$1" "$t" "$QPID" && return 0
	STUCK=1
	return 1
}

lines() { grep -a "$1" "$LOG" | tr -d '\r'; }

# Sum of the requests the daemon of start $1 resubmitted (all queues).
resubmitted() {
	grep -ao 'resubmitting [0-9]*' "$WORK/daemon.$1.log" | awk '{ s += $2 } END { print s + 0 }'
}

# Wait for the daemon DPID to exit, at most $1 s; sets RC (255: still there).
reap() {
	local i
	{
		for i in $(seq $(($1 * 10))); do
			kill -0 "$DPID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$DPID" 2>/dev/null; then
			RC=255
			return
		fi
		wait "$DPID"
		RC=$?
	} 2>/dev/null	# bash reports a killed job on stderr
}

# One signal and restart: kill_restart PHASE PERCENT KILL|TERM|HANG
# HANG: the storage stops answering (slowfs), then SIGTERM: vhu-blk must
# give up after its grace period and exit 0; the storage answers again
# and the next vhu-blk resubmits what was stuck.
kill_restart() {
	local phase=$1 pct=$2 how=$3 what t0 dt i before old n
	local pass="${phase% *} pass ${phase#* }"
	case $how in
	KILL) what="kill -9 during $pass" ;;
	HELD) what="kill -9 with requests held in the storage during $pass" ;;
	TERM) what="SIGTERM during $pass" ;;
	HANG) what="SIGTERM with the storage hung during $pass" ;;
	esac
	if { [ "$how" = HANG ] || [ "$how" = HELD ]; } && [ -z "$SLOW" ]; then
		skip "$what" "no slow storage: $SLOW_WHY"
		return
	fi
	if ! gwait "PROGRESS $phase $pct\b" $STEP_TIMEOUT; then
		nok "$what" "the guest never reached $pct % of $phase: $(tail -n 3 "$LOG" | tr -d '\r')"
		return
	fi
	if lines "PASS $phase " | grep -q .; then
		nok "$what" "the pass ended before the signal landed (make E2E_RESTART_MIB larger)"
		return
	fi
	# Guest lines so far: any later one shows its I/O resumed.
	before=$(grep -ac "PROGRESS\|PASS\|RESULT" "$LOG")
	old=$STARTS
	# HELD and HANG: every request the guest has out gets stuck in vhu-blk.
	if [ "$how" = HANG ] || [ "$how" = HELD ]; then
		touch "$IMG.hang"
		sleep 1
	fi
	t0=$(date +%s%N)
	case $how in
	KILL) kill -KILL "$DPID"; reap 15 ;;
	HELD)
		# The old process exits once the storage answers its
		# requests (FUSE waits for them), before the next one starts.
		{ kill -KILL "$DPID"; sleep 0.2; } 2>/dev/null
		rm -f "$IMG.hang"
		reap 15 ;;
	TERM) kill -TERM "$DPID"; reap 15 ;;
	HANG)
		kill -TERM "$DPID"
		e2e_wait_log "$WORK/daemon.$old.log" 'still in flight after the stop grace period' 20
		dt=$((($(date +%s%N) - t0) / 1000000))
		rm -f "$IMG.hang"
		reap 15
		check "$what: vhu-blk gives up after its 10 s grace period and exits 0" \
			"$([ "$RC" = 0 ] && [ $dt -ge 9500 ] && [ $dt -le 14000 ] &&
			   grep -q 'still in flight' "$WORK/daemon.$old.log"; echo $?)" \
			"exit status $RC, grace message after $dt ms; log: $(tail -n 2 "$WORK/daemon.$old.log" | tr '\n' ' ')"
		;;
	esac
	[ "$how" = HANG ] || dt=$((($(date +%s%N) - t0) / 1000000))
	if [ "$RC" = 255 ]; then
		nok "$what: the daemon exits" "still running 15 s after the signal"
		kill -KILL "$DPID" 2>/dev/null
		reap 5
	fi
	if [ "$how" = TERM ]; then
		check "$what: vhu-blk completes what it took and exits 0" \
			"$([ "$RC" = 0 ] && [ $dt -lt 10000 ] &&
			   ! grep -q 'still in flight' "$WORK/daemon.$old.log"; echo $?)" \
			"exit status $RC after $dt ms; log: $(tail -n 2 "$WORK/daemon.$old.log" | tr '\n' ' ')"
	fi
	sleep 0.5
	if ! start_daemon; then
		nok "$what: a new vhu-blk starts on the same socket" "$(tail -n 3 "$WORK/daemon.$STARTS.log")"
		return
	fi
	# I/O resumes: a later guest line than the ones seen before the signal.
	local resumed=1
	for i in $(seq $((STEP_TIMEOUT * 10))); do
		[ "$(grep -ac "PROGRESS\|PASS\|RESULT" "$LOG")" -gt "$before" ] && { resumed=0; break; }
		kill -0 "$QPID" 2>/dev/null || break
		[ $SECONDS -ge $DEADLINE ] && break
		sleep 0.1
	done
	check "$what, restarted: QEMU reconnects and the guest's I/O resumes" "$resumed" \
		"no guest progress after the restart; qemu: $(tail -n 2 "$WORK/qemu.err" | tr '\n' ' ')"
	[ $resumed = 0 ] || STUCK=1
	n=$(resubmitted "$STARTS")
	echo "# $what: down $dt ms; the new vhu-blk resubmitted $n request(s)"
	case $how in
	TERM)
		check "$what: the new vhu-blk has nothing to resubmit" "$([ "$n" = 0 ]; echo $?)" \
			"it resubmitted $n" ;;
	KILL) ;;	# a random moment: maybe nothing was in flight
	*)
		if [ -z "$SLOW" ]; then
			skip "$what: the new vhu-blk resubmits what was in flight" "no slow storage: $SLOW_WHY"
		else
			check "$what: the new vhu-blk resubmits what was in flight" "$([ "$n" -ge 1 ]; echo $?)" \
				"it resubmitted $n (the storage holds every request ${SLOW_MS} ms)"
		fi ;;
	esac
}

run_config() {
	local vmm=$1 layout=$2 nq=$3 qemu=$4 data=$5 ver reconnect dev p
	NQ=$nq STARTS=0 STUCK=0
	WORK=$TOP/$vmm-$layout-$nq
	mkdir -p "$WORK"
	SOCK=$WORK/blk.sock IMG=$WORK/disk.img LOG=$WORK/console.log
	truncate -s $((MIB << 20)) "$IMG"
	: >"$LOG"
	SERVE=$IMG SLOW=''
	if [ -n "$SLOW_BIN" ]; then
		mkdir -p "$WORK/mnt"
		e2e_spawn "$SLOW_BIN" "$IMG" "$WORK/mnt" "$SLOW_MS" >"$WORK/slowfs.log" 2>&1
		if e2e_wait_path "$WORK/mnt/disk.img" 10; then
			SERVE=$WORK/mnt/disk.img SLOW=1
		else
			SLOW_WHY="slowfs did not mount: $(tail -n 1 "$WORK/slowfs.log")"
		fi
	fi
	if [ -n "$SLOW" ]; then
		echo "# slow storage: slowfs, $SLOW_MS ms per request"
	else
		echo "# slow storage: off ($SLOW_WHY)"
	fi
	if ! start_daemon; then
		nok "vhu-blk starts" "$(tail -n 3 "$WORK/daemon.1.log")"
		return
	fi
	ver=$("$qemu" --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -n 1)
	set -- $ver
	if [ "${1:-0}" -gt 9 ] || { [ "${1:-0}" = 9 ] && [ "${2:-0}" -ge 2 ]; }; then
		reconnect=reconnect-ms=1000
	else
		reconnect=reconnect=1
	fi
	dev=vhost-user-blk-pci,chardev=c0,num-queues=$nq,addr=0x4
	[ "$layout" = packed ] && dev+=,packed=on
	E2E_QEMU=$qemu E2E_QEMU_DATA=$data e2e_qemu_base "$E2E_ACCEL" "$TOP/initrd.cpio" "$LOG"
	E2E_QEMU_ARGS+=(-chardev "socket,id=c0,path=$SOCK,$reconnect" -device "$dev")
	e2e_spawn "$qemu" "${E2E_QEMU_ARGS[@]}" 2>"$WORK/qemu.err"
	QPID=$E2E_LAST_PID
	DEADLINE=$((SECONDS + SESSION_LIMIT))
	if gwait '^READY ' $BOOT_TIMEOUT; then
		ok "guest boots and sees the disk ($E2E_ACCEL)"
	else
		nok "guest boots and sees the disk ($E2E_ACCEL)" \
			"$(tail -n 5 "$WORK/qemu.err" "$LOG" | tr -d '\r')"
	fi
	echo "# $(lines 'RESULT devices')"
	local feat
	feat=$(lines 'RESULT devices' | sed -n 's/.*features=\([01]*\).*/\1/p')
	if [ "$layout" = packed ]; then
		check "the guest drives the packed ring" "$([ "$(echo "$feat" | cut -c35)" = 1 ]; echo $?)" "features '$feat'"
	fi
	check "the guest sees $nq hardware queue(s)" \
		"$(lines 'RESULT devices' | grep -q "nr_queues=$nq "; echo $?)" "$(lines 'RESULT devices')"
	local plan=$PLAN1
	[ "$nq" = 1 ] || plan=$PLAN2
	read -r -a plan <<<"${E2E_RESTART_PLAN:-$plan}"
	for p in "${plan[@]}"; do
		IFS=: read -r phase pct sig <<<"${p/_/ }"
		kill_restart "$phase" "$pct" "$sig"
	done
	gwait 'WAITING done' $STEP_TIMEOUT
	if ! e2e_wait_exit "$QPID" 30; then
		echo "# guest did not power off; killing QEMU"
		kill -KILL "$QPID" 2>/dev/null
	fi
	e2e_cleanup

	e2e_blkload_results "$IMG" "the host image"
	local verr
	# "ring restore failed" is expected: GET_VRING_BASE to a dead back-end.
	verr=$(grep -a -E 'vring error' "$WORK/qemu.err" | head -n 2)
	check "QEMU logs no vring error" "$([ -z "$verr" ]; echo $?)" "$verr"
}

Q10=''
case " $CONFIGS " in *" 10.0:"*) e2e_qemu10 ;; esac

for cfg in $CONFIGS; do
	IFS=: read -r vmm layout nq <<<"$cfg"
	SFX=" (qemu $vmm, $layout, $nq queue$([ "$nq" = 1 ] || echo s))"
	t0=$SECONDS
	case $vmm in
	7.2)
		if ! command -v "$E2E_QEMU" >/dev/null; then
			skip "restart session" "$E2E_QEMU not installed"
			continue
		fi
		run_config "$vmm" "$layout" "$nq" "$(command -v "$E2E_QEMU")" "" ;;
	10.0)
		if [ -z "$Q10" ]; then
			skip "restart session" "QEMU 10.0 cannot be fetched: $Q10_WHY"
			continue
		fi
		run_config "$vmm" "$layout" "$nq" "$Q10" "$Q10_DATA" ;;
	*)
		nok "configuration '$cfg'" "unknown VMM '$vmm' in E2E_RESTART_CONFIGS"
		continue ;;
	esac
	echo "# $cfg: $((SECONDS - t0)) s"
done
echo "1..$N"
exit $FAILED
