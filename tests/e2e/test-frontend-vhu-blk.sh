#!/bin/bash
# SPDX-License-Identifier: MIT
# End to end: the vhu front-end against vhu-blk.  Probe, verified I/O on
# two queues, the control socket (vhu ctl), and a resize seen by a
# connected front-end through CONFIG_CHANGE_MSG.
# Usage: test-frontend-vhu-blk.sh BUILD_DIR    (TAP on stdout)
set -u
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
VHU=$BUILD/tools/vhu
BLK=$BUILD/tools/vhu-blk
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

if [ ! -x "$BLK" ]; then skip "vhu-blk" "not built in $BUILD"; finish; fi
if [ ! -x "$VHU" ]; then skip "vhu" "not built in $BUILD"; finish; fi

tmp=$(e2e_tmpdir vhu-e2e-blk)
blk_pid='' watch_pid=''
cleanup() {
	[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
	e2e_stop "$blk_pid"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

img=$tmp/disk.img sock=$tmp/vhost.sock ctl=$tmp/control.sock
truncate -s 64M "$img"
"$BLK" --blk-file "$img" --socket-path "$sock" --control "$ctl" --num-queues 2 \
	>"$tmp/vhu-blk.log" 2>&1 &
blk_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && [ -S "$ctl" ] && break; sleep 0.1; done
if [ ! -S "$sock" ] || [ ! -S "$ctl" ]; then
	notok "vhu-blk starts"; cat "$tmp/vhu-blk.log" >&2; finish
fi
ok "vhu-blk starts"

# --- probe ---------------------------------------------------------------
e2e_probe "$VHU" "$sock" ""
out=$PROBE_OUT
check "probe shows two queues" grep -q "^queues: 2$" <<<"$out"
check "probe names BACKEND_REQ" grep -q "^  BACKEND_REQ$" <<<"$out"
check "probe decodes num_queues" grep -q "num_queues: 2" <<<"$out"

# --- verified I/O on two queues -----------------------------------------
timeout 60 "$VHU" bench "$sock" --queues 2 --pattern write --verify --count 4096 --size 16M --quiet >"$tmp/w.out" 2>&1
check "bench writes a verify pattern on two queues" [ $? -eq 0 ]
timeout 60 "$VHU" bench "$sock" --queues 2 --pattern read --verify --count 4096 --size 16M --quiet >"$tmp/r.out" 2>&1
check "bench reads it back verified" [ $? -eq 0 ]
check "every read was checked" grep -q "verify: 4096 reads checked, 0 mismatches" "$tmp/r.out"
timeout 60 "$VHU" bench "$sock" --pattern read --verify --seed 99 --count 256 --size 16M --quiet >"$tmp/bad.out" 2>&1
check "a wrong seed is caught as mismatches" [ $? -ne 0 ]
timeout 60 "$VHU" bench "$sock" --pattern randrw --bs 64k --verify --time 1 --quiet --json \
	--pid "$blk_pid" >"$tmp/rw.json" 2>&1
rc=$?
check "mixed 64 KiB verified load, back-end CPU read" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert sys.argv[2] == "0", "exit status " + sys.argv[2]
assert j["errors"] == 0 and j["mismatches"] == 0 and j["requests"] > 0, j
assert j["backend_cpu_s"] >= 0, j
' "$tmp/rw.json" "$rc"

# --- control socket ------------------------------------------------------
out=$(timeout 20 "$VHU" ctl "$ctl" info --json 2>&1); rc=$?
check "ctl info --json answers JSON with the size" python3 -c '
import json, sys
assert sys.argv[2] == "0"
j = json.loads(sys.argv[1])
assert j["size"] == 64 << 20, j
' "$out" "$rc"
out=$(timeout 20 "$VHU" ctl "$ctl" stats 2>&1)
check "ctl stats counts the requests" grep -Eq "requests: [1-9]" <<<"$out"
out=$(timeout 20 "$VHU" ctl "$ctl" resize 12345 2>&1); rc=$?
check "ctl resize to a size that is not a sector multiple fails" [ $rc -ne 0 ]

# --- resize seen through CONFIG_CHANGE_MSG -------------------------------
timeout 30 "$VHU" watch "$sock" --timeout 10 >"$tmp/watch.out" 2>&1 &
watch_pid=$!
for _ in $(seq 50); do grep -q "waiting for config changes" "$tmp/watch.out" && break; sleep 0.1; done
check "watch connects and reads the capacity" grep -q "capacity 131072 sectors" "$tmp/watch.out"
out=$(timeout 20 "$VHU" ctl "$ctl" resize 128M 2>&1)
check "ctl resize 128M succeeds" [ $? -eq 0 ]
wait "$watch_pid"; wrc=$?; watch_pid=''
check "watch got CONFIG_CHANGE_MSG" [ $wrc -eq 0 ]
check "watch re-read the new capacity" grep -q "config change: capacity 262144 sectors (134217728 bytes)" "$tmp/watch.out"
out=$(timeout 20 "$VHU" probe "$sock" 2>&1)
check "a new connection sees the new capacity" grep -q "capacity: 262144 sectors" <<<"$out"
timeout 60 "$VHU" bench "$sock" --pattern read --verify --count 4096 --size 16M --quiet >/dev/null 2>&1
check "data written before the resize is intact" [ $? -eq 0 ]

# --- errors --------------------------------------------------------------
out=$(timeout 20 "$VHU" probe "$ctl" --timeout 1 2>&1); rc=$?
check "the control socket is not a vhost-user peer" \
	bash -c '[ "$1" -eq 1 ] && grep -q "not a vhost-user peer" <<<"$2"' _ "$rc" "$out"
out=$(timeout 20 "$VHU" ctl "$sock" info --timeout 1 2>&1); rc=$?
check "the vhost-user socket is not a control socket" [ $rc -ne 0 ]

finish
