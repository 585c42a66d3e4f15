#!/bin/bash
# End-to-end test: a Linux guest in QEMU drives vhost-user-blk back-ends.
#
#   tests/e2e/test-guest-blk.sh BUILD_DIR
#
# The whole guest session runs twice, once per VMM: the system's QEMU
# (Debian bookworm: 7.2) and QEMU 10.0 from bookworm-backports, unpacked
# into tests/e2e/cache/qemu10 by tests/e2e/peers/fetch-qemu10.  The second
# run's test names end in " (qemu 10.0)"; when QEMU 10.0 cannot be fetched
# they are SKIP lines with the reason.  The modern front-end sends messages
# 7.2 never does (RESET_DEVICE, GET_STATUS/SET_STATUS, GET_MAX_MEM_SLOTS and
# ADD_MEM_REG under CONFIGURE_MEM_SLOTS).  When the main vhu-blk instance
# offers VIRTIO_F_RING_PACKED (`vhu probe --json`), one run (QEMU 10.0 when
# it is there) gives its disk packed=on and checks that the guest
# negotiated the packed ring; "# packed ring: on|off (reason)" says which.
#
# One guest boot exercises three disks: the main read-write disk (2 queues,
# serial, write-back cache, control socket), a disk with 4096-byte logical
# blocks and a read-only disk.  The guest prints RESULT lines on its serial
# console (tests/e2e/guest/blk-checks.sh); this script compares them with
# what the host expects, checks the images after the guest powers off and
# prints TAP.  Live resize: the guest prints "WAITING resizeN" and polls the
# disk size, the host answers with a "resize" call on the control socket
# (grow, shrink, grow), then grows the image file and sends SIGHUP.
#
# Environment: E2E_PEER=vhu (default) or qsd (qemu-storage-daemon as the
# back-end, for comparison); E2E_ACCEL=kvm|tcg skips the accelerator probe;
# E2E_KEEP=1 keeps the work directories; E2E_PACKED=on|off forces packed=on
# on the main disk (in every run); E2E_VMMS="system qemu10" (default)
# or one of them; E2E_QEMU10 names a QEMU 10 system emulator to use instead
# of the fetched one.
set -u

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
# Two online vCPUs so that the second hardware queue sees I/O.
E2E_SMP=${E2E_SMP:-2}
. "$HERE/guest/lib.sh"

PEER=${E2E_PEER:-vhu}
VHU_BLK=$BUILD/tools/vhu-blk
QSD=${E2E_QSD:-qemu-storage-daemon}
MiB=$((1 << 20))
SIZE0=$((64 * MiB))
# resize1..3 through the control socket, resize4 by growing the file and SIGHUP.
RESIZES=($((96 * MiB)) $((48 * MiB)) $((128 * MiB)) $((160 * MiB)))
BOOT_TIMEOUT=90
STEP_TIMEOUT=120
# Hard ceiling for everything the guest session waits on.
SESSION_LIMIT=${E2E_SESSION_LIMIT:-420}

. "$HERE/lib.sh"

