#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk serving NBD exports (--blk-file nbd+unix:///...): real servers
# started here (Unix sockets, and TCP on 127.0.0.1), nbdkit (memory and file plugins; the error and delay
# filters inject faults) and qemu-nbd.  Checks: verified I/O with several
# queues (one connection each, nbdkit allows multi-conn), `vhu check`,
# data landing in the file behind the server, a server without multi-conn
# (nbdkit's multi-conn filter) refused for several queues, a read-only export served read-only, server
# errors reported as IOERR without a reconnect, ESHUTDOWN replies on a
# live connection retried a bounded number of times, then IOERR (no
# reconnect, no busy loop), the server killed and
# restarted under verified I/O (a pause, no error, no lost write; the
# next FLUSH is to fail, not with --nbd-persistent-cache), no
# server beyond --reconnect-timeout (IOERR, state "failed", then back),
# refresh after the export grew (CONFIG_CHANGE_MSG to the front-end), resize refused with a reason, and the
# back-end kind and state in ctl info / stats, simple replies asked for, --print-capabilities and the
# vhost-user.json descriptor's tags; TLS (nbds+unix:// with a pre-shared
# key) and a TLS-only server refusing a plain client; refresh and start
# against a server that never answers the handshake (bounded, an error);
# an nbd://HOST whose name takes long to resolve (a silent DNS server in
# a mount namespace of the daemon's): start, refresh and reconnection
# bounded to 5 s a try.
# Usage: tests/e2e/test-blk-nbd.sh BUILD_DIR    (prints TAP)
set -u

. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
e2e_bins "${1:-build}" tools/vhu-blk tools/vhu
"$BIN" --print-capabilities | grep -q '"nbd"' ||
	skip_all "vhu-blk built without libnbd (meson -Dnbd=enabled)"
command -v nbdkit >/dev/null || skip_all "nbdkit not installed (scripts/deps)"
command -v qemu-nbd >/dev/null || skip_all "qemu-nbd not installed (scripts/deps)"
command -v psktool >/dev/null || skip_all "psktool not installed (gnutls-bin, scripts/deps)"
e2e_setup vhu-blk-nbd
e2e_diag() { sed 's/^/# /' "$T"/log* 2>/dev/null | tail -8; }
MiB=$((1 << 20))
# The loss and the reconnection are logged at warn and info.
export VHU_LOG=info

# nbdkit_start NAME ARGS...: an nbdkit on $T/NAME.sock in the foreground
# of a background job; NK is its pid.
nbdkit_start() {
	local name=$1; shift
	rm -f "$T/$name.sock"
	nbdkit -f --unix "$T/$name.sock" "$@" 2>>"$T/log.nbdkit" &
	NK=$!
	PIDS+=("$NK")
	wait_for "$T/$name.sock"
}
uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }
ctl() { timeout 20 "$VHU" ctl "$T/ctl" "$@" 2>&1; }
# daemon NAME EXTRA...: vhu-blk on $T/NAME's export, socket $T/v, control
# $T/ctl; D its pid.
daemon() {
	local name=$1; shift
	rm -f "$T/v" "$T/ctl"
	e2e_daemon "$T/log.$name" --blk-file "$(uri "$name")" --socket-path "$T/v" \
		--control "$T/ctl" "$@"
	wait_for "$T/v"
}
bench() { timeout 90 "$VHU" bench "$T/v" --quiet "$@" >"$T/bench.out" 2>&1; }
errors0() { grep -q "errors: 0$" "$T/bench.out" && ! grep -q "mismatches: [1-9]" "$T/bench.out"; }

# --- capabilities ---
check "--print-capabilities lists the back-ends" \
	bash -c '"$1" --print-capabilities | grep -q "\"backends\": \[\"file\", \"null\", \"nbd\"[],]"' _ "$BIN"

check "the vhost-user.json descriptor tags the back-ends" \
	python3 -c 'import json, sys; t = json.load(open(sys.argv[1]))["tags"]; sys.exit("backend-nbd" not in t or "backend-file" not in t)' \
	"$BUILD/tools/50-vhu-blk.json"

# --- nbdkit memory: several queues, verified I/O, check ---
nbdkit_start mem memory 64M
daemon mem --num-queues 2
check "memory export: verified random writes, 2 queues" \
	bench --pattern randrw --verify --time 2 --queues 2
