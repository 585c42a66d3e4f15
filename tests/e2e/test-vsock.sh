#!/bin/bash
# SPDX-License-Identifier: MIT
# End-to-end test of vhu-vsock: a Linux guest with vhost-user-vsock-pci on
# vhu-vsock, host programs on Unix sockets in the hybrid-vsock convention.
# The guest session runs twice: QEMU 7.2 (the system's) on split rings,
# then QEMU 10.0 (tests/e2e/peers/fetch-qemu10) with packed=on; the second
# run's names end in " (qemu 10.0, packed)", or it is one SKIP line when
# QEMU 10.0 cannot be had.
#
#   tests/e2e/test-vsock.sh BUILD_DIR
#
# The guest (tests/e2e/guest/vsock-guest.c, static, in the initramfs with
# the kernel's vsock modules) listens on vsock port 5000, answering every
# stream with its length and CRC-32, and connects to the host's ports
# 6000 (an 8 MiB stream), 6001 (nobody listens: refused) and 6002 (16
# streams at once), 6003 (4 MiB to a host reader that starts reading
# only when told, 2 s after it accepted: the guest's writer must still be
# waiting then, and every byte arrive) and 6004 (seqpacket: 200 messages
# of up to 60000 bytes echoed by the host, each back whole).  The host (a small Python peer) connects through
# "CONNECT 5000" with an 8 MiB stream and then 16 streams at once, checks
# each answer, and finally connects to port 5999, which lets the guest
# power off.  Then: the daemon is still serving, serves a second boot of
# the guest (the next front-end; first run only) and exits 0 on SIGTERM.
# Without a VM: socket activation (fd 3) with READY=1 / STOPPING=1, the
# command line.
#
# Environment: E2E_ACCEL=kvm|tcg skips the accelerator probe; E2E_KEEP=1
# keeps the work directory; E2E_QEMU names the QEMU 7.2 binary,
# E2E_QEMU10 a QEMU 10.0 one; E2E_VMMS="system qemu10" (default) or one.
set -u

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
E2E_QEMU=${E2E_QEMU:-/usr/bin/qemu-system-x86_64}
. "$HERE/guest/lib.sh"
. "$HERE/lib.sh"

VSOCK=$BUILD/tools/vhu-vsock
BIG=$((8 << 20))
MULTI=16
MULTI_BYTES=$((256 << 10))
SLOW=$((4 << 20))
SEQ_COUNT=200
CID=3
BOOT_TIMEOUT=90
STEP_TIMEOUT=120

[ -x "$VSOCK" ] || skip_all "$VSOCK not built"
command -v "$E2E_QEMU" >/dev/null || skip_all "no $E2E_QEMU"
command -v python3 >/dev/null || skip_all "no python3"
e2e_guest_kernel
e2e_guest_work vhu-vsock-e2e
W=$E2E_WORK

# ---- the guest's image: its program, the vsock modules, its script ----------
e2e_guest_tool "$W" vsock-guest
# The shared module directory holds only the block stack; the vsock
# modules come from the same kernel package.
PKG=$(cat "$E2E_CACHE_DIR/kernel/PACKAGE" 2>/dev/null)
DEB=$(ls "$E2E_CACHE_DIR/dl/${PKG}_"*.deb 2>/dev/null | head -n1)
[ -n "$DEB" ] || { echo "Bail out! no kernel package $PKG in $E2E_CACHE_DIR/dl"; exit 1; }
mkdir -p "$W/deb"
dpkg --fsys-tarfile "$DEB" | tar -x -C "$W/deb" --wildcards '*/net/vmw_vsock/*' 2>/dev/null
MODS=()
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
	f=$(find "$W/deb" -name "$m.ko*" | head -n1)
	case "$f" in
	*.ko) cp "$f" "$W/$m.ko" ;;
	*.ko.xz) xz -dc "$f" >"$W/$m.ko" ;;
	*.ko.zst) zstd -qdc "$f" >"$W/$m.ko" ;;
	*) echo "Bail out! $m.ko not in $DEB"; exit 1 ;;
	esac
	MODS+=("$W/$m.ko")
