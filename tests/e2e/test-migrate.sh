#!/bin/bash
# End-to-end test: live migration of a running QEMU guest whose disk is
# served by vhu-blk, from one vhu-blk process to another on the same image.
#
#   tests/e2e/test-migrate.sh BUILD_DIR
#
# Per configuration (1 queue on QEMU 7.2; 2 queues on 7.2; 2 queues and
# packed=on on QEMU 10.0 when tests/e2e/peers/fetch-qemu10 can provide it):
#
#   vhu-blk A + QEMU S (guest RAM: memory-backend-memfd share=on, TCG or
#   KVM, two possible vCPUs).  The guest (tests/e2e/guest/migrate-guest.sh,
#   tests/e2e/guest/blkverify.c) writes a 16 MiB region over and over with
#   self-checking 4 KiB blocks (offset, generation, CRC-32C), O_DIRECT.
#   1. During the write passes: QMP migrate to a sink at 1 MiB/s, wait until
#      vhu-blk A reports dirty_log on, migrate_cancel: the guest goes on
#      running on S and A reports dirty_log off.
#   2. vhu-blk B + QEMU D (-incoming unix:...); migrate S -> D during the
#      write passes, poll query-migrate until "completed"; the host then
#      writes a marker into the image that ends the write loop; the guest
#      checks every block holds the last generation.
#   3. During the read-back passes (every read checked; the read buffer is
#      poisoned before each read): vhu-blk C + QEMU E, migrate D -> E.
#   The guest finishes on E with zero verify errors and no kernel I/O
#   errors.  A missing dirty-log bit for a buffer the device filled shows
#   as poison or another block's data in the read pass; one for the used
#   ring as a request that never completes (a kernel timeout, an I/O error).
#
# Environment: E2E_ACCEL=kvm|tcg skips the accelerator probe; E2E_KEEP=1
# keeps the work directory; E2E_MIGRATE_CONFIGS="1q 2q q10" (default) or a
# subset; E2E_QEMU10 names a QEMU 10 system emulator instead of the fetched
# one.
#
# Image locking (docs/vhu-blk.md, Locking): the vhu-blk processes open the
# image together with their locks on; the write lock passes from source to
# destination with the rings (checked with vhu ctl info after each
# migration), and a third vhu-blk opened while the source's guest runs
# gets no write access (its front-end, vhu bench, sees every write fail).
set -u

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
E2E_MEM=${E2E_MEM:-256M}
. "$HERE/guest/lib.sh"

VHU_BLK=$BUILD/tools/vhu-blk
MiB=$((1 << 20))
MARK_WRITE=$((32 * MiB))
MARK_READ=$((36 * MiB))
STEP_TIMEOUT=120
MIGRATE_TIMEOUT=180

. "$HERE/lib.sh"

command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP qemu-system-x86_64 not installed"; exit 0; }
command -v python3 >/dev/null || { echo "1..0 # SKIP python3 not installed"; exit 0; }
e2e_guest_kernel
[ -x "$VHU_BLK" ] || { echo "Bail out! $VHU_BLK not built"; exit 1; }

e2e_guest_work vhu-e2e-mig
WORK=$E2E_WORK
e2e_guest_tool "$WORK" blkverify
e2e_guest_image "$WORK" "$HERE/guest/migrate-guest.sh" "$WORK/blkverify"

qmp() { e2e_qmp "$@" 2>>"$WORK/qmp.err"; }
rpc_get() { e2e_rpc "$1" info --get "$2" 2>/dev/null | tr -d '"'; }
# jq-less JSON field: json_get JSON KEY
json_get() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print(json.dumps(v) if isinstance(v,(dict,list)) else v)' "$1" "$2" 2>/dev/null; }

# start_blk NAME: vhu-blk on the shared image; pid in BLK_PID[NAME]
declare -A BLK_PID
start_blk() {
	e2e_spawn "$VHU_BLK" --socket-path "$WORK/$1.sock" --blk-file "$IMG" \
		--num-queues "$NQ" --control "$WORK/$1.ctrl" >"$WORK/$1.log" 2>&1
	BLK_PID[$1]=$E2E_LAST_PID
	e2e_wait_path "$WORK/$1.sock" 10 && e2e_wait_path "$WORK/$1.ctrl" 10
}