check "memory export: no errors" errors0
# A wake-up that said readable when nothing was once left libnbd waiting
# for a reply with the next command queued behind it: at queue depth 1
# the queue hung within seconds (vhu bench gives up after 10 s).
check "queue depth 1 for 15 s: every request answered" \
	bench --pattern randread --iodepth 1 --time 15
check "memory export: vhu check passes" \
	bash -c 'timeout 120 "$1" check "$2" >"$3/check.out" 2>&1' _ "$VHU" "$T/v" "$T"
check "ctl info: back-end nbd, connected" \
	bash -c 'ctl_out=$("$1" ctl "$2" info) && grep -q "^backend: nbd" <<<"$ctl_out" &&
		grep -q "^backend_state: connected" <<<"$ctl_out"' _ "$VHU" "$T/ctl"
check "ctl stats: back-end state" bash -c '"$1" ctl "$2" stats | grep -q "backend_state: connected"' _ "$VHU" "$T/ctl"
out=$(ctl resize 134217728)
check "resize on NBD: refused with the reason" grep -q "NBD has no resize" <<<"$out"
e2e_stop "$D"
e2e_stop "$NK"
# Simple replies (half the recv calls of structured ones per read):
# nbdkit's debug output names every option a client asks for.
rm -f "$T/mem.sock"
nbdkit -f -v --unix "$T/mem.sock" memory 64M 2>"$T/log.nbdkit-v" &
NK=$!; PIDS+=("$NK")
wait_for "$T/mem.sock"
daemon mem --num-queues 2
check "simple replies: verified I/O, 2 queues" bench --pattern randrw --verify --count 200 --queues 2
check "simple replies: no connection asks for structured replies" \
	bash -c 'grep -q "newstyle negotiation" "$1" && ! grep -q "NBD_OPT_STRUCTURED_REPLY" "$1"' _ "$T/log.nbdkit-v"
