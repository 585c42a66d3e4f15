#!/bin/bash
# SPDX-License-Identifier: MIT
# End to end: the vhu front-end against qemu-storage-daemon's
# vhost-user-blk export, twice: the system's qemu-storage-daemon (Debian
# bookworm: QEMU 7.2) and QEMU 10.0 from bookworm-backports, unpacked
# into tests/e2e/cache/qemu10 by tests/e2e/peers/fetch-qemu10 (its lines
# are SKIPs with the reason when it cannot be fetched).  Probe, verified
# write/read with vhu bench, and what a QMP block_resize does to a
# connected front-end: through `vhu watch` and through a raw front-end
# (tests/e2e/peers/cfgchange.py) that records the CONFIG_CHANGE_MSG header.
# Every test name ends in "(qsd X.Y)".
# Usage: test-frontend-qsd.sh BUILD_DIR    (TAP on stdout)
# Environment: QSD (first peer, default /usr/bin/qemu-storage-daemon),
# QSD10 (second peer; default: what fetch-qemu10 provides).
set -u
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
VHU=$BUILD/tools/vhu
QSD=${QSD:-/usr/bin/qemu-storage-daemon}

. "$HERE/lib.sh"

if [ ! -x "$VHU" ]; then skip "vhu" "not built in $BUILD"; finish; fi