# start_qemu NAME BLK [INCOMING]: QEMU with its disk on vhu-blk BLK, serial
# console in NAME.console, QMP on NAME.qmp; pid in QEMU_PID[NAME]
declare -A QEMU_PID
start_qemu() {
	local dev=vhost-user-blk-pci,chardev=c0,num-queues=$NQ,addr=0x4
	[ "$PACKED" = on ] && dev+=,packed=on
	: >"$WORK/$1.console"
	E2E_APPEND="vhu.workers=$WORKERS"
	e2e_qemu_base "$E2E_ACCEL" "$WORK/initrd.cpio" "$WORK/$1.console"
	E2E_QEMU_ARGS+=(-qmp "unix:$WORK/$1.qmp,server=on,wait=off"
		-chardev "socket,id=c0,path=$WORK/$2.sock" -device "$dev")
	[ -n "${3:-}" ] && E2E_QEMU_ARGS+=(-incoming "unix:$3")
	e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$WORK/$1.err"
	QEMU_PID[$1]=$E2E_LAST_PID
	e2e_wait_path "$WORK/$1.qmp" 20 || return 1
	# The incoming socket appears after the monitor's: migrating before
	# it exists fails at once.
	[ -z "${3:-}" ] || e2e_wait_path "$3" 20
}

# dest_running QMP: the destination may still load the last state when
# the source says "completed"; wait for it to run.  Prints the status.
dest_running() {
	local end=$((SECONDS + 30)) s=
	while [ $SECONDS -lt $end ]; do
		s=$(json_get "$(qmp "$1" query-status)" status)
		[ "$s" = running ] && break
		sleep 0.2
	done
	echo "${s:-none}"
}

# migrate_wait QMP: poll query-migrate until it leaves "setup"/"active";
# prints the final status.
migrate_wait() {
	local end=$((SECONDS + MIGRATE_TIMEOUT)) st=
	while [ $SECONDS -lt $end ]; do
		st=$(json_get "$(qmp "$1" query-migrate)" status)
		case $st in completed|failed|cancelled) break ;; esac
		sleep 0.2
	done
	echo "${st:-none}"
}

# poll_info CTRL KEY VALUE SECONDS: until vhu-blk's info KEY is VALUE
poll_info() {
	local end=$((SECONDS + $4)) v=
	while [ $SECONDS -lt $end ]; do
		v=$(rpc_get "$1" "$2")
		[ "$v" = "$3" ] && return 0
		sleep 0.1
	done
	echo "# $1 $2: '$v', want '$3'"
	return 1
}

# lock_moved FROM TO LABEL: after a migration, vhu-blk TO holds the write
# lock and FROM (its queues stopped) only the shared one
lock_moved() {
	local from to
	poll_info "$WORK/$2.ctrl" lock write 10 >/dev/null
	from=$(rpc_get "$WORK/$1.ctrl" lock) to=$(rpc_get "$WORK/$2.ctrl" lock)
	check_rc "after the migration vhu-blk $2 holds the write lock, $1 does not ($3)" \
		"$([ "$from" = shared ] && [ "$to" = write ]; echo $?)" \
		"vhu-blk $1: lock '$from', vhu-blk $2: lock '$to'"
}