e2e_stop "$D"
e2e_stop "$NK"
nbdkit_start mem memory 64M
# The blocking engine (--aio threads) and a thread shared by two queues.
for extra in "1 --aio threads" "2 --num-queues 2 --threads 1"; do
	nq=${extra%% *} extra=${extra#* }
	# shellcheck disable=SC2086
	daemon mem $extra
	check "memory export, $extra: verified I/O" \
		bench --pattern randrw --verify --time 1 --queues "$nq"
	check "memory export, $extra: no errors" errors0
	e2e_stop "$D"
done
e2e_stop "$NK"

# --- nbdkit file: the data lands in the file; refresh after growth ---
truncate -s 32M "$T/disk.img"
nbdkit_start file file "$T/disk.img"
daemon file --num-queues 2
check "file export: sequential write of the whole disk" \
	bench --pattern write --verify --count 8192 --size 32M --seed 7
check "file export: written data reads back verified" \
	bench --pattern read --verify --count 8192 --size 32M --seed 7
e2e_stop "$D"
# The same pattern straight from the file (vhu-blk on the file itself).
rm -f "$T/v"
e2e_daemon "$T/log.direct" --blk-file "$T/disk.img" --socket-path "$T/v" --lock off
wait_for "$T/v"
check "file export: the file behind nbdkit holds what was written" \
	bench --pattern read --verify --count 8192 --size 32M --seed 7
e2e_stop "$D"
daemon file
timeout 30 "$VHU" watch "$T/v" --timeout 10 >"$T/watch.out" 2>&1 &
W=$!
for _ in $(seq 50); do grep -q "waiting for config changes" "$T/watch.out" && break; sleep 0.1; done
truncate -s 48M "$T/disk.img"
out=$(ctl refresh)
check "refresh: the export's new size from a new connection" grep -q "size: $((48 * MiB))" <<<"$out"
wait "$W"; rc=$?
check "refresh: the front-end gets CONFIG_CHANGE_MSG with the new capacity" \
	bash -c '[ "$1" -eq 0 ] && grep -q "config change: capacity $((48 * 2048)) sectors" "$2"' _ "$rc" "$T/watch.out"
check "refresh: ctl info shows it" bash -c 'ctl_out=$("$1" ctl "$2" info); grep -q "^size: $3" <<<"$ctl_out"' \
	_ "$VHU" "$T/ctl" $((48 * MiB))
check "refresh: I/O past the old end" bench --pattern randwrite --verify --count 2000
e2e_stop "$D"
e2e_stop "$NK"

# --- a busy queue turns kicks off (worker.c, quiet_wait) ---
# A server that answers reads after 1 ms: at depth 32 a completion always
# comes soon, so the queue pops what the driver adds when it wakes for one
# and the driver need not kick (about 0.45 kicks per request otherwise).
# Below 8 requests out, kicks stay on: a new request is not held.
kicks_per_req() { sed -n 's/^kicks: [0-9]* (\([0-9.]*\) per request)$/\1/p' "$T/bench.out"; }
below() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$@"; }
nbdkit_start lat --filter=delay memory 64M delay-read=1ms
daemon lat
check "1 ms server, depth 32: reads served" bench --pattern randread --iodepth 32 --time 2
k=$(kicks_per_req)
check "1 ms server, depth 32: fewer than 0.15 kicks per request (${k:-none})" below "${k:-9}" 0.15
check "1 ms server, depth 4: reads served" bench --pattern randread --iodepth 4 --time 2
k=$(kicks_per_req)
check "1 ms server, depth 4: kicks stay on (${k:-none} per request)" below 0.3 "${k:-0}"
e2e_stop "$D"
e2e_stop "$NK"
# A smaller export stops the queues (quiesce) and starts them again while
# they are busy with kicks off; without EVENT_IDX only the device turns
# them back on (used->flags), or the driver would never kick again.
truncate -s 64M "$T/shrink.img"
nbdkit_start shrink --filter=delay file "$T/shrink.img" delay-read=1ms
daemon shrink
"$VHU" bench "$T/v" --pattern randread --size 32M --iodepth 32 --no-event-idx --time 4 \
	--quiet >"$T/bench.shrink" 2>&1 &
B=$!
sleep 1.5
truncate -s 60M "$T/shrink.img"
out=$(ctl refresh)
wait "$B"; rc=$?
check "export shrunk under load, no EVENT_IDX: refresh sees it" grep -q "^size: $((60 * MiB))" <<<"$out"
check "export shrunk under load, no EVENT_IDX: the load goes on to its end" \
	bash -c '[ "$1" -eq 0 ] && grep -q "errors: 0$" "$2"' _ "$rc" "$T/bench.shrink"
e2e_stop "$D"
e2e_stop "$NK"

# --- refresh while the server takes connections but never answers ---
# (a server busy with its one client looks the same): the size query's
# connection is bounded in time, the control socket stays usable.
hang_start() {
	rm -f "$1"
	python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(16); time.sleep(120)' "$1" &
	HS=$!; PIDS+=("$HS")
	wait_for "$1"
}
nbdkit_start hang memory 16M
daemon hang
e2e_stop "$NK"
hang_start "$T/hang.sock"
start=$SECONDS
(sleep 1; ctl info >"$T/info.hang"; echo $? >"$T/info.rc") &
I=$!
out=$(ctl refresh); rc=$?
took=$((SECONDS - start))
wait "$I"
check "refresh, server silent: an error, within a few seconds" \
	bash -c '[ "$1" -lt 12 ] && grep -qi "refresh failed: .*timed out" <<<"$2"' _ "$took" "$out"
check "refresh, server silent: ctl info still answers" \
	bash -c '[ "$(cat "$1/info.rc")" = 0 ] && grep -q "^backend: nbd" "$1/info.hang"' _ "$T"
check "refresh, server silent: the reason is logged" grep -q "no answer to the handshake" "$T/log.hang"
e2e_stop "$D"
err=$(timeout 20 "$BIN" --blk-file "$(uri hang)" --socket-path "$T/v5" 2>&1); rc=$?
check "start, server silent: exits with the reason" \
	bash -c '[ "$1" -ne 0 ] && [ "$1" -ne 124 ] && grep -q "cannot connect to .*no answer to the handshake" <<<"$2"' _ "$rc" "$err"
e2e_stop "$HS"

# --- the server killed and restarted under verified I/O ---
truncate -s 32M "$T/disk2.img"
nbdkit_start slow --filter=delay file "$T/disk2.img" delay-write=5ms delay-read=5ms
daemon slow --num-queues 2
"$VHU" bench "$T/v" --pattern write --verify --count 16384 --size 32M --seed 9 \
	--queues 2 --quiet >"$T/bench.kill" 2>&1 &
B=$!
sleep 1.5
kill -KILL "$NK"; wait "$NK" 2>/dev/null
sleep 0.5
state=$(ctl info | sed -n 's/^backend_state: //p')
check "server gone: state reconnecting" test "$state" = reconnecting
sleep 1.5
nbdkit_start slow --filter=delay file "$T/disk2.img" delay-write=5ms delay-read=5ms
wait "$B"; rc=$?
check "server restarted under I/O: the writes complete" test $rc -eq 0
check "server restarted under I/O: no error seen" grep -q "errors: 0$" "$T/bench.kill"
check "server restarted under I/O: every block reads back" \
	bench --pattern read --verify --count 16384 --size 32M --seed 9 --queues 2
check "server restarted under I/O: no mismatch" errors0
check "server restarted: state connected" bash -c 'ctl_out=$("$1" ctl "$2" info); grep -q "^backend_state: connected" <<<"$ctl_out"' _ "$VHU" "$T/ctl"
check "the loss and the reconnection are logged" \
	bash -c 'grep -q "connection to .* lost" "$1" && grep -q "reconnected" "$1"' _ "$T/log.slow"
# Write-back writes acknowledged and never flushed died with the server:
# the next FLUSH fails (tests/unit/test-blk-nbd.c sends one).
check "server killed with unflushed writes: the next FLUSH is to fail (logged)" \
	grep -q "not flushed when the connection went: the next FLUSH fails" "$T/log.slow"
e2e_stop "$D"
e2e_stop "$NK"
# --nbd-persistent-cache: the operator says the server's cache survives
# it; the same loss (writes, then the server killed while the queue
# runs: --hold keeps it started) fails no FLUSH.
nbdkit_start pc memory 16M
daemon pc --nbd-persistent-cache
"$VHU" bench "$T/v" --quiet --pattern randwrite --count 512 --hold 4 >"$T/bench.pc" 2>&1 &
B=$!
sleep 1.5
check "--nbd-persistent-cache: the queue still runs when the server dies" kill -0 "$B"
kill -KILL "$NK"; wait "$NK" 2>/dev/null
nbdkit_start pc memory 16M
wait "$B"
check "--nbd-persistent-cache: the writes succeeded" grep -q "errors: 0$" "$T/bench.pc"
check "--nbd-persistent-cache: logged at start" grep -q "cache is persistent" "$T/log.pc"
check "--nbd-persistent-cache: the loss is seen, no FLUSH is to fail" \
	bash -c 'grep -q "connection to .* lost" "$1" && ! grep -q "next FLUSH fails" "$1"' _ "$T/log.pc"
e2e_stop "$D"
e2e_stop "$NK"

# --- no server beyond --reconnect-timeout: IOERR, then back ---
nbdkit_start mem2 memory 16M
daemon mem2 --reconnect-timeout 2
e2e_stop "$NK"
start=$SECONDS
bench --pattern randread --count 64 --iodepth 4
check "beyond --reconnect-timeout: requests fail (IOERR)" grep -q "errors: [1-9]" "$T/bench.out"
check "beyond --reconnect-timeout: within a few seconds" test $((SECONDS - start)) -lt 9
state=$(ctl info | sed -n 's/^backend_state: //p')
check "beyond --reconnect-timeout: state failed" test "$state" = failed
nbdkit_start mem2 memory 16M
sleep 2.5
check "server back after the timeout: I/O works again" bench --pattern randrw --verify --count 2000
check "server back after the timeout: no errors" errors0
e2e_stop "$D"
e2e_stop "$NK"

# --- server errors: IOERR, no reconnection ---
nbdkit_start err --filter=error memory 16M error=EIO error-pread-rate=100%
daemon err
bench --pattern randread --count 64 --iodepth 4
check "server EIO on reads: requests fail" grep -q "errors: 64$" "$T/bench.out"
bench --pattern randwrite --count 64 --iodepth 4
check "server EIO on reads: writes still work" grep -q "errors: 0$" "$T/bench.out"
check "server errors do not look like a lost connection" \
	bash -c '! grep -q "lost" "$1"' _ "$T/log.err"
e2e_stop "$D"
e2e_stop "$NK"

# --- error replies on a live connection: bounded, IOERR, the connection stays ---
# A server answering ESHUTDOWN (it is shutting down) once had each request
# sent again at once on the same connection, forever: a read never
# completed and the queue burned a CPU.  While $T/inject exists the
# filter fails every read; without it the same server serves them.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
touch "$T/inject"
nbdkit_start shut --filter=error memory 16M error=ESHUTDOWN error-pread-rate=100% \
	error-pread-file="$T/inject"
daemon shut --num-queues 2
cpu0=$(cpu_ticks "$D")
start=$SECONDS
timeout 30 "$VHU" bench "$T/v" --quiet --pattern randread --count 16 --iodepth 8 \
	--queues 2 >"$T/bench.out" 2>&1
took=$((SECONDS - start))
cpu1=$(cpu_ticks "$D")
check "server ESHUTDOWN on reads: every read fails (IOERR) within a few seconds (${took}s)" \
	bash -c 'grep -q "errors: 16$" "$1" && [ "$2" -lt 10 ]' _ "$T/bench.out" "$took"
check "server ESHUTDOWN on reads: the daemon's CPU stays low ($((cpu1 - cpu0)) ticks)" \
	test $((cpu1 - cpu0)) -lt 100
check "server ESHUTDOWN on reads: each read sent 4 times (3 retries), no more" \
	test "$(grep -c "injecting ESHUTDOWN" "$T/log.nbdkit")" -eq 64
check "server ESHUTDOWN on reads: the retries are logged" \
	grep -q "answered .* on a live connection" "$T/log.shut"
bench --pattern randwrite --count 256 --queues 2
check "server ESHUTDOWN on reads: writes go on meanwhile" errors0
check "server ESHUTDOWN on a live connection is not a lost connection" \
	bash -c '! grep -q "lost" "$1"' _ "$T/log.shut"
rm -f "$T/inject"
check "server ESHUTDOWN no longer: the same connections serve reads" \
	bench --pattern randrw --verify --count 2000 --queues 2
check "server ESHUTDOWN no longer: no errors" errors0
e2e_stop "$D"
e2e_stop "$NK"

# --- a server without multi-conn: one queue only ---
nbdkit_start single --filter=multi-conn memory 16M multi-conn-mode=disable
err=$(timeout 10 "$BIN" --blk-file "$(uri single)" --socket-path "$T/v2" --num-queues 2 2>&1)
check "no multi-conn: several queues refused, with the reason" \
	grep -q "num-queues 1" <<<"$err"
daemon single
check "no multi-conn: one queue serves verified I/O" bench --pattern randrw --verify --time 1
e2e_stop "$D"
e2e_stop "$NK"

# --- qemu-nbd (-e 4: multi-conn); a read-only export ---
truncate -s 64M "$T/q.img"
rm -f "$T/q.sock"
qemu-nbd -f raw -k "$T/q.sock" -t -e 4 "$T/q.img" 2>>"$T/log.qemu-nbd" &
Q=$!; PIDS+=("$Q")
wait_for "$T/q.sock"
daemon q --num-queues 2
check "qemu-nbd: verified I/O, 2 queues" bench --pattern randrw --verify --time 2 --queues 2
check "qemu-nbd: no errors" errors0
check "qemu-nbd: vhu check passes" \
	bash -c 'timeout 120 "$1" check "$2" >"$3/check.out" 2>&1' _ "$VHU" "$T/v" "$T"
e2e_stop "$D"
e2e_stop "$Q"
rm -f "$T/q.sock"
qemu-nbd -f raw -k "$T/q.sock" -t -r "$T/q.img" 2>>"$T/log.qemu-nbd" &
Q=$!; PIDS+=("$Q")
wait_for "$T/q.sock"
daemon q
check "read-only export: served read-only" \
	bash -c 'ctl_out=$("$1" ctl "$2" info); grep -q "^read_only: true" <<<"$ctl_out"' _ "$VHU" "$T/ctl"
e2e_stop "$D"
e2e_stop "$Q"

# --- TCP: nbd://HOST:PORT/ ---
port=$((20000 + RANDOM % 20000))
nbdkit -f -i 127.0.0.1 -p "$port" memory 16M 2>>"$T/log.nbdkit" &
NK=$!; PIDS+=("$NK")
for _ in $(seq 50); do nbdinfo --size "nbd://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
rm -f "$T/v"
e2e_daemon "$T/log.tcp" --blk-file "nbd://127.0.0.1:$port/" --socket-path "$T/v"
wait_for "$T/v"
check "TCP export (nbd://127.0.0.1:$port/): verified I/O" bench --pattern randrw --verify --time 1
check "TCP export: no errors" errors0
e2e_stop "$D"
e2e_stop "$NK"

# --- a host name that takes long to resolve: bounded ---
# nbd://HOST resolves HOST with getaddrinfo(), which waits as long as the
# resolver does (here a DNS server that never answers, 20 s a query): it
# once held the control thread (start, refresh) and a reconnecting
# queue's thread that long.  The daemon runs in a mount namespace of its
# own whose /etc/hosts and /etc/resolv.conf are ours.
if command -v unshare >/dev/null && [ "$(id -u)" = 0 ] &&
	unshare -m true 2>/dev/null; then
	dns=127.0.$((RANDOM % 200 + 2)).$((RANDOM % 200 + 2))
	rm -f "$T/dns.up"
	/usr/bin/python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 53))