# ---- driver: one child run of this script per VMM ---------------------------
# The child (E2E_VMM_CHILD=1) is the guest session proper; the driver
# renumbers its TAP lines into one plan and suffixes the second run's names.
if [ -z "${E2E_VMM_CHILD:-}" ]; then
	N=0 FAILED=0
	emit() { # emit SUFFIX < child output
		local line sfx=$1 name st
		while IFS= read -r line; do
			case $line in
			"1..0 # SKIP"*)
				N=$((N + 1))
				echo "ok $N - guest checks$sfx # SKIP ${line#1..0 # SKIP }" ;;
			1..*) ;;
			"ok "*|"not ok "*)
				st=ok
				[ "${line#not ok}" != "$line" ] && st="not ok" && FAILED=1
				name=${line#"$st" }
				name=${name#* - }
				N=$((N + 1))
				case $name in
				*" # SKIP"*) echo "$st $N - ${name%% # SKIP*}$sfx # SKIP ${name#* # SKIP }" ;;
				*) echo "$st $N - $name$sfx" ;;
				esac ;;
			"Bail out!"*)
				N=$((N + 1)); FAILED=1
				echo "not ok $N - guest session$sfx: ${line#Bail out! }" ;;
			*) echo "$line" ;;
			esac
		done
	}
	VMMS=${E2E_VMMS:-system qemu10}
	Q10=''
	case " $VMMS " in *" qemu10 "*) e2e_qemu10 ;; esac
	# packed=on goes to one run only: QEMU 10.0 when it is there.
	PACKED_RUN=system
	[ -n "$Q10" ] && PACKED_RUN=qemu10
	# One accelerator probe for both runs (the system QEMU boots it).
	if [ -z "${E2E_ACCEL:-}" ] && e2e_kernel >/dev/null; then
		pw=$(mktemp -d /tmp/vhu-e2e-probe.XXXXXX)
		e2e_probe_accel "$pw"
		rm -rf "$pw"
		export E2E_ACCEL
	fi
	for vmm in $VMMS; do
		t0=$SECONDS
		case $vmm in
		system)
			emit "" < <(E2E_VMM_CHILD=1 E2E_TRY_PACKED=$([ $PACKED_RUN = system ] && echo 1) \
				bash "$0" "$BUILD" 2>&1) ;;
		qemu10)
			if [ -z "$Q10" ]; then
				N=$((N + 1))
				echo "ok $N - guest checks (qemu 10.0) # SKIP QEMU 10.0 cannot be fetched: $Q10_WHY"
				continue
			fi
			emit " (qemu 10.0)" < <(E2E_VMM_CHILD=1 E2E_QEMU=$Q10 E2E_QEMU_DATA=$Q10_DATA \
				E2E_TRY_PACKED=$([ $PACKED_RUN = qemu10 ] && echo 1) \
				bash "$0" "$BUILD" 2>&1) ;;
		*)
			echo "Bail out! unknown VMM '$vmm' in E2E_VMMS"
			exit 1 ;;
		esac
		echo "# $vmm run: $((SECONDS - t0)) s"
	done
	echo "1..$N"
	[ "$FAILED" -eq 0 ]
	exit $?
fi

command -v "$E2E_QEMU" >/dev/null || skip_all "$E2E_QEMU not installed"
"$E2E_QEMU" -device vhost-user-blk-pci,help >/dev/null 2>&1 ||
	skip_all "$E2E_QEMU lacks vhost-user-blk-pci"
command -v python3 >/dev/null || skip_all "python3 not installed"
e2e_guest_kernel
e2e_guest_work vhu-e2e
WORK=$E2E_WORK

# ---- images -------------------------------------------------------------
MAIN=$WORK/main.img
IMG4K=$WORK/bs4k.img
RO=$WORK/ro.img
truncate -s $SIZE0 "$MAIN"
truncate -s $((16 * MiB)) "$IMG4K"
truncate -s $((8 * MiB)) "$RO"
yes vhu-host-pattern | head -c 4096 | dd of="$MAIN" bs=4096 seek=256 conv=notrunc status=none
# Non-zero data where the guest discards (4 MiB) and writes zeroes (6 MiB).
yes vhu-fill | head -c $MiB | dd of="$MAIN" bs=$MiB seek=4 conv=notrunc status=none
yes vhu-fill | head -c $MiB | dd of="$MAIN" bs=$MiB seek=6 conv=notrunc status=none
yes vhu-readonly | head -c $((8 * MiB)) | dd of="$RO" bs=$MiB conv=notrunc status=none
PATTERN_SUM=$(yes vhu-host-pattern | head -c 4096 | md5sum | cut -d' ' -f1)
GUEST_SUM=$(yes vhu-guest-write | head -c 65536 | md5sum | cut -d' ' -f1)
RO_SUM=$(md5sum <"$RO" | cut -d' ' -f1)

# ---- guest image ----------------------------------------------------------
EXTRA=()
if cc -static -O2 -o "$WORK/blkzero" "$HERE/guest/blkzero.c" 2>"$WORK/blkzero.err"; then
	EXTRA+=("$WORK/blkzero")
fi
e2e_guest_image "$WORK" "$HERE/guest/blk-checks.sh" "${EXTRA[@]}"
echo "# back-end: $PEER"
echo "# VMM: $("$E2E_QEMU" --version 2>/dev/null | head -n 1)"

