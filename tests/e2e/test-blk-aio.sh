#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk without io_uring: under a seccomp filter that refuses
# io_uring_setup() (tests/unit/no-io-uring), --aio auto falls back to the
# blocking engine with a warning and serves verified I/O, --aio io_uring
# refuses to start with a clear message; --aio threads serves I/O too.
# Usage: tests/e2e/test-blk-aio.sh BUILD_DIR    (prints TAP)
set -u

. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
e2e_bins "${1:-build}" tools/vhu-blk tools/vhu tests/unit/no-io-uring
NOURING=$BUILD/tests/unit/no-io-uring
e2e_setup vhu-blk-aio
# on a failed check: the daemons' last words
e2e_diag() { sed 's/^/# /' "$T"/log* 2>/dev/null | tail -5; }

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
	D=$!; PIDS+=("$D")
	if wait_for "$T/s1"; then
		check "auto, cache $cache: warns about the fallback" \
			grep -q "io_uring is unavailable.*blocking" "$T/log1"
		check "auto, cache $cache: verified I/O without io_uring" bench "$T/s1" --queues 2
		check "auto, cache $cache: verified I/O, packed rings" bench "$T/s1" --packed
	else
		notok "auto, cache $cache: daemon listens"
	fi
	kill -TERM $D
	wait_exit $D 100; rc=$?
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
	notok "--aio threads: daemon listens"
fi
kill -TERM $D
wait_exit $D 100; rc=$?
check "--aio threads: SIGTERM exits 0" test $rc -eq 0

err=$("$BIN" --blk-file "$T/img" --socket-path "$T/s3" --aio fast 2>&1 >/dev/null)
rc=$?
check "--aio with a bad value: exits 1 with a message" \
	bash -c '[ $1 -eq 1 ] && echo "$2" | grep -q -- "--aio must be"' _ $rc "$err"

finish
