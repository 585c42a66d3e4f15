# shellcheck shell=bash
# Host side of the blkload guest sessions (guest/restart-guest.sh), sourced
# by tests/e2e/test-restart.sh and tests/e2e/test-guest-nbd.sh (it
# sources guest/lib.sh).  The caller defines check NAME STATUS [DIAGNOSTIC] and
# lines REGEX (the console log's matching lines).

# The sessions' guest (two vCPUs unless E2E_SMP says otherwise), daemon
# and time limits (seconds); sourced after BUILD is set.
E2E_SMP=${E2E_SMP:-2}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VHU_BLK=$BUILD/tools/vhu-blk
BOOT_TIMEOUT=120
STEP_TIMEOUT=180

# e2e_blkload_image TOP: blkload and the initramfs running
# restart-guest.sh into TOP (Bail out on failure); the accelerator probed.
e2e_blkload_image() {
	e2e_guest_tool "$1" blkload
	e2e_guest_image "$1" "$E2E_GUEST_DIR/restart-guest.sh" "$1/blkload"
}

# e2e_blkload_results IMG WHAT: after the guest powered off, its passes,
# kernel log and whole-disk read, and IMG (WHAT names it in the test
# names) holding generation 2 everywhere.
e2e_blkload_results() {
	local img=$1 what=$2 g m pass kerr want got
	for g in 1 2; do
		for m in write verify; do
			pass=$(lines "PASS $m $g " | tail -n 1)
			check "$m pass $g: every block, no error" \
				"$(echo "$pass" | grep -q ' ioerr=0 unwritten=0 stale=0 future=0 misplaced=0 torn=0$' &&
				   [ "$(lines "RESULT $m$g " | cut -d' ' -f3)" = ok ]; echo $?)" \
				"${pass:-no PASS line}; $(lines '^BAD' | head -n 3 | tr '\n' ' ')"
		done
	done
	kerr=$(lines 'RESULT kernel_errors' | cut -d' ' -f3-)
	check "no I/O error in the guest kernel log" "$([ "$kerr" = "ok 0" ]; echo $?)" \
		"'$kerr'; $(lines '^KLOG' | tr '\n' ' ')"
	want=$(md5sum <"$img" | cut -d' ' -f1)
	got=$(lines 'RESULT wholeread' | cut -d' ' -f3-)
	check "whole-disk read in the guest equals $what" \
		"$([ "${got%% *}" = ok ] && [ "$(echo "$got" | cut -d' ' -f2)" = "$want" ]; echo $?)" \
		"guest '$got', image md5 $want"
	check "$what holds generation 2 in every block" \
		"$(python3 "$E2E_GUEST_DIR/blkload-gen.py" "$img" 2; echo $?)" \
		"blocks not of generation 2 in $img"
}
