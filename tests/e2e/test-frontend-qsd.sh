#!/bin/bash
# SPDX-License-Identifier: MIT
# End to end: the vhu front-end against qemu-storage-daemon's
# vhost-user-blk export.  Probe, verified write/read with vhu bench, and
# what a QMP block_resize does to a connected front-end.
# Usage: test-frontend-qsd.sh BUILD_DIR    (TAP on stdout)
set -u
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
VHU=$BUILD/tools/vhu
QSD=${QSD:-/usr/bin/qemu-storage-daemon}

n=0 fails=0
ok()    { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); echo "not ok $n - $1"; fails=$((fails + 1)); }
skip()  { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else notok "$name"; fi; }
finish() { echo "1..$n"; [ "$fails" -eq 0 ]; exit $?; }

if [ ! -x "$QSD" ]; then skip "qemu-storage-daemon" "not installed"; finish; fi
if [ ! -x "$VHU" ]; then skip "vhu" "not built in $BUILD"; finish; fi

base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
tmp=$(mktemp -d "$base/vhu-e2e-qsd.XXXXXX")
qsd_pid='' watch_pid=''
cleanup() {
	[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
	if [ -n "$qsd_pid" ]; then
		kill "$qsd_pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$qsd_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$qsd_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

img=$tmp/disk.img sock=$tmp/vhost.sock qmp=$tmp/qmp.sock
truncate -s 64M "$img"
"$QSD" --blockdev driver=file,node-name=file0,filename="$img" \
	--blockdev driver=raw,node-name=disk0,file=file0 \
	--export type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path="$sock",writable=on \
	--chardev socket,id=qmp0,path="$qmp",server=on,wait=off \
	--monitor chardev=qmp0,mode=control >"$tmp/qsd.log" 2>&1 &
qsd_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && [ -S "$qmp" ] && break; sleep 0.1; done
if [ ! -S "$sock" ]; then notok "qemu-storage-daemon starts"; cat "$tmp/qsd.log" >&2; finish; fi
ok "qemu-storage-daemon starts"

# --- probe ---------------------------------------------------------------
out=$(timeout 20 "$VHU" probe "$sock" 2>&1); rc=$?
check "probe succeeds" [ $rc -eq 0 ]
check "probe decodes the capacity" grep -q "capacity: 131072 sectors (67108864 bytes" <<<"$out"
check "probe names protocol features" grep -q "^  CONFIG$" <<<"$out"
check "probe names virtio-blk features" grep -q "^  BLK_SEG_MAX$" <<<"$out"
json=$(timeout 20 "$VHU" probe "$sock" --json 2>&1)
check "probe --json is JSON with the capacity" python3 -c '
import json, sys
j = json.loads(sys.argv[1])
assert j["config"]["capacity_bytes"] == 64 << 20, j
assert "REPLY_ACK" in j["protocol_feature_names"], j
' "$json"

# --- verified I/O --------------------------------------------------------
timeout 60 "$VHU" bench "$sock" --pattern write --verify --count 2048 --size 8M --quiet >"$tmp/w.out" 2>&1
check "bench writes a verify pattern" [ $? -eq 0 ]
timeout 60 "$VHU" bench "$sock" --pattern read --verify --count 2048 --size 8M --quiet >"$tmp/r.out" 2>&1
rc=$?
check "bench reads it back verified" [ $rc -eq 0 ]
check "every read was checked" grep -q "verify: 2048 reads checked, 0 mismatches" "$tmp/r.out"
timeout 60 "$VHU" bench "$sock" --pattern read --verify --seed 99 --count 256 --size 8M --quiet >"$tmp/bad.out" 2>&1
rc=$?
check "a wrong seed is caught as mismatches" [ $rc -ne 0 ]
check "mismatches are counted" grep -Eq "256 reads checked, [1-9][0-9]* mismatches" "$tmp/bad.out"
timeout 60 "$VHU" bench "$sock" --pattern randrw --verify --time 1 --iodepth 16 --quiet --json \
	--no-event-idx --pid "$qsd_pid" >"$tmp/rw.json" 2>&1
rc=$?
check "mixed verified load without EVENT_IDX, back-end CPU read" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert sys.argv[2] == "0", "exit status " + sys.argv[2]
assert j["errors"] == 0 and j["mismatches"] == 0 and j["requests"] > 0, j
assert "backend_cpu_s" in j, j
' "$tmp/rw.json" "$rc"

# --- block_resize --------------------------------------------------------
qmp() {
	timeout 10 python3 - "$qmp" "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in [{"execute": "qmp_capabilities"}] + [json.loads(a) for a in sys.argv[2:]]:
    f.write(json.dumps(cmd) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
    if "error" in r:
        sys.exit("QMP error: %s" % r["error"])
PY
}
ver=$("$QSD" --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
timeout 20 "$VHU" watch "$sock" --timeout 3 >"$tmp/watch.out" 2>&1 &
watch_pid=$!
for _ in $(seq 50); do grep -q "waiting for config changes" "$tmp/watch.out" && break; sleep 0.1; done
check "watch connects and reads the capacity" grep -q "capacity 131072 sectors" "$tmp/watch.out"
check "QMP block_resize to 128 MiB succeeds" qmp '{"execute": "block_resize", "arguments": {"node-name": "disk0", "size": 134217728}}'
wait "$watch_pid"; wrc=$?; watch_pid=''
check "the image file grew" [ "$(stat -c %s "$img")" -eq 134217728 ]
if [ "${ver:-0}" -ge 8 ]; then
	check "qsd >= 8.0 sends CONFIG_CHANGE_MSG" [ $wrc -eq 0 ]
	check "watch sees the new capacity" grep -q "config change: capacity 262144 sectors" "$tmp/watch.out"
else
	# QEMU 7.2: the export neither notifies nor refreshes its config space.
	check "qsd $ver.x sends no CONFIG_CHANGE_MSG (watch times out)" [ $wrc -eq 3 ]
	out=$(timeout 20 "$VHU" probe "$sock" 2>&1)
	check "qsd $ver.x keeps reporting the old capacity" grep -q "capacity: 131072 sectors" <<<"$out"
fi

# --- errors --------------------------------------------------------------
out=$(timeout 20 "$VHU" probe "$qmp" --timeout 2 2>&1); rc=$?
check "a QMP socket is reported as not a vhost-user peer" \
	bash -c '[ "$1" -eq 1 ] && grep -q "not a vhost-user peer" <<<"$2"' _ "$rc" "$out"
out=$(timeout 20 "$VHU" probe "$tmp/missing.sock" 2>&1); rc=$?
check "a missing socket is reported" \
	bash -c '[ "$1" -eq 1 ] && grep -q "no such socket" <<<"$2"' _ "$rc" "$out"
out=$(timeout 20 "$VHU" probe "$img" 2>&1); rc=$?
check "a regular file is reported as not a socket" \
	bash -c '[ "$1" -eq 1 ] && grep -q "not a socket" <<<"$2"' _ "$rc" "$out"

finish