# ---- back-ends -------------------------------------------------------------
CTRL=$WORK/main.ctrl
QMP=$WORK/main.qmp
start_peer() { # start_peer ROLE IMAGE SOCKET
	local role=$1 img=$2 sock=$3 args
	if [ "$PEER" = qsd ]; then
		local bd=driver=file,node-name=f0,filename=$img,discard=unmap
		local ex=type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$sock
		args=()
		case $role in
		main) ex+=,writable=on,num-queues=2
		      args+=(--chardev "socket,id=m0,path=$QMP,server=on,wait=off" --monitor chardev=m0) ;;
		bs4k) ex+=,writable=on,logical-block-size=4096 ;;
		ro) ex+=,writable=off ;;
		esac
		e2e_spawn "$QSD" --blockdev "$bd" --blockdev driver=raw,node-name=d0,file=f0,discard=unmap \
			--export "$ex" "${args[@]}" >"$WORK/$role.log" 2>&1
	else
		args=(--socket-path "$sock" --blk-file "$img")
		case $role in
		main) args+=(--serial vhu-e2e-main --num-queues 2 --cache writeback --control "$CTRL") ;;
		bs4k) args+=(--serial vhu-e2e-4k --blk-size 4096) ;;
		ro) args+=(--serial vhu-e2e-ro --read-only) ;;
		esac
		e2e_spawn "$VHU_BLK" "${args[@]}" >"$WORK/$role.log" 2>&1
	fi
	[ "$role" = main ] && MAIN_PID=$E2E_LAST_PID
	e2e_wait_path "$sock" 10
}

peer_resize() { # peer_resize BYTES rpc|sighup
	if [ "$PEER" = qsd ]; then
		# SIGHUP would stop qemu-storage-daemon: always resize through QMP.
		e2e_qmp "$QMP" block_resize "{\"node-name\": \"d0\", \"size\": $1}" >/dev/null
	elif [ "$2" = sighup ]; then
		truncate -s "$1" "$MAIN" && kill -HUP "$MAIN_PID"
	else
		e2e_rpc "$CTRL" resize "{\"size\": $1, \"shrink\": true}" >/dev/null
	fi
}

# Poll the back-end's wce until it equals $1 (true|false), at most 5 s.
# Prints the last value seen; "n/a" when the peer cannot report it.
peer_wce_is() {
	local want=$1 v i
	if [ "$PEER" = qsd ]; then echo n/a; return 2; fi
	for i in $(seq 50); do
		v=$(e2e_rpc "$CTRL" info --get wce 2>/dev/null)
		case "$v" in 1) v=true ;; 0) v=false ;; esac
		[ "$v" = "$want" ] && { echo "$v"; return 0; }
		sleep 0.1
	done
	echo "${v:-no-answer}"
	return 1
}

if [ "$PEER" != qsd ] && [ ! -x "$VHU_BLK" ]; then
	notok "back-ends start" "$VHU_BLK not built"
	echo "1..$N"
	exit 1
fi
peers_ok=0
start_peer main "$MAIN" "$WORK/main.sock" || peers_ok=1
start_peer bs4k "$IMG4K" "$WORK/bs4k.sock" || peers_ok=1
start_peer ro "$RO" "$WORK/ro.sock" || peers_ok=1
if [ $peers_ok != 0 ]; then
	notok "back-ends start" "$(tail -n 5 "$WORK"/*.log)"
	echo "1..$N"
	exit 1
fi

# ---- packed ring ------------------------------------------------------------
# packed=on only for the run the driver chose, and only when the main
# back-end offers VIRTIO_F_RING_PACKED (QEMU would silently mask it).
# E2E_PACKED=on|off forces the choice (by hand: on without the feature
# must fail the packed check, since QEMU then falls back to the split ring).
PACKED=off
if [ -n "${E2E_PACKED:-}" ]; then
	PACKED=$E2E_PACKED why="forced by E2E_PACKED"
elif [ "${E2E_TRY_PACKED:-}" != 1 ]; then
	why="packed=on is tried in the other VMM run"
elif ! pj=$(timeout 20 "$BUILD/tools/vhu" probe --json "$WORK/main.sock" 2>&1); then
	why="vhu probe --json failed: $(head -c 200 <<<"$pj")"
