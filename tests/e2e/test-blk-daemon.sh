#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk daemon tests without a VM: command line, capabilities, signals,
# control socket (JSON-RPC 2.0), resize, --fd and socket activation.
# Usage: tests/e2e/test-blk-daemon.sh BUILD_DIR    (prints TAP)
set -u

. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
e2e_bins "${1:-build}" tools/vhu-blk
e2e_setup vhu-blk-e2e
LOOP=""
e2e_cleanup_extra() {
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
	return 0
}

# JSON-RPC client: rpc SOCKET LINE... -> one response line per request.
cat > "$T/rpc.py" <<'PY'
import json, socket, sys
def answered(line):
    # JSON-RPC 2.0: only a notification (a valid object without "id")
    # goes unanswered
    try:
        v = json.loads(line)
    except ValueError:
        return True
    return not isinstance(v, dict) or "id" in v
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
f = s.makefile("rwb")
for line in sys.argv[2:]:
    f.write(line.encode() + b"\n")
    f.flush()
    if answered(line):
        print(f.readline().decode().rstrip("\n"))
PY
# jget JSON PATH: print a field (dotted path) of a JSON document.
cat > "$T/jget.py" <<'PY'
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
PY
rpc() { python3 "$T/rpc.py" "$@"; }
jget() { python3 "$T/jget.py" "$1" "$2" 2>/dev/null; }

truncate -s 4M "$T/img"

# ---- command line ----
out=$("$BIN" --help); rc=$?
check "--help exits 0 and lists options" \
	test $rc -eq 0 -a -n "$(echo "$out" | grep -- --socket-path)" -a \
	     -n "$(echo "$out" | grep -- --control)"
out=$("$BIN" --version); rc=$?
check "--version prints the version" \
	test $rc -eq 0 -a -n "$(echo "$out" | grep -E '^vhu-blk [0-9]+\.[0-9]+')"
