#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk without io_uring: under a seccomp filter that refuses
# io_uring_setup() (tests/unit/no-io-uring), --aio auto falls back to the
# blocking engine with a warning and serves verified I/O, --aio io_uring
# refuses to start with a clear message; --aio threads serves I/O too.
# Usage: tests/e2e/test-blk-aio.sh BUILD_DIR    (prints TAP)
set -u

BUILD=$(cd "${1:-build}" 2>/dev/null && pwd)
BIN=$BUILD/tools/vhu-blk
VHU=$BUILD/tools/vhu
NOURING=$BUILD/tests/unit/no-io-uring
if [ ! -x "$BIN" ] || [ ! -x "$VHU" ] || [ ! -x "$NOURING" ]; then
	echo "1..0 # SKIP not built in ${1:-build}"
	exit 0
fi

T=$(mktemp -d /tmp/vhu-blk-aio.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

N=0
FAILED=0
ok() { N=$((N + 1)); echo "ok $N - $1"; }
not_ok() { N=$((N + 1)); FAILED=$((FAILED + 1)); echo "not ok $N - $1"; }
check() { # check NAME COMMAND...
	local name=$1; shift
	if "$@"; then ok "$name"; else not_ok "$name"; sed 's/^/# /' "$T"/log* 2>/dev/null | tail -5; fi
}
wait_for() { # wait_for PATH: until a socket exists (5 s)
	for _ in $(seq 50); do [ -S "$1" ] && return 0; sleep 0.1; done
	return 1
}
wait_exit() { # wait_exit PID: exit status, or 124 after 10 s
	for _ in $(seq 100); do
		if ! kill -0 "$1" 2>/dev/null; then wait "$1"; return $?; fi
		sleep 0.1
	done
	return 124
}
# bench SOCKET NAME EXTRA...: write a pattern, read it back verified
bench() {
	local s=$1; shift
	timeout 60 "$VHU" bench "$s" --pattern randwrite --verify --count 2000 \
		--bs 8k --size 8M --quiet "$@" >"$T/bw" 2>&1 &&
	timeout 60 "$VHU" bench "$s" --pattern randread --verify --count 2000 \
		--bs 8k --size 8M --quiet "$@" >"$T/br" 2>&1
}

truncate -s 8M "$T/img"

# --- the seccomp filter is real: io_uring_setup is refused ---
err=$("$NOURING" "$BIN" --blk-file "$T/img" --socket-path "$T/s0" --aio io_uring 2>&1 >/dev/null)
rc=$?
check "--aio io_uring without io_uring: exits 1" test $rc -eq 1
check "--aio io_uring without io_uring: says why" \
	bash -c 'echo "$1" | grep -q "io_uring is unavailable" && echo "$1" | grep -q -- "--aio threads"' _ "$err"

# --- auto: falls back with a warning, and serves I/O ---
for cache in writeback none; do
	"$NOURING" "$BIN" --blk-file "$T/img" --socket-path "$T/s1" --cache $cache \
		--num-queues 2 2>"$T/log1" &
	D=$!; PIDS+=($D)
	if wait_for "$T/s1"; then
		check "auto, cache $cache: warns about the fallback" \
			grep -q "io_uring is unavailable.*blocking" "$T/log1"
		check "auto, cache $cache: verified I/O without io_uring" bench "$T/s1" --queues 2
		check "auto, cache $cache: verified I/O, packed rings" bench "$T/s1" --packed
	else
		not_ok "auto, cache $cache: daemon listens"
	fi
	kill -TERM $D
	wait_exit $D; rc=$?
	check "auto, cache $cache: SIGTERM exits 0" test $rc -eq 0
	rm -f "$T/s1"
done

# --- --aio threads, io_uring available or not ---
"$BIN" --blk-file "$T/img" --socket-path "$T/s2" --aio threads --threads 1 \
	--num-queues 2 2>"$T/log2" &
D=$!; PIDS+=($D)
if wait_for "$T/s2"; then
	check "--aio threads: verified I/O on a shared thread" bench "$T/s2" --queues 2
else
	not_ok "--aio threads: daemon listens"
fi
kill -TERM $D
wait_exit $D; rc=$?
check "--aio threads: SIGTERM exits 0" test $rc -eq 0

err=$("$BIN" --blk-file "$T/img" --socket-path "$T/s3" --aio fast 2>&1 >/dev/null)
rc=$?
check "--aio with a bad value: exits 1 with a message" \
	bash -c '[ $1 -eq 1 ] && echo "$2" | grep -q -- "--aio must be"' _ $rc "$err"

echo "1..$N"
[ $FAILED -eq 0 ]