elif python3 -c 'import json, sys
sys.exit(0 if "RING_PACKED" in json.loads(sys.argv[1])["feature_names"] else 1)' "$pj" 2>/dev/null; then
	PACKED=on why="the main back-end offers RING_PACKED"
else
	why="the main back-end does not offer RING_PACKED"
fi
echo "# packed ring: $PACKED ($why)"

# ---- guest -------------------------------------------------------------------
LOG=$WORK/console.log
: >"$LOG"
# qemu-storage-daemon 7.2 changes the size without telling the front-end:
# do not let the guest wait long for resizes it will never see.
# shellcheck disable=SC2034 # read by e2e_qemu_base
[ "$PEER" = qsd ] && E2E_APPEND="vhu.resize_timeout=2"
e2e_qemu_base "$E2E_ACCEL" "$WORK/initrd.cpio" "$LOG"
slot=4
for role in main bs4k ro; do
	nq=1
	[ $role = main ] && nq=2
	dev=vhost-user-blk-pci,chardev=c$slot,num-queues=$nq,addr=0x$slot
	[ $role = main ] && [ $PACKED = on ] && dev+=,packed=on
	E2E_QEMU_ARGS+=(-chardev "socket,id=c$slot,path=$WORK/$role.sock" -device "$dev")
	slot=$((slot + 1))
done
# A QMP monitor for the VM's stop/cont (the write-cache choice must survive
# the device restart it causes).
VMQMP=$WORK/vm.qmp
E2E_QEMU_ARGS+=(-chardev "socket,id=vmqmp,path=$VMQMP,server=on,wait=off"
		-mon chardev=vmqmp,mode=control)
e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$WORK/qemu.err"
QPID=$E2E_LAST_PID
DEADLINE=$((SECONDS + SESSION_LIMIT))
GUEST_STUCK=0
# gwait REGEX TIMEOUT: wait for a console line, within the session ceiling;
# after one timeout the guest is considered stuck and later waits return at once.
gwait() {
	local t=$2 left=$((DEADLINE - SECONDS))
	[ $GUEST_STUCK = 1 ] && return 1
	[ $t -gt $left ] && t=$left
	[ $t -lt 1 ] && t=1
	e2e_wait_log "$LOG" "$1" "$t" "$QPID" && return 0
	GUEST_STUCK=1
	return 1
}

if gwait VHU-GUEST-BOOTED $BOOT_TIMEOUT; then
	ok "guest boots ($E2E_ACCEL)"
else
	notok "guest boots ($E2E_ACCEL)" "$(tail -n 5 "$WORK/qemu.err" "$LOG" | tr '\r' ' ')"
fi

# Host side of the resize / write-cache dialogue.
WCE_WT=skip WCE_WB=skip WCE_CONT=skip RESIZE_RC=()
for i in 0 1 2 3; do
	tag=resize$((i + 1))
	if ! gwait "WAITING $tag " $STEP_TIMEOUT; then
		RESIZE_RC[$i]="guest never reached $tag"
		continue
	fi
	case $i in
	0) WCE_WT=$(peer_wce_is false)
	   # QMP stop/cont: QEMU stops the device and starts it again (its
	   # SET_FEATURES included); the guest's write-through must stay.
	   if [ "$PEER" != qsd ]; then
		if e2e_qmp "$VMQMP" stop >/dev/null 2>"$WORK/qmp.err" &&
		   e2e_qmp "$VMQMP" cont >/dev/null 2>>"$WORK/qmp.err"; then
			WCE_CONT=$(peer_wce_is false)
		else
			WCE_CONT="qmp failed: $(head -c 200 "$WORK/qmp.err")"
		fi
	   fi ;;
	1) WCE_WB=$(peer_wce_is true) ;;
	esac
	how=rpc
	[ $i = 3 ] && how=sighup
	if peer_resize "${RESIZES[$i]}" $how 2>"$WORK/resize.err"; then
		RESIZE_RC[$i]=ok
	else
		RESIZE_RC[$i]="resize call failed: $(cat "$WORK/resize.err")"
	fi
done

gwait "VHU-GUEST-DONE" $STEP_TIMEOUT
exit_wait=30
[ $GUEST_STUCK = 1 ] && exit_wait=1
if ! e2e_wait_exit $QPID $exit_wait; then
	echo "# guest did not power off; killing QEMU"
	kill -KILL $QPID 2>/dev/null