tmp=$(e2e_tmpdir vhu-e2e-qsd)
qsd_pid='' watch_pid=''
stop_qsd() {
	[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
	watch_pid=''
	e2e_stop "$qsd_pid"
	qsd_pid=''
}
cleanup() {
	stop_qsd
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

qmp() { # qmp SOCKET JSON...
	timeout 10 python3 - "$@" <<'PY'
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

# jcheck NAME JSON PYTHON-ASSERTIONS (on the object j)
jcheck() {
	check "$1" python3 -c "import json, sys
j = json.loads(sys.argv[1])
$3" "$2"
}

# run_peer QSD_BINARY: every check against one qemu-storage-daemon.
run_peer() {
	local qsd=$1 ver major t out json rc wrc cc
	ver=$("$qsd" --version | sed -n 's/.*version \([0-9]*\.[0-9]*\).*/\1/p' | head -n 1)
	major=${ver%%.*}
	t=" (qsd $ver)"
	local dir=$tmp/$ver
	mkdir -p "$dir"
	local img=$dir/disk.img sock=$dir/vhost.sock qmps=$dir/qmp.sock
	truncate -s 64M "$img"
	"$qsd" --blockdev driver=file,node-name=file0,filename="$img" \
		--blockdev driver=raw,node-name=disk0,file=file0 \
		--export type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path="$sock",writable=on \
		--chardev socket,id=qmp0,path="$qmps",server=on,wait=off \
		--monitor chardev=qmp0,mode=control >"$dir/qsd.log" 2>&1 &
	qsd_pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && [ -S "$qmps" ] && break; sleep 0.1; done
	if [ ! -S "$sock" ]; then
		notok "qemu-storage-daemon starts$t"
		sed 's/^/# /' "$dir/qsd.log"
		stop_qsd
		return
	fi
	ok "qemu-storage-daemon starts$t"

	# --- probe -----------------------------------------------------------
	e2e_probe "$VHU" "$sock" "$t"
	out=$PROBE_OUT
	check "probe names protocol features$t" grep -q "^  CONFIG$" <<<"$out"
	check "probe names virtio-blk features$t" grep -q "^  BLK_SEG_MAX$" <<<"$out"
	json=$(timeout 20 "$VHU" probe "$sock" --json 2>&1)
	jcheck "probe --json is JSON with the capacity$t" "$json" '
assert j["config"]["capacity_bytes"] == 64 << 20, j
assert "REPLY_ACK" in j["protocol_feature_names"], j'
	echo "# qsd $ver protocol features: $(python3 -c 'import json,sys; print(" ".join(json.loads(sys.argv[1])["protocol_feature_names"]))' "$json" 2>/dev/null)"

	# --- verified I/O ----------------------------------------------------
	timeout 60 "$VHU" bench "$sock" --pattern write --verify --count 2048 --size 8M --quiet >"$dir/w.out" 2>&1
	check "bench writes a verify pattern$t" [ $? -eq 0 ]
	timeout 60 "$VHU" bench "$sock" --pattern read --verify --count 2048 --size 8M --quiet >"$dir/r.out" 2>&1
	rc=$?
	check "bench reads it back verified$t" [ $rc -eq 0 ]
	check "every read was checked$t" grep -q "verify: 2048 reads checked, 0 mismatches" "$dir/r.out"
	timeout 60 "$VHU" bench "$sock" --pattern read --verify --seed 99 --count 256 --size 8M --quiet >"$dir/bad.out" 2>&1
	rc=$?
	check "a wrong seed is caught as mismatches$t" [ $rc -ne 0 ]
	check "mismatches are counted$t" grep -Eq "256 reads checked, [1-9][0-9]* mismatches" "$dir/bad.out"
	timeout 60 "$VHU" bench "$sock" --pattern randrw --verify --time 1 --iodepth 16 --quiet --json \
		--no-event-idx --pid "$qsd_pid" >"$dir/rw.json" 2>&1
	rc=$?
	check "mixed verified load without EVENT_IDX, back-end CPU read$t" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert sys.argv[2] == "0", "exit status " + sys.argv[2]
assert j["errors"] == 0 and j["mismatches"] == 0 and j["requests"] > 0, j
assert "backend_cpu_s" in j, j
' "$dir/rw.json" "$rc"

	# --- block_resize through vhu watch ----------------------------------
	timeout 20 "$VHU" watch "$sock" --timeout 3 >"$dir/watch.out" 2>&1 &
	watch_pid=$!
	for _ in $(seq 50); do grep -q "waiting for config changes" "$dir/watch.out" && break; sleep 0.1; done
	check "watch connects and reads the capacity$t" grep -q "capacity 131072 sectors" "$dir/watch.out"
	check "QMP block_resize to 128 MiB succeeds$t" qmp "$qmps" '{"execute": "block_resize", "arguments": {"node-name": "disk0", "size": 134217728}}'
	wait "$watch_pid"; wrc=$?; watch_pid=''
	check "the image file grew$t" [ "$(stat -c %s "$img")" -eq 134217728 ]

	# --- block_resize, the raw CONFIG_CHANGE_MSG -------------------------
	# A front-end of its own records the message header (flags: is a
	# reply requested although REPLY_ACK was negotiated?) and re-reads
	# the config, with REPLY_ACK negotiated and without it.
	local cc_ack cc_noack
	cc_ack=$(timeout 20 python3 "$HERE/peers/cfgchange.py" "$sock" "$qmps" $((160 << 20)) --timeout 3 2>&1)
	cc_noack=$(timeout 20 python3 "$HERE/peers/cfgchange.py" "$sock" "$qmps" $((192 << 20)) --timeout 3 --no-reply-ack 2>&1)
	echo "# qsd $ver block_resize, REPLY_ACK negotiated: $cc_ack"
	echo "# qsd $ver block_resize, no REPLY_ACK:         $cc_noack"

	if [ "${major:-0}" -ge 8 ]; then
		check "qsd >= 8.0 sends CONFIG_CHANGE_MSG$t" [ $wrc -eq 0 ]
		check "watch sees the new capacity$t" grep -q "config change: capacity 262144 sectors" "$dir/watch.out"
		for cc in ack noack; do
			local j sz want_ra how
			[ $cc = ack ] && j=$cc_ack sz=$((160 << 11)) want_ra=True how="with REPLY_ACK"
			[ $cc = noack ] && j=$cc_noack sz=$((192 << 11)) want_ra=False how="without REPLY_ACK"
			jcheck "CONFIG_CHANGE_MSG is request 2 with no payload and no fd ($how)$t" "$j" "
assert j['reply_ack_negotiated'] is $want_ra, j
m = j['message']
assert m is not None, 'no message within 3 s'
assert m['request'] == 2 and m['size'] == 0 and m['fds'] == 0, m"
			if [ "$major" -eq 10 ]; then
				# Observed with 10.0: the message never asks for a reply,
				# even with REPLY_ACK negotiated.
				jcheck "qsd 10.0 does not set NEED_REPLY on CONFIG_CHANGE_MSG ($how)$t" "$j" "
assert j['message']['flags'] == 1, j   # VERSION only"
			fi
			jcheck "GET_CONFIG after CONFIG_CHANGE_MSG returns the new capacity ($how)$t" "$j" "
assert j['capacity_after'] == $sz, j
assert j['features_after'], j"
		done
	else
		# QEMU 7.2: the export neither notifies nor refreshes its config space.
		check "qsd $ver sends no CONFIG_CHANGE_MSG (watch times out)$t" [ $wrc -eq 3 ]
		out=$(timeout 20 "$VHU" probe "$sock" 2>&1)
		check "qsd $ver keeps reporting the old capacity$t" grep -q "capacity: 131072 sectors" <<<"$out"
		jcheck "qsd $ver: no message on the back-end channel, GET_CONFIG unchanged (raw front-end)$t" "$cc_ack" "
assert j['message'] is None, j
assert j['capacity_before'] == j['capacity_after'] == 131072, j"
	fi
	check "the image file follows every block_resize$t" [ "$(stat -c %s "$img")" -eq $((192 << 20)) ]

	# --- errors ----------------------------------------------------------
	out=$(timeout 20 "$VHU" probe "$qmps" --timeout 2 2>&1); rc=$?
	check "a QMP socket is reported as not a vhost-user peer$t" \
		bash -c '[ "$1" -eq 1 ] && grep -q "not a vhost-user peer" <<<"$2"' _ "$rc" "$out"
	check "qemu-storage-daemon is still running at the end$t" kill -0 "$qsd_pid"
	stop_qsd
}

if [ -x "$QSD" ]; then
	run_peer "$QSD"
else
	skip "qemu-storage-daemon (system)" "$QSD not installed"
fi

if [ -n "${QSD10:-}" ]; then
	q10=$QSD10
elif dir=$("$HERE/peers/fetch-qemu10"); then
	q10=$dir/bin/qemu-storage-daemon
else
	q10='' why=$dir
fi
if [ -n "$q10" ] && [ -x "$q10" ]; then
	run_peer "$q10"
else
	skip "qemu-storage-daemon 10.0 (bookworm-backports)" "cannot be fetched: ${why:-$q10 not executable}"
fi

# --- errors that need no peer ----------------------------------------------
out=$(timeout 20 "$VHU" probe "$tmp/missing.sock" 2>&1); rc=$?
check "a missing socket is reported" \
	bash -c '[ "$1" -eq 1 ] && grep -q "no such socket" <<<"$2"' _ "$rc" "$out"
: >"$tmp/regular"
out=$(timeout 20 "$VHU" probe "$tmp/regular" 2>&1); rc=$?
check "a regular file is reported as not a socket" \
	bash -c '[ "$1" -eq 1 ] && grep -q "not a socket" <<<"$2"' _ "$rc" "$out"

finish