open(sys.argv[2], "w").close(); time.sleep(300)' "$dns" "$T/dns.up" &
	DNS=$!; PIDS+=("$DNS")
	for _ in $(seq 50); do [ -e "$T/dns.up" ] && break; sleep 0.1; done
	printf 'nameserver %s\noptions timeout:20 attempts:1\n' "$dns" >"$T/resolv.conf"
	echo "127.0.0.1 nbd-test-host" >"$T/hosts"
	# NS COMMAND...: COMMAND in its own mount namespace (same pid).
	NS=(unshare -m sh -c 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@"'
		_ "$T/hosts" "$T/resolv.conf")
	port=$((20000 + RANDOM % 20000))
	nbdkit -f -i 127.0.0.1 -p "$port" memory 16M 2>>"$T/log.nbdkit" &
	NK=$!; PIDS+=("$NK")
	for _ in $(seq 50); do nbdinfo --size "nbd://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
	rm -f "$T/v" "$T/ctl"
	"${NS[@]}" "$BIN" --blk-file "nbd://nbd-test-host:$port/" --socket-path "$T/v" --control "$T/ctl" \
		--reconnect-timeout 2 2>"$T/log.dns" &
	D=$!; PIDS+=("$D")
	wait_for "$T/v"
	check "host name from /etc/hosts: verified I/O" bench --pattern randrw --verify --count 500
	: >"$T/hosts"   # from now on the name goes to the silent DNS server
	start=$SECONDS
	(sleep 1; ctl info >"$T/info.dns"; echo $? >"$T/info.rc") &
	I=$!
	out=$(ctl refresh)
	took=$((SECONDS - start))
	wait "$I"
	check "refresh, name resolution hangs: an error within a few seconds (${took}s)" \
		bash -c '[ "$1" -lt 10 ] && grep -qi "refresh failed: .*timed out" <<<"$2"' _ "$took" "$out"
	check "refresh, name resolution hangs: the reason is logged" \
		grep -q "did not resolve in 5 s" "$T/log.dns"
	check "refresh, name resolution hangs: ctl info still answers" \
		bash -c '[ "$(cat "$1/info.rc")" = 0 ] && grep -q "^backend: nbd" "$1/info.dns"' _ "$T"
	e2e_stop "$NK"
	start=$SECONDS
	bench --pattern randread --count 16 --iodepth 4
	took=$((SECONDS - start))
	check "server gone, name resolution hangs: requests fail after --reconnect-timeout (${took}s)" \
		bash -c 'grep -q "errors: 16$" "$1" && [ "$2" -lt 10 ]' _ "$T/bench.out" "$took"
	echo "127.0.0.1 nbd-test-host" >"$T/hosts"
	nbdkit -f -i 127.0.0.1 -p "$port" memory 16M 2>>"$T/log.nbdkit" &
	NK=$!; PIDS+=("$NK")
	for _ in $(seq 50); do nbdinfo --size "nbd://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
	ok=1
	for _ in $(seq 15); do
		bench --pattern randrw --verify --count 200 && errors0 && { ok=0; break; }
		sleep 1
	done
	check "name resolves again, server back: verified I/O" test $ok = 0
	e2e_stop "$D"
	e2e_stop "$NK"
	: >"$T/hosts"
	start=$SECONDS
	err=$(timeout 40 "${NS[@]}" "$BIN" --blk-file "nbd://nbd-test-host:$port/" --socket-path "$T/v6" 2>&1); rc=$?
	took=$((SECONDS - start))
	check "start, name resolution hangs: exits with the reason within a few seconds (${took}s)" \
		bash -c '[ "$1" -ne 0 ] && [ "$1" -ne 124 ] && [ "$2" -lt 10 ] && grep -q "cannot connect to .*did not resolve" <<<"$3"' \
		_ "$rc" "$took" "$err"
	e2e_stop "$DNS"