fi

STATS=n/a
if [ "$PEER" != qsd ]; then
	STATS=$(e2e_rpc "$CTRL" stats --get total 2>/dev/null || echo no-answer)
	QSTATS=$(e2e_rpc "$CTRL" stats --get queues 2>/dev/null || echo no-answer)
fi
e2e_cleanup

# resize_seen I NAME: resize I (0-based; the guest reports resize<I+1>)
# reached the guest as the new size in sectors.
resize_seen() {
	local want=$((RESIZES[$1] / 512)) got
	got=$(res "resize$(($1 + 1))")
	resize_check "$2" "$([ "${RESIZE_RC[$1]:-}" = ok ] && [ "$got" = "ok $want" ]; echo $?)" \
		"host: ${RESIZE_RC[$1]:-}; guest: $got; want $want"
}

resize_check() {
	if [ "$PEER" = qsd ]; then
		skip "$1" "qemu-storage-daemon 7.2 does not notify the front-end of a resize"
	else
		check_rc "$@"
	fi
}

# ---- verdicts ------------------------------------------------------------------
# res NAME -> "status detail" from the last RESULT line for NAME.
res() { grep -ao "RESULT $1 [a-z]* .*" "$LOG" | tr -d '\r' | tail -n 1 | cut -d' ' -f3-; }
st() { res "$1" | cut -d' ' -f1; }
dt() { res "$1" | cut -d' ' -f2-; }
is_zero() { # is_zero FILE OFFSET_MIB LEN_MIB
	[ "$(dd if="$1" bs=$MiB skip="$2" count="$3" status=none | tr -d '\0' | wc -c)" = 0 ]
}

check_rc "three disks appear in the guest" "$([ "$(st devices)" = ok ]; echo $?)" "$(res devices)"
check_rc "disk size seen in the guest is the image size" \
	"$([ "$(dt size)" = $((SIZE0 / 512)) ]; echo $?)" "guest sectors: $(dt size), want $((SIZE0 / 512))"
check_rc "logical block size 512 by default" "$([ "$(dt lbs_main)" = 512 ]; echo $?)" "got '$(dt lbs_main)'"
check_rc "logical block size 4096 with --blk-size 4096" \
	"$([ "$(dt lbs_4k)" = 4096 ] && [ "$(dt size_4k)" = $((16 * MiB)) ]; echo $?)" \
	"lbs '$(dt lbs_4k)' size '$(dt size_4k)'"
if [ "$PEER" = qsd ]; then
	skip "serial number reaches the guest" "qemu-storage-daemon has no serial option"
else
	check_rc "serial number reaches the guest" "$([ "$(dt serial)" = vhu-e2e-main ]; echo $?)" "got '$(dt serial)'"
fi
# Guest-side virtio feature bits of the main disk: bit 34 is RING_PACKED.
echo "# guest features of the main disk: $(dt features)"
if [ $PACKED = on ]; then
	check_rc "the guest drives the main disk through the packed ring" \
		"$([ "$(dt features | cut -c35)" = 1 ]; echo $?)" "features '$(dt features)'"
fi
check_rc "num-queues=2 gives two hardware queues" "$([ "$(dt nr_queues)" = 2 ]; echo $?)" "got '$(dt nr_queues)'"
if [ "$PEER" = qsd ]; then
	skip "I/O from the second vCPU is served on the second queue" "qemu-storage-daemon has no per-queue stats"
elif [ "$(st queue1_io)" = skip ]; then
	skip "I/O from the second vCPU is served on the second queue" "guest has one online vCPU"
else
	check_rc "I/O from the second vCPU is served on the second queue" \
		"$([ "$(st queue1_io)" = ok ] && python3 -c 'import json,sys; q=json.loads(sys.argv[1]);
sys.exit(0 if len(q) == 2 and q[1]["requests"] >= 64 else 1)' "$QSTATS" 2>/dev/null; echo $?)" \
		"guest: $(res queue1_io); per-queue stats: $QSTATS"
fi
check_rc "host-written pattern reads back in the guest" "$([ "$(dt pattern)" = "$PATTERN_SUM" ]; echo $?)" \
	"md5 '$(dt pattern)', want $PATTERN_SUM"