check "--version names the allocator" \
	test -n "$(echo "$out" | grep -E "^allocator: (tcmalloc [0-9]+\.[0-9]+|the C library's)")"
out=$("$BIN" --print-capabilities); rc=$?
check "--print-capabilities prints the block capabilities" test $rc -eq 0 -a \
	"$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["type"], sorted(d["features"]))' "$out")" \
	= "block ['blk-file', 'read-only']"

bad_cmd() { # bad_cmd NAME PATTERN ARGS...: exit 1, one-line error
	local name=$1 pat=$2; shift 2
	local err
	err=$("$BIN" "$@" 2>&1 >/dev/null); local rc=$?
	if [ $rc -eq 1 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] &&
	   echo "$err" | grep -q -- "$pat"; then
		ok "$name"
	else
		notok "$name (rc=$rc: $err)"
	fi
}
bad_cmd "unknown option" "unknown option" --frobnicate
bad_cmd "missing option argument" "needs an argument" --blk-file
bad_cmd "bad --blk-size" "blk-size" --blk-file "$T/img" --socket-path "$T/s" --blk-size 1000
bad_cmd "bad --num-queues" "num-queues" --blk-file "$T/img" --socket-path "$T/s" --num-queues 0
bad_cmd "bad --threads" "threads" --blk-file "$T/img" --socket-path "$T/s" --threads 0
bad_cmd "bad --cache" "cache" --blk-file "$T/img" --socket-path "$T/s" --cache sometimes
bad_cmd "serial too long" "serial" --serial 123456789012345678901
bad_cmd "missing --blk-file" "blk-file" --socket-path "$T/s"
bad_cmd "no socket given" "socket-path" --blk-file "$T/img"
bad_cmd "--socket-path with --fd" "mutually exclusive" --blk-file "$T/img" --socket-path "$T/s" --fd 0
bad_cmd "missing image" "$T/nope" --blk-file "$T/nope" --socket-path "$T/s"
bad_cmd "image is a directory" "$T" --blk-file "$T" --socket-path "$T/s"
bad_cmd "--fd that is not a socket" "not an open socket" --blk-file "$T/img" --fd 0
check "no socket left behind by failures" test ! -e "$T/s"

# ---- a running daemon ----
"$BIN" --blk-file "$T/img" --socket-path "$T/s" --control "$T/c" \
	--serial disk-7 --num-queues 3 --threads 2 2>"$T/log" &
D=$!; PIDS+=($D)
check "daemon creates its sockets" wait_for "$T/c"
check "vhost-user socket exists" test -S "$T/s"
bad_cmd "socket path in use" "in use" --blk-file "$T/img" --lock off --socket-path "$T/s"
bad_cmd "control path in use" "in use" --blk-file "$T/img" --lock off --socket-path "$T/s2" --control "$T/c"
check "running daemon still serves after the refused starts" kill -0 $D

info=$(rpc "$T/c" '{"jsonrpc":"2.0","id":1,"method":"info"}')
check "info: size" test "$(jget "$info" result.size)" = 4194304
check "info: fields" test "$(jget "$info" result.read_only)/$(jget "$info" result.num_queues)/$(jget "$info" result.threads)/$(jget "$info" result.blk_size)/$(jget "$info" result.serial)/$(jget "$info" result.cache)/$(jget "$info" result.connected)/$(jget "$info" result.wce)" \
	= "false/3/2/512/disk-7/writeback/false/true"
check "info: socket and id echoed" test "$(jget "$info" result.socket)/$(jget "$info" id)/$(jget "$info" jsonrpc)" = "$T/s/1/2.0"

st=$(rpc "$T/c" '{"jsonrpc":"2.0","id":"s","method":"stats"}')
check "stats: per-queue and total counters" test \
	"$(jget "$st" result.queues.2.index)/$(jget "$st" result.queues.0.requests)/$(jget "$st" result.total.in_flight)/$(jget "$st" result.total.bytes_written)/$(jget "$st" id)" \
	= "2/0/0/0/s"

r=$(rpc "$T/c" '{"jsonrpc":"2.0","id":2,"method":"resize","params":{"size":8388608}}')
check "resize grows the image" test "$(jget "$r" result.size)/$(jget "$r" result.old_size)/$(stat -c %s "$T/img")" = "8388608/4194304/8388608"
r=$(rpc "$T/c" '{"jsonrpc":"2.0","id":3,"method":"resize","params":{"size":1048576,"shrink":true}}')
check "resize with shrink shrinks the image" test "$(jget "$r" result.size)/$(stat -c %s "$T/img")" = "1048576/1048576"
check "resize without a front-end is logged" grep -q "no front-end connected" "$T/log"

errcode() { jget "$(rpc "$T/c" "$1")" error.code; }
check "parse error -32700" test "$(errcode '{"jsonrpc":"2.0", nope')" = -32700
check "invalid request -32600 (not an object)" test "$(errcode '[1,2]')" = -32600
check "invalid request -32600 (no jsonrpc)" test "$(errcode '{"id":1,"method":"info"}')" = -32600
check "invalid request -32600 (method not a string)" test "$(errcode '{"jsonrpc":"2.0","id":1,"method":5}')" = -32600
check "method not found -32601" test "$(errcode '{"jsonrpc":"2.0","id":1,"method":"explode"}')" = -32601
check "invalid params -32602 (no size)" test "$(errcode '{"jsonrpc":"2.0","id":1,"method":"resize","params":{}}')" = -32602
check "invalid params -32602 (negative)" test "$(errcode '{"jsonrpc":"2.0","id":1,"method":"resize","params":{"size":-512}}')" = -32602
check "invalid params -32602 (unaligned)" test "$(errcode '{"jsonrpc":"2.0","id":1,"method":"resize","params":{"size":1000}}')" = -32602
check "invalid params -32602 (string)" test "$(errcode '{"jsonrpc":"2.0","id":1,"method":"resize","params":{"size":"1M"}}')" = -32602
msg=$(jget "$(rpc "$T/c" '{"jsonrpc":"2.0","id":1,"method":"explode"}')" error.message)
check "error messages are clear" test -n "$(echo "$msg" | grep explode)"

# several requests on one connection, a notification gets no answer
out=$(rpc "$T/c" '{"jsonrpc":"2.0","method":"info"}' '{"jsonrpc":"2.0","id":10,"method":"info"}' '{"jsonrpc":"2.0","id":11,"method":"stats"}')
check "pipelined requests answered in order" test "$(echo "$out" | wc -l)/$(jget "$(echo "$out" | head -1)" id)/$(jget "$(echo "$out" | tail -1)" id)" = "2/10/11"

# several clients at once: one idle client does not block another
python3 - "$T/c" <<'PY'
import socket, sys, json
a = socket.socket(socket.AF_UNIX); a.connect(sys.argv[1])
a.sendall(b'{"jsonrpc":"2.0","id":1,')          # half a request
b = socket.socket(socket.AF_UNIX); b.settimeout(5); b.connect(sys.argv[1])
b.sendall(b'{"jsonrpc":"2.0","id":2,"method":"info"}\n')
rb = json.loads(b.makefile().readline())
a.settimeout(5); a.sendall(b'"method":"stats"}\n')
ra = json.loads(a.makefile().readline())
sys.exit(0 if rb["id"] == 2 and ra["id"] == 1 and "total" in ra["result"] else 1)
PY
check "several clients at once" test $? -eq 0
printf 'x%.0s' $(seq 9000) | python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(sys.stdin.read().encode())
print(s.makefile().readline())' "$T/c" > "$T/long"
check "over-long line rejected" test "$(jget "$(cat "$T/long")" error.code)" = -32600
check "daemon alive after bad clients" kill -0 $D

# SIGHUP re-reads the size after an outside truncate
truncate -s 16M "$T/img"
kill -HUP $D
sleep 0.3
info=$(rpc "$T/c" '{"jsonrpc":"2.0","id":1,"method":"info"}')
check "SIGHUP picks up truncate -s" test "$(jget "$info" result.size)/$(jget "$info" result.sectors)" = "16777216/32768"
check "SIGHUP logged" grep -q "SIGHUP" "$T/log"

# a front-end that connects and goes away leaves the daemon ready
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.close()' "$T/s"
sleep 0.2
check "front-end disconnect leaves the daemon running" kill -0 $D
check "still serving the control socket" test "$(jget "$(rpc "$T/c" '{"jsonrpc":"2.0","id":5,"method":"info"}')" id)" = 5

kill -TERM $D
wait_exit $D; rc=$?
check "SIGTERM exits with status 0" test $rc -eq 0
check "sockets removed on exit" test ! -e "$T/s" -a ! -e "$T/c"

# ---- read-only, SIGINT ----
"$BIN" --blk-file "$T/img" --socket-path "$T/s" --control "$T/c" --read-only 2>"$T/log2" &
D=$!; PIDS+=($D)
wait_for "$T/c"
r=$(rpc "$T/c" '{"jsonrpc":"2.0","id":1,"method":"resize","params":{"size":4194304}}')
check "resize of a read-only image is an application error" test "$(jget "$r" error.code)" = -32000 -a -n "$(jget "$r" error.message | grep read-only)"
check "read-only image keeps its size" test "$(stat -c %s "$T/img")" = 16777216
check "info: read_only" test "$(jget "$(rpc "$T/c" '{"jsonrpc":"2.0","id":1,"method":"info"}')" result.read_only)" = true
kill -INT $D
wait_exit $D; rc=$?
check "SIGINT exits with status 0" test $rc -eq 0

# ---- --fd: an already-connected socket; the session ends with its peer ----
python3 - "$BIN" "$T/img" <<'PY'
import socket, subprocess, sys, time
a, b = socket.socketpair()
p = subprocess.Popen([sys.argv[1], "--blk-file", sys.argv[2], "--fd", str(b.fileno())],
                     pass_fds=(b.fileno(),), stderr=subprocess.DEVNULL)
b.close()
time.sleep(0.3)
alive = p.poll() is None
a.close()
try:
    rc = p.wait(timeout=5)
except subprocess.TimeoutExpired:
    p.kill(); rc = -1
sys.exit(0 if alive and rc == 0 else 1)
PY
check "--fd: serves, then exits 0 when the peer closes" test $? -eq 0

# ---- systemd socket activation: LISTEN_PID/LISTEN_FDS, fd 3 ----
python3 - "$BIN" "$T/img" "$T/sd" "$T/c" "$T/rpc.py" <<'PY'
import json, os, socket, subprocess, sys, time
binp, img, path, ctl, rpc = sys.argv[1:]
l = socket.socket(socket.AF_UNIX); l.bind(path); l.listen(4)
fd = l.detach()
if fd != 3:
    os.dup2(fd, 3); os.close(fd)
os.set_inheritable(3, True)
p = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"',
                      binp, "--blk-file", img, "--control", ctl],
                     pass_fds=(3,), stderr=subprocess.DEVNULL)