else
	skip "a host name that takes long to resolve" "needs root and unshare -m"
fi

# --- a server that holds the connection and does not answer: a queue stop
# gives up after 5 s (IOERR), and the daemon serves again once it is back ---
nbdkit_start silent memory 16M
daemon silent
"$VHU" bench "$T/v" --quiet --pattern randread --time 50 >/dev/null 2>&1 &
SB=$!
sleep 1
kill -STOP "$NK"
sleep 0.5
kill -9 "$SB"; wait "$SB" 2>/dev/null
check "silent server: the queue stop gives up within 15 s" \
	bash -c 'for _ in $(seq 150); do grep -q "queue stops: .* unanswered by .* after 5 s failed" "$1" && exit 0; sleep 0.1; done; exit 1' _ "$T/log.silent"
check "silent server: ctl info answers" bash -c 'ctl_out=$(timeout 5 "$1" ctl "$2" info) && grep -q "^backend: nbd" <<<"$ctl_out"' _ "$VHU" "$T/ctl"
kill -CONT "$NK"
# nbdkit (Debian 12's) now and then aborts on resuming when connections
# were closed under it while it was stopped; then a new one is the server
# that is back (the check below is about vhu-blk serving again).
sleep 0.5
if ! kill -0 "$NK" 2>/dev/null; then
	echo "# nbdkit died on resuming; starting it again"
	nbdkit_start silent memory 16M