host_sum=$(dd if="$MAIN" bs=4096 skip=512 count=16 status=none | md5sum | cut -d' ' -f1)
check_rc "guest write persists in the host image" \
	"$([ "$(st guest_write)" = ok ] && [ "$host_sum" = "$GUEST_SUM" ]; echo $?)" \
	"guest: $(res guest_write); host md5 $host_sum, want $GUEST_SUM"
check_rc "flush succeeds" "$([ "$(st flush)" = ok ]; echo $?)" "$(res flush)"
if [ "$PEER" = qsd ]; then
	skip "back-end statistics count the guest's I/O" "qemu-storage-daemon has no stats method"
else
	check_rc "back-end statistics count the guest's I/O" \
		"$(python3 -c 'import json,sys; t=json.loads(sys.argv[1]);
sys.exit(0 if t["requests"] > 0 and t["bytes_written"] >= 65536 and t["errors"] == 0 else 1)' "$STATS" 2>/dev/null; echo $?)" \
		"stats total: $STATS"
fi
check_rc "discard zeroes the host image range" \
	"$([ "$(st discard)" = ok ] && is_zero "$MAIN" 4 1; echo $?)" "guest: $(res discard)"
if [ "$(st write_zeroes)" = skip ]; then
	skip "write-zeroes" "static helper could not be built: $(head -c 200 "$WORK/blkzero.err")"
else
	wz=$(dt write_zeroes)
	check_rc "write-zeroes is advertised and zeroes the host image range" \
		"$([ "$(st write_zeroes)" = ok ] && [ "${wz#write_zeroes_max_bytes=}" -gt 0 ] 2>/dev/null &&
		   is_zero "$MAIN" 6 1; echo $?)" "guest: $(res write_zeroes)"
fi
check_rc "read-only disk refuses writes" \
	"$([ "$(st read_only)" = ok ] && [ "$(md5sum <"$RO" | cut -d' ' -f1)" = "$RO_SUM" ]; echo $?)" \
	"guest: $(res read_only)"
if [ "$PEER" = qsd ]; then
	check_rc "cache_type 'write through' in the guest" "$([ "$(dt cache_wt)" = write_through ]; echo $?)" \
		"initial $(dt cache_initial), after: $(dt cache_wt)"
else
	check_rc "cache_type 'write through' reaches the back-end (wce=0)" \
		"$([ "$(dt cache_wt)" = write_through ] && [ "$WCE_WT" = false ]; echo $?)" \
		"initial $(dt cache_initial), guest $(dt cache_wt), back-end wce $WCE_WT"
	check_rc "write-through survives a VM stop/cont (wce stays 0)" \
		"$([ "$WCE_CONT" = false ]; echo $?)" "back-end wce after cont: $WCE_CONT"
fi
resize_seen 0 "live resize grow is seen by the guest"
if [ "$PEER" = qsd ]; then
	check_rc "cache_type 'write back' in the guest" "$([ "$(dt cache_wb)" = write_back ]; echo $?)" "$(dt cache_wb)"
else
	check_rc "cache_type 'write back' reaches the back-end (wce=1)" \
		"$([ "$(dt cache_wb)" = write_back ] && [ "$WCE_WB" = true ]; echo $?)" \
		"guest $(dt cache_wb), back-end wce $WCE_WB"
fi
resize_seen 1 "live resize shrink is seen by the guest"
resize_seen 2 "live resize grow again is seen by the guest"
resize_seen 3 "SIGHUP after the image file grew is seen by the guest"
check_rc "image file follows the resizes" "$([ "$(stat -c %s "$MAIN")" = "${RESIZES[3]}" ]; echo $?)" \
	"size $(stat -c %s "$MAIN"), want ${RESIZES[3]}"
check_rc "guest reads the last sector after the resizes" "$([ "$(st resize_io)" = ok ]; echo $?)" "$(res resize_io)"

echo "1..$N"
if [ $FAILED != 0 ]; then
	echo "# console log tail:"
	grep -av '^RESULT' "$LOG" | tail -n 15 | tr -d '\r' | sed 's/^/#   /'
fi
[ "$FAILED" -eq 0 ]
