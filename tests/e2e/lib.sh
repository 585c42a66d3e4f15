# shellcheck shell=bash
# Helpers shared by tests/e2e/test-*.sh (sourced; bash): TAP output, a
# scratch directory cleaned up at exit, starting, waiting for and stopping
# a daemon.  The counts are N (tests so far)
# and FAILED (failures so far).

N=0
FAILED=0

ok() { N=$((N + 1)); echo "ok $N - $1"; }
# notok NAME [DIAGNOSTIC]
notok() {
	N=$((N + 1))
	FAILED=$((FAILED + 1))
	echo "not ok $N - $1"
	if [ -n "${2:-}" ]; then echo "#   $2"; fi
	return 0
}
skip() { N=$((N + 1)); echo "ok $N - $1 # SKIP $2"; }
# check NAME COMMAND...: ok when the command succeeds.  On a failure,
# e2e_diag runs when the script defines it (say, to show a log).
check() {
	local name=$1; shift
	if "$@"; then ok "$name"; return 0; fi
	notok "$name"
	if declare -F e2e_diag >/dev/null; then e2e_diag; fi
	return 0
}
# check_rc NAME STATUS [DIAGNOSTIC]: ok when STATUS is 0.
check_rc() { if [ "$2" = 0 ]; then ok "$1"; else notok "$1" "${3:-}"; fi; }
# The whole script skipped, with the reason.
skip_all() { echo "1..0 # SKIP $1"; exit 0; }
# The plan, last; exit status 0 only when nothing failed.
finish() { echo "1..$N"; [ "$FAILED" -eq 0 ]; exit $?; }

# e2e_probe VHU SOCKET SUFFIX: `vhu probe` of a 64 MiB vhost-user-blk
# export: it succeeds and decodes the capacity (test names end in SUFFIX).
# The output is left in PROBE_OUT.
e2e_probe() {
	local rc
	PROBE_OUT=$(timeout 20 "$1" probe "$2" 2>&1); rc=$?
	check "probe succeeds$3" [ $rc -eq 0 ]
	check "probe decodes the capacity$3" \
		grep -q "capacity: 131072 sectors (67108864 bytes" <<<"$PROBE_OUT"
}

# e2e_tmpdir PREFIX: a fresh directory, in /dev/shm when it is writable.
e2e_tmpdir() {
	local base=/tmp
	[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
	mktemp -d "$base/$1.XXXXXX"
}

# e2e_stop PID: TERM, up to 5 s for it to go, then KILL, and reap it
# when it is our child.  An empty PID is nothing to stop.
e2e_stop() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# e2e_bins DIR NAME...: BUILD becomes DIR's absolute path (default build),
# BIN its vhu-blk and VHU its vhu; the whole script is skipped unless every
# DIR/NAME is an executable.
e2e_bins() {
	local dir=${1:-build} b
	shift
	BUILD=$(cd "$dir" 2>/dev/null && pwd) || skip_all "no build directory $dir"
	for b in "$@"; do
		[ -x "$BUILD/$b" ] || skip_all "$BUILD/$b not built"
	done
	BIN=$BUILD/tools/vhu-blk
	VHU=$BUILD/tools/vhu
}

# e2e_setup PREFIX: a scratch directory T and the list PIDS of background
# processes, both cleaned up at exit (after e2e_cleanup_extra, when the
# script defines it).
e2e_setup() {
	T=$(e2e_tmpdir "$1")
	PIDS=()
	trap e2e_setup_cleanup EXIT
}
# Not named e2e_cleanup: tests/e2e/guest/lib.sh has one of its own, and a
# script that sources both must keep that one.
e2e_setup_cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	if declare -F e2e_cleanup_extra >/dev/null; then e2e_cleanup_extra; fi
	rm -rf "$T"
}

# e2e_daemon LOG ARGS...: vhu-blk ($BIN) with ARGS in the background, its
# stderr in LOG; D is its pid (also in PIDS).
e2e_daemon() {
	local log=$1
	shift
	"$BIN" "$@" 2>"$log" &
	D=$!
	PIDS+=("$D")
}

# wait_for PATH: until a socket exists (5 s).
wait_for() {
	for _ in $(seq 50); do [ -S "$1" ] && return 0; sleep 0.1; done
	return 1
}
# wait_exit PID [TENTHS]: its exit status, or 124 after TENTHS/10 s (5 s).
wait_exit() {
	for _ in $(seq "${2:-50}"); do
		if ! kill -0 "$1" 2>/dev/null; then wait "$1"; return $?; fi
		sleep 0.1
	done
	return 124
}