fi
check "silent server back: verified I/O on a new session" bench --pattern randrw --verify --time 1
check "silent server back: no errors" errors0
e2e_stop "$D"
e2e_stop "$NK"

# --- TLS (nbds+unix://, a pre-shared key): verified I/O; plain refused ---
psktool -u vhu -p "$T/keys.psk" >/dev/null 2>&1
nbdkit_start tls --tls=require --tls-psk="$T/keys.psk" memory 16M
tls_uri="nbds+unix://vhu@/?socket=$T/tls.sock&tls-psk-file=$T/keys.psk"
rm -f "$T/v" "$T/ctl"
e2e_daemon "$T/log.tls" --blk-file "$tls_uri" --socket-path "$T/v" --control "$T/ctl" --num-queues 2
wait_for "$T/v"
check "TLS export (nbds+unix://, PSK): verified I/O, 2 queues" \
	bench --pattern randrw --verify --time 1 --queues 2
check "TLS export: no errors" errors0
# A write's payload that TLS sends in pieces while both directions are
# watched: vhu check's dirty-log cases stalled on it.
check "TLS export: vhu check passes" \
	bash -c 'timeout 120 "$1" check "$2" >"$3/check-tls.out" 2>&1' _ "$VHU" "$T/v" "$T"
e2e_stop "$D"
err=$(timeout 10 "$BIN" --blk-file "$(uri tls)" --socket-path "$T/v4" 2>&1); rc=$?
check "TLS required, plain nbd+unix:// asked: exits with the reason" \
	bash -c '[ "$1" -ne 0 ] && [ "$1" -ne 124 ] && grep -q "cannot connect to .*requires TLS" <<<"$2"' _ "$rc" "$err"
err=$(timeout 10 "$BIN" --blk-file "nbds+unix://vhu@/?socket=$T/tls.sock&tls-psk-file=$T/none.psk" \
	--socket-path "$T/v4" 2>&1); rc=$?
check "TLS with a missing key file: exits with the reason" \
	bash -c '[ "$1" -ne 0 ] && [ "$1" -ne 124 ] && grep -q "cannot connect to .*none.psk" <<<"$2"' _ "$rc" "$err"
e2e_stop "$NK"

# --- no server at all: a clear error ---
err=$(timeout 10 "$BIN" --blk-file "nbd+unix:///?socket=$T/none.sock" --socket-path "$T/v3" 2>&1)
check "no server: exits with the reason" grep -q "cannot connect to" <<<"$err"

finish