os.close(3)
ok = False
for _ in range(50):
    if os.path.exists(ctl): break
    time.sleep(0.1)
c = socket.socket(socket.AF_UNIX); c.connect(path)      # the front-end
time.sleep(0.3)
out = subprocess.run([sys.executable, rpc, ctl, '{"jsonrpc":"2.0","id":1,"method":"info"}'],
                     capture_output=True, text=True).stdout
info = json.loads(out)["result"]
ok = info["socket"] == "systemd" and info["connected"] is True
c.close()
p.terminate()
rc = p.wait(timeout=5)
sys.exit(0 if ok and rc == 0 else 1)
PY
check "systemd socket activation" test $? -eq 0

# ---- a block device (loop device; needs root and loop support) ----
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null; then
	truncate -s 8M "$T/bdev.img"
	LOOP=$(losetup -f --show "$T/bdev.img" 2>/dev/null)
fi
if [ -n "$LOOP" ] && [ -b "$LOOP" ]; then
	"$BIN" --blk-file "$LOOP" --socket-path "$T/s" --control "$T/c" 2>"$T/log3" &
	D=$!; PIDS+=($D)
	wait_for "$T/c"
	info=$(rpc "$T/c" '{"jsonrpc":"2.0","id":1,"method":"info"}')
	check "block device: size via BLKGETSIZE64" test "$(jget "$info" result.block_device)/$(jget "$info" result.size)" = "true/8388608"
	truncate -s 16M "$T/bdev.img"
	losetup -c "$LOOP"
	r=$(rpc "$T/c" '{"jsonrpc":"2.0","id":2,"method":"refresh"}')
	check "block device: refresh re-reads the size" test "$(jget "$r" result.size)" = 16777216
	kill -TERM $D
	wait_exit $D; rc=$?
	check "block device: SIGTERM exits 0" test $rc -eq 0
	losetup -d "$LOOP" && LOOP=""
else
	for name in "block device: size via BLKGETSIZE64" \
		    "block device: refresh re-reads the size" \
		    "block device: SIGTERM exits 0"; do
		N=$((N + 1)); echo "ok $N - $name # SKIP no loop device"
	done
fi

finish