done

cat >"$W/guest.sh" <<EOF
#!/bin/sh
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
	insmod /bin/\$m.ko || echo "RESULT insmod-failed \$m"
done
vsock-guest listen 5000 &
vsock-guest send 6000 $BIG | sed 's/^/RESULT big /'
vsock-guest refused 6001 | sed 's/^/RESULT refused /'
i=0
while [ \$i -lt $MULTI ]; do
	vsock-guest send 6002 $MULTI_BYTES >/tmp/multi.\$i &
	i=\$((i + 1))
done
wait_multi=0
while [ \$(cat /tmp/multi.* | grep -c '^SENT') -lt $MULTI ] && [ \$wait_multi -lt 600 ]; do
	sleep 0.2
	wait_multi=\$((wait_multi + 1))
done
cat /tmp/multi.* | sed 's/^/RESULT multi /'
vsock-guest send 6003 $SLOW | sed 's/^/RESULT slow /'
vsock-guest seq 6004 $SEQ_COUNT | sed 's/^/RESULT seq /'
for d in /sys/bus/virtio/devices/*; do
	[ "\$(cat \$d/device)" = 0x0013 ] && echo "RESULT features \$(cat \$d/features)"
done
echo "GUEST-SENDS-DONE"
vsock-guest wait 5999 $STEP_TIMEOUT || echo "RESULT wait-timeout"
EOF

e2e_guest_image "$W" "$W/guest.sh" "$W/vsock-guest" "${MODS[@]}"

# ---- the host's peer -------------------------------------------------------
cat >"$W/peer.py" <<'PY'
import os, socket, sys, threading, time, zlib

def handle(c, slow):
    if slow:
        # the test says when to start reading (SLOW_GO appears)
        print("slow: accepted", flush=True)
        while not os.path.exists(os.environ["SLOW_GO"]):
            time.sleep(0.1)
        print("slow: reading", flush=True)
    crc, n = 0, 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        crc = zlib.crc32(b, crc)
        n += len(b)
    c.sendall(f"{n} {crc}\n".encode())
    c.close()

def echo_records(c):
    while True:
        b = c.recv(65536)
        if not b:   # the end (the test sends no empty message)
            break
        c.sendall(b)
    c.close()

def serve(paths):
    # a path ending in "_6003" is the slow reader, "_6004" a seqpacket echo
    for p in paths:
        if p.endswith("_6004"):
            l = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            l.bind(p)
            l.listen(8)
            threading.Thread(target=lambda l=l: [threading.Thread(
                target=echo_records, args=(l.accept()[0],), daemon=True).start()
                for _ in iter(int, 1)], daemon=True).start()
            continue
        l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        l.bind(p)
        l.listen(64)
        threading.Thread(target=lambda l=l, p=p: [threading.Thread(
            target=handle, args=(l.accept()[0], p.endswith("_6003")),
            daemon=True).start() for _ in iter(int, 1)], daemon=True).start()
    print("serving", flush=True)
    threading.Event().wait()

def connect(uds, port, nbytes, out, i):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120)
        s.connect(uds)
        s.sendall(f"CONNECT {port}\n".encode())
        line = b""
        while not line.endswith(b"\n"):
            ch = s.recv(1)
            if not ch:
                out[i] = f"no OK line (got {line!r})"
                return
            line += ch
        if not line.startswith(b"OK "):
            out[i] = f"bad line {line!r}"
            return
        data = os.urandom(nbytes)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        ans = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            ans += b
        want = f"{nbytes} {zlib.crc32(data)}"
        out[i] = "MATCH" if ans.decode().strip() == want else \
            f"MISMATCH want {want} got {ans!r}"
    except Exception as e:
        out[i] = f"error {e!r}"

mode = sys.argv[1]
if mode == "serve":
    serve(sys.argv[2:])
else:
    uds, port, k, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    out = [None] * k
    ts = [threading.Thread(target=connect, args=(uds, port, n, out, i)) for i in range(k)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for r in out:
        print(r)
    sys.exit(0 if all(r == "MATCH" for r in out) else 1)
PY

# ---- one guest session -----------------------------------------------------
# session SUFFIX PACKED: boot the guest with $E2E_QEMU against a fresh
# daemon and peer and check everything; test names end in SUFFIX.
session() {
	local S=$1 packed=$2 D=$W/run$3
	mkdir -p "$D"
	local SOCK=$D/vhost.sock UDS=$D/vsock.uds LOG=$D/serial.log OUT NM RC PEER DAEMON QEMU
	SLOW_GO=$D/slow.go e2e_spawn python3 "$W/peer.py" serve "${UDS}_6000" "${UDS}_6002" "${UDS}_6003" "${UDS}_6004" >"$D/peer.log" 2>&1
	PEER=$E2E_LAST_PID
	e2e_spawn "$VSOCK" --socket-path "$SOCK" --uds-path "$UDS" --guest-cid "$CID" \
		--control "$D/ctl" 2>"$D/daemon.log"
	DAEMON=$E2E_LAST_PID
	e2e_wait_path "$SOCK" 10 && e2e_wait_path "$UDS" 1 && e2e_wait_path "${UDS}_6004" 10
	check "vhu-vsock listens on --socket-path and --uds-path$S" \
		bash -c '[ -S "$1" ] && [ -S "$2" ]' _ "$SOCK" "$UDS"

	: >"$LOG"
	e2e_qemu_base "$E2E_ACCEL" "$W/initrd.cpio" "$LOG"
	E2E_QEMU_ARGS+=(-chardev "socket,id=c0,path=$SOCK"
		-device "vhost-user-vsock-pci,chardev=c0,addr=0x5,packed=$packed")
	e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$D/qemu.err"
	QEMU=$E2E_LAST_PID

	e2e_diag() {
		echo "# --- serial (tail) ---"; tail -n 20 "$LOG" | sed 's/^/# /'
		echo "# --- daemon ---"; tail -n 10 "$D/daemon.log" | sed 's/^/# /'
		echo "# --- qemu ---"; tail -n 5 "$D/qemu.err" | sed 's/^/# /'
	}

	e2e_wait_log "$LOG" "LISTENING 5000" "$BOOT_TIMEOUT" "$QEMU"
	check "the guest's vsock listener is up (modules loaded, device found)$S" \
		grep -q "LISTENING 5000" "$LOG"
	check "control socket info: the guest's CID, a front-end connected$S" \
		test "$(e2e_rpc "$D/ctl" info --get guest_cid)" = "$CID" -a \
		  "$(e2e_rpc "$D/ctl" info --get connected)" = true

	# host -> guest: one 8 MiB stream, then 16 at once
	OUT=$(timeout "$STEP_TIMEOUT" python3 "$W/peer.py" connect "$UDS" 5000 1 "$BIG" 2>&1)
	check_rc "host -> guest: 8 MiB through CONNECT 5000, length and CRC match$S" $? "$OUT"
	OUT=$(timeout "$STEP_TIMEOUT" python3 "$W/peer.py" connect "$UDS" 5000 "$MULTI" "$MULTI_BYTES" 2>&1)
	check_rc "host -> guest: $MULTI connections at once, each matches$S" $? "$(echo "$OUT" | sort | uniq -c | tr '\n' ' ')"
	OUT=$(timeout 30 python3 "$W/peer.py" connect "$UDS" 5005 1 16 2>&1)
	check "host CONNECT to a guest port nobody listens on: closed without OK$S" \
		grep -q "no OK line" <<<"$OUT"

	# a host reader that does not read until told: 2 s after it accepted,
	# the guest's 4 MiB writer is still waiting (no result, the guest
	# runs); then it reads
	e2e_wait_log "$D/peer.log" "slow: accepted" "$STEP_TIMEOUT" "$QEMU"
	sleep 2
	check "guest -> slow host reader: the guest's writer waits$S" \
		bash -c '! grep -q "RESULT slow" "$1" && ! grep -q "slow: reading" "$2" &&
			 kill -0 "$3"' _ "$LOG" "$D/peer.log" "$QEMU"
	touch "$D/slow.go"

	# guest -> host results, then let the guest go
	e2e_wait_log "$LOG" "GUEST-SENDS-DONE" "$STEP_TIMEOUT" "$QEMU"
	check "guest -> slow host reader: 4 MiB, length and CRC match$S" \
		grep -Eq "RESULT slow SENT $SLOW ([0-9]+) GOT $SLOW \\1\$" <(tr -d '\r' <"$LOG")
	check "guest -> host: 8 MiB, length and CRC match$S" \
		grep -Eq "RESULT big SENT $BIG ([0-9]+) GOT $BIG \\1\$" <(tr -d '\r' <"$LOG")
	if grep -q "RESULT seq SEQ UNSUPPORTED" "$LOG"; then
		skip "guest -> host seqpacket: $SEQ_COUNT messages echoed whole$S" \
			"the VMM does not pass VIRTIO_VSOCK_F_SEQPACKET to the guest"
	else
		check "guest -> host seqpacket: $SEQ_COUNT messages echoed whole$S" \
			grep -q "RESULT seq SEQ OK $SEQ_COUNT" "$LOG"
	fi
	check "guest connect to a port nobody listens on: refused$S" \
		grep -Eq "RESULT refused REFUSED (ECONNRESET|ECONNREFUSED)" "$LOG"
	NM=$(tr -d '\r' <"$LOG" | grep -Ec "RESULT multi SENT $MULTI_BYTES ([0-9]+) GOT $MULTI_BYTES \\1\$")
	check_rc "guest -> host: $MULTI connections at once, each matches$S" \
		"$([ "$NM" = "$MULTI" ] && echo 0 || echo 1)" "$NM of $MULTI matched"
	timeout 30 python3 "$W/peer.py" connect "$UDS" 5999 1 0 >/dev/null 2>&1
	e2e_wait_exit "$QEMU" 60
	check "the guest finished and powered off$S" grep -q "VHU-GUEST-DONE" "$LOG"
	check "no module failed to load$S" bash -c "! grep -q 'insmod-failed' '$LOG'"

	# the daemon survived all of it, serves the next front-end and stops cleanly
	check "vhu-vsock still runs after the guest left$S" kill -0 "$DAEMON"
	check "the host peer still runs$S" kill -0 "$PEER"
	# every connection counted, every byte of both directions, no
	# connection left behind
	local st
	st=$(e2e_rpc "$D/ctl" stats)
	check "control socket stats: connections and bytes both ways$S" \
		python3 -c '
import json, sys
s = json.loads(sys.argv[1]); big, multi, n, slow = map(int, sys.argv[2:])
ok = (s["conns_total"] >= 2 * (1 + n) + 2 and s["conns_open"] == 0 and
      s["bytes_to_guest"] >= big + n * multi and
      s["bytes_to_host"] >= big + n * multi + slow and s["rst_sent"] >= 1)
sys.exit(0 if ok else print(s) or 1)' "$st" "$BIG" "$MULTI_BYTES" "$MULTI" "$SLOW"

	if [ "$3" = 1 ]; then
		# the next front-end: a second boot against the same daemon (its
		# guest starts after a TRANSPORT_RESET)
		local LOG2=$D/serial2.log Q2
		: >"$LOG2"
		e2e_qemu_base "$E2E_ACCEL" "$W/initrd.cpio" "$LOG2"
		E2E_QEMU_ARGS+=(-chardev "socket,id=c0,path=$SOCK"
			-device "vhost-user-vsock-pci,chardev=c0,addr=0x5,packed=$packed")
		e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$D/qemu2.err"
		Q2=$E2E_LAST_PID
		e2e_wait_log "$LOG2" "LISTENING 5000" "$BOOT_TIMEOUT" "$Q2"
		OUT=$(timeout "$STEP_TIMEOUT" python3 "$W/peer.py" connect "$UDS" 5000 1 $((1 << 20)) 2>&1)
		check_rc "the same daemon serves the next front-end: host -> guest 1 MiB on a second boot$S" $? "$OUT"
		e2e_wait_log "$LOG2" "GUEST-SENDS-DONE" "$STEP_TIMEOUT" "$Q2"
		check "the same daemon serves the next front-end: guest -> host 8 MiB on a second boot$S" \
			grep -Eq "RESULT big SENT $BIG ([0-9]+) GOT $BIG \\1\$" <(tr -d '\r' <"$LOG2")
		timeout 30 python3 "$W/peer.py" connect "$UDS" 5999 1 0 >/dev/null 2>&1
		e2e_wait_exit "$Q2" 60
	fi
	kill -TERM "$DAEMON"
	wait_exit "$DAEMON" 100
	RC=$?
	check_rc "vhu-vsock exits 0 on SIGTERM$S" "$RC" "rc=$RC"
	check "its sockets are gone$S" bash -c "[ ! -e '$SOCK' ] && [ ! -e '$UDS' ]"
	check "the device negotiated the ring layout asked for$S" \
		[ "$(tr -d '\r' <"$LOG" | sed -n 's/^RESULT features //p' | cut -c35)" = \
		  "$([ "$packed" = on ] && echo 1 || echo 0)" ]
	e2e_cleanup
}

session "" off 1
for vmm in ${E2E_VMMS:-system qemu10}; do
	[ "$vmm" = qemu10 ] || continue
	e2e_qemu10
	if [ -z "$Q10" ]; then
		skip "guest session (qemu 10.0, packed)" "QEMU 10.0 cannot be fetched: $Q10_WHY"
		continue
	fi
	E2E_QEMU=$Q10 E2E_QEMU_DATA=$Q10_DATA
	session " (qemu 10.0, packed)" on 2
done

# the command line
CAPS=$("$VSOCK" --print-capabilities)
check "--print-capabilities: QEMU's vsock type" \
	python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["type"] != "vsock")' "$CAPS"
"$VSOCK" --help | grep -q -- "--uds-path"
check_rc "--help names the options" $?
# socket activation and readiness, as systemd does it: fd 3 listening,
# LISTEN_PID/LISTEN_FDS, NOTIFY_SOCKET
cat >"$W/activate.py" <<'PY'
import os, signal, socket, subprocess, sys
path, notify, vhu = sys.argv[1], sys.argv[2], sys.argv[3]
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind(path)
l.listen(8)
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.bind(notify)
n.settimeout(10)
pid = os.fork()
if pid == 0:
    os.dup2(l.fileno(), 3)
    os.set_inheritable(3, True)   # dup2 onto itself keeps close-on-exec
    os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), NOTIFY_SOCKET=notify)
    os.execv(sys.argv[4], sys.argv[4:])
l.close()
try:
    print("notify", n.recv(64).decode())
    p = subprocess.run([vhu, "probe", path], capture_output=True, text=True, timeout=20)
    print("probe", "queues: 3" in p.stdout)
    os.kill(pid, signal.SIGTERM)
    print("notify", n.recv(64).decode())
    print("exit", os.waitpid(pid, 0)[1])
    pid = 0
    print("kept", os.path.exists(path))
finally:
    # never leave the daemon behind (it holds the caller's pipe open)
    if pid:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
PY
OUT=$(timeout 60 python3 "$W/activate.py" "$W/act.sock" "$W/notify" "$BUILD/tools/vhu" \
	"$VSOCK" --guest-cid 5 2>&1)
check "socket activation: READY=1 once serving" grep -qx "notify READY=1" <<<"$OUT"
check "socket activation: the handed-over socket serves a front-end" \
	grep -qx "probe True" <<<"$OUT"
check "socket activation: STOPPING=1 and exit 0 on SIGTERM, the socket left to its owner" \
	bash -c 'grep -qx "notify STOPPING=1" <<<"$1" && grep -qx "exit 0" <<<"$1" &&
		 grep -qx "kept True" <<<"$1"' _ "$OUT"
"$VSOCK" --socket-path "$W/x.sock" --guest-cid 2 2>/dev/null
check_rc "a reserved guest CID is refused (exit 2)" "$([ $? = 2 ] && echo 0 || echo 1)"
finish