# third_writer LABEL: vhu-blk X on the image A serves; vhu bench writes
# through it
third_writer() {
	local out st lk w e
	start_blk x || { notok "a third vhu-blk opens the image ($1)" "$(tail -n 3 "$WORK/x.log")"; return; }
	"$BUILD/tools/vhu" bench "$WORK/x.sock" --pattern write --count 64 \
		--iodepth 4 --hold 3 --json --quiet >"$WORK/x.bench" 2>/dev/null &
	local bench=$!
	poll_info "$WORK/x.ctrl" lock conflict 10 >/dev/null
	lk=$(rpc_get "$WORK/x.ctrl" lock)
	wait $bench
	out=$(cat "$WORK/x.bench")
	st=$(e2e_rpc "$WORK/x.ctrl" stats --get total 2>/dev/null)
	w=$(json_get "$out" writes) e=$(json_get "$out" errors)
	check_rc "a third vhu-blk opens the image but gets no write access ($1)" \
		"$([ "$lk" = conflict ] && [ "${w:-0}" -gt 0 ] && [ "$e" = "$w" ] &&
		   [ "$(json_get "$st" bytes_written)" = 0 ] &&
		   [ "$(rpc_get "$WORK/a.ctrl" lock)" = write ]; echo $?)" \
		"lock '$lk', bench writes '$w' errors '$e', stats $st; $(tail -n 2 "$WORK/x.log")"
	kill "${BLK_PID[x]}" 2>/dev/null
	e2e_wait_exit "${BLK_PID[x]}" 10
}

passes() { grep -ac "^PASS $2" "$WORK/$1.console"; }
mark() { printf 'VHU-GO' | dd of="$IMG" bs=1 seek="$1" conv=notrunc status=none; }
# gwait NAME REGEX: a console line within STEP_TIMEOUT while QEMU NAME runs
gwait() { e2e_wait_log "$WORK/$1.console" "$2" "$STEP_TIMEOUT" "${QEMU_PID[$1]}"; }

# start_pair BLK QEMU WHAT [INCOMING]: vhu-blk BLK and QEMU QEMU on it (see
# start_qemu); when either does not start, a "WHAT starts" failure and 1.
start_pair() {
	start_blk "$1" && start_qemu "$2" "$1" "${4:-}" && return 0
	notok "$3 starts ($L)" "$(tail -n 3 "$WORK/$1.log" "$WORK/$2.err")"
	return 1
}

# migrate_to FROM TO NTH PHASE: QEMU FROM migrates to QEMU TO (started with
# -incoming WORK/migNTH) at 32 MiB/s; checks that it completes and TO runs.
migrate_to() {
	local from=$WORK/$1.qmp st s
	qmp "$from" migrate-set-parameters \
		'{"max-bandwidth": 33554432, "downtime-limit": 2000}' >/dev/null
	qmp "$from" migrate "{\"uri\": \"unix:$WORK/mig$3\"}" >/dev/null
	st=$(migrate_wait "$from")
	s=$(dest_running "$WORK/$2.qmp")
	echo "# migration $3: $(json_get "$(qmp "$from" query-migrate)" ram | head -c 300)"
	check_rc "migration during the $4 passes completes ($L)" \
		"$([ "$st" = completed ] && [ "$s" = running ]; echo $?)" \
		"source: '$st' ($(json_get "$(qmp "$from" query-migrate)" error-desc)), destination: '$s'; $(tail -n 2 "$WORK/$1.err" "$WORK/$2.err")"
}

# run_config LABEL NQ PACKED: the whole scenario; TAP names end in (LABEL)
run_config() {
	local L=$1 st m1 m2 n0 n1 s lk
	NQ=$2 PACKED=$3 WORKERS=1 E2E_SMP=1,maxcpus=2
	[ "$NQ" -gt 1 ] && WORKERS=$NQ E2E_SMP=$NQ
	rm -f "$WORK"/*.sock "$WORK"/*.ctrl "$WORK"/*.qmp "$WORK"/mig*
	IMG=$WORK/disk.img
	rm -f "$IMG"
	truncate -s $((64 * MiB)) "$IMG"
	echo "# $L: $("$E2E_QEMU" --version | head -n 1), $NQ queue(s), packed=$PACKED"

	start_pair a s source || { e2e_cleanup; return; }
	if ! gwait s '^PHASE write'; then
		notok "guest boots and starts writing ($L)" "$(tail -n 5 "$WORK/s.err" "$WORK/s.console" | tr -d '\r')"
		e2e_cleanup; return
	fi
	ok "guest boots and starts writing ($L)"

	# 1. a cancelled migration
	qmp "$WORK/s.qmp" migrate-set-parameters '{"max-bandwidth": 1048576}' >/dev/null
	qmp "$WORK/s.qmp" migrate '{"uri": "exec:cat >/dev/null"}' >/dev/null
	poll_info "$WORK/a.ctrl" dirty_log true 20; m1=$?
	check_rc "vhu-blk logs dirty pages while QEMU migrates ($L)" $m1 \
		"query-migrate: $(qmp "$WORK/s.qmp" query-migrate)"
	qmp "$WORK/s.qmp" migrate_cancel >/dev/null
	st=$(migrate_wait "$WORK/s.qmp")
	poll_info "$WORK/a.ctrl" dirty_log false 20; m2=$?
	n0=$(passes s write)
	e2e_wait_log "$WORK/s.console" "^PASS write $((n0 + 2))\$" 30 "${QEMU_PID[s]}"
	n1=$(passes s write)
	s=$(json_get "$(qmp "$WORK/s.qmp" query-status)" status)
	lk=$(rpc_get "$WORK/a.ctrl" lock)
	check_rc "migrate_cancel: source keeps running, logging off, write lock kept ($L)" \
		"$([ "$st" = cancelled ] && [ $m2 = 0 ] && [ "$s" = running ] && [ "$n1" -gt "$n0" ] &&
		   [ "$lk" = write ]; echo $?)" \
		"migration '$st', dirty_log off: $m2, status '$s', write passes $n0 -> $n1, lock '$lk'"

	# A third vhu-blk opens the image while A's guest runs, but its
	# front-end's writes all fail and it writes nothing.
	third_writer "$L"

	# 2. migrate S -> D during the write passes
	start_pair b d destination "$WORK/mig1" || { e2e_cleanup; return; }
	n0=$(passes s write)
	migrate_to s d 1 write
	lock_moved a b "$L"
	gwait d '^PASS write'
	mark $MARK_WRITE
	qmp "$WORK/s.qmp" quit >/dev/null
	e2e_wait_exit "${QEMU_PID[s]}" 10
	if ! gwait d '^PHASE read'; then
		notok "guest finishes the write passes on the destination ($L)" \
			"$(tail -n 5 "$WORK/d.console" | tr -d '\r')"
		e2e_cleanup; return
	fi
	check_rc "the write passes ran on both sides of the migration ($L)" \
		"$([ "$(passes s write)" -gt 0 ] && [ "$(passes d write)" -gt 0 ]; echo $?)" \
		"source passes $(passes s write), destination passes $(passes d write)"

	# 3. migrate D -> E during the read-back passes
	start_pair c e "second destination" "$WORK/mig2" || { e2e_cleanup; return; }
	gwait d '^PASS verify'
	migrate_to d e 2 read-back
	lock_moved b c "$L"
	gwait e '^PASS verify'
	mark $MARK_READ
	qmp "$WORK/d.qmp" quit >/dev/null
	gwait e VHU-GUEST-DONE
	e2e_wait_exit "${QEMU_PID[e]}" 30 || kill -KILL "${QEMU_PID[e]}" 2>/dev/null
	local qs
	qs=$(e2e_rpc "$WORK/c.ctrl" stats --get queues 2>/dev/null)
	e2e_cleanup

	local all="$WORK/s.console $WORK/d.console $WORK/e.console"
	res() { cat $all | grep -ao "RESULT $1 [a-z]* .*" | tr -d '\r' | tail -n 1 | cut -d' ' -f3-; }
	check_rc "the read-back passes ran on both sides of the migration ($L)" \
		"$([ "$(passes d verify)" -gt 0 ] && [ "$(passes e verify)" -gt 0 ]; echo $?)" \
		"source passes $(passes d verify), destination passes $(passes e verify)"
	check_rc "every block written across the migration reads back ($L)" \
		"$([ "$(res write_verify | cut -d' ' -f1)" = ok ]; echo $?)" "guest: $(res write_verify)"
	check_rc "every read across the migration returns the right data ($L)" \
		"$([ "$(res read_verify | cut -d' ' -f1)" = ok ]; echo $?)" "guest: $(res read_verify)"
	check_rc "no kernel I/O errors in the guest ($L)" \
		"$([ "$(res kernel_io_errors)" = "ok 0" ]; echo $?)" "guest: $(res kernel_io_errors)"
	if [ "$NQ" -gt 1 ]; then
		check_rc "the guest uses $NQ queues and both see I/O after migrating ($L)" \
			"$([ "$(res nr_queues)" = "ok $NQ" ] && python3 -c 'import json,sys
q=json.loads(sys.argv[1]); sys.exit(0 if len(q) == 2 and all(x["requests"] > 0 for x in q) else 1)' "$qs"; echo $?)" \
			"guest: $(res nr_queues); per-queue stats on the last vhu-blk: $qs"
	fi
	if [ "$PACKED" = on ]; then
		check_rc "the guest drives the disk through the packed ring ($L)" \
			"$([ "$(res features | cut -d' ' -f2 | cut -c35)" = 1 ]; echo $?)" "guest: $(res features)"
	fi
	if [ $FAILED != 0 ]; then
		echo "# console tails ($L):"
		tail -n 12 $all | tr -d '\r' | sed 's/^/#   /'
	fi
}

# guest_oops: a guest kernel oops on any side (the first lines), or nothing.
guest_oops() {
	grep -ah -m 3 -E 'BUG: kernel|Oops:|general protection fault' \
		"$WORK"/s.console "$WORK"/d.console "$WORK"/e.console 2>/dev/null | tr -d '\r'
}

# run_checked LABEL NQ PACKED: run_config, its TAP lines held back.  QEMU
# 7.2's TCG sometimes restores a vCPU of an SMP guest wrongly after an
# incoming migration: the destination's kernel oopses in its timer tick
# (profile_tick, a NULL per-CPU pointer) and that vCPU's worker dies, which
# no device can cause.  A failed configuration whose guest oopsed runs once
# more, and says so; a second oops fails as any failure does.
run_checked() {
	local n0=$N f0=$FAILED out=$WORK/tap.out oops
	rm -f "$WORK"/s.console "$WORK"/d.console "$WORK"/e.console
	{ run_config "$@"; } >"$out" 2>&1
	oops=$(guest_oops)
	if [ "$FAILED" -gt "$f0" ] && [ -n "$oops" ]; then
		echo "# $1: the guest kernel oopsed (the emulator's vCPU state after the"
		echo "# migration); this configuration runs again. First try:"
		sed 's/^/#   /' "$out"
		echo "$oops" | sed 's/^/#   oops: /'
		N=$n0 FAILED=$f0
		rm -f "$WORK"/s.console "$WORK"/d.console "$WORK"/e.console
		{ run_config "$@"; } >"$out" 2>&1
	fi
	cat "$out"
}

CONFIGS=${E2E_MIGRATE_CONFIGS:-1q 2q q10}
for c in $CONFIGS; do
	t0=$SECONDS
	case $c in
	1q) E2E_QEMU=qemu-system-x86_64 E2E_QEMU_DATA= run_checked "1 queue" 1 off ;;
	2q) E2E_QEMU=qemu-system-x86_64 E2E_QEMU_DATA= run_checked "2 queues" 2 off ;;
	q10)
		e2e_qemu10
		if [ -n "$Q10" ]; then
			E2E_QEMU=$Q10 E2E_QEMU_DATA=$Q10_DATA run_checked "qemu 10.0, 2 queues, packed" 2 on
		else
			skip "migration with QEMU 10.0 and packed=on" "QEMU 10.0 cannot be fetched: $Q10_WHY"
		fi ;;
	*) echo "Bail out! unknown configuration '$c'"; exit 1 ;;
	esac
	echo "# $c: $((SECONDS - t0)) s"
done
finish
