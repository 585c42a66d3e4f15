#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk's sockets as an operator sets their rights: --socket-mode,
# --socket-user, --socket-group (and --control-*), checked by connecting
# as other users (setpriv); the socket appears with its final rights and
# already listening (renamed into place, never created wider); a stale
# socket is replaced, and on exit only our own socket is removed.
# Usage: tests/e2e/test-blk-sockets.sh BUILD_DIR    (prints TAP)
set -u
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

BUILD=${1:-build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd)
BIN=$BUILD/tools/vhu-blk
[ -x "$BIN" ] || skip_all "$BIN not built"
[ "$(id -u)" = 0 ] || skip_all "needs root (sockets owned by other users)"
command -v setpriv >/dev/null || skip_all "setpriv (util-linux) missing"
PY=/usr/bin/python3   # not a per-user shim: other uids run it too
[ -x "$PY" ] || skip_all "$PY missing"

# A directory every uid may traverse.
T=$(mktemp -d /tmp/vhu-blk-sockets.XXXXXX)
chmod 755 "$T"
PID=""
cleanup() { e2e_stop "$PID"; rm -rf "$T"; }
trap cleanup EXIT
truncate -s 64M "$T/img"

# connect_as UID GID SOCKET: connect (and for a control socket, ask
# "info"); prints "ok", "EACCES" or "closed" (accepted, then dropped).
connect_as() {
	setpriv --reuid "$1" --regid "$2" --clear-groups "$PY" - "$3" <<'PY' 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
if sys.argv[1].endswith(".ctl"):
    try:
        s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"info"}\n')
        line = s.makefile().readline()
    except (BrokenPipeError, ConnectionResetError):
        line = ""
    print("ok" if '"result"' in line else "closed")
else:
    print("ok")
PY
}
# start ARGS...: vhu-blk on $T/img, socket $T/s.sock; waits until it serves
start() {
	rm -f "$T/log"
	"$BIN" -b "$T/img" -s "$T/s.sock" "$@" 2>"$T/log" &
	PID=$!
	# "serving" is logged once both sockets listen (a stale socket may
	# already be at the path before).
	for _ in $(seq 50); do grep -qs "serving" "$T/log" && break; sleep 0.1; done
}
stop() { e2e_stop "$PID"; PID=""; }
# sat 'SHELL CONDITION': for check, when the condition has && or ||.
sat() { eval "$1"; }
perms() { stat -c '%a %U:%G' "$1"; }
# rights OPTS SOCKET PERMS NAME [UID:GID ANSWER NAME2]...: vhu-blk started
# with the words of OPTS; $T/SOCKET has PERMS (test NAME), and connect_as
# each UID:GID prints ANSWER (test NAME2); then it stops.
rights() {
	local sock=$T/$2 want=$3
	# shellcheck disable=SC2086
	start $1
	check "$4" [ "$(perms "$sock")" = "$want" ]
	shift 4
	while [ $# -ge 3 ]; do
		check "$3" [ "$(connect_as "${1%:*}" "${1#*:}" "$sock")" = "$2" ]
		shift 3
	done
	stop
}

# --- defaults: 0600, the daemon's user only ---
rights "" s.sock "600 root:root" "default socket mode is 0600 root:root" \
	65534:65534 EACCES "default: another user cannot connect"
check "the socket is removed on exit" [ ! -e "$T/s.sock" ]

# --- --socket-group: 0660 and that group may connect ---
rights "--socket-group nogroup" s.sock "660 root:nogroup" \
	"--socket-group: mode 0660 root:nogroup" \
	65534:65534 ok "--socket-group: a member of the group connects" \
	12345:12345 EACCES "--socket-group: a user outside it cannot"

# --- --socket-user and --socket-mode ---
rights "--socket-user nobody --socket-mode 0600" s.sock "600 nobody:root" \
	"--socket-user nobody: owned by nobody, 0600" \
	65534:12345 ok "--socket-user: that user connects" \
	12345:12345 EACCES "--socket-user: another user cannot"
rights "--socket-mode 666" s.sock "666 root:root" "--socket-mode 666: mode 0666" \
	12345:12345 ok "--socket-mode 666: uid 12345 connects"
rights "--socket-group 65534 --socket-mode 0640" s.sock "640 root:nogroup" \
	"numeric group, explicit mode 0640 (group cannot connect: no w)" \
	65534:65534 EACCES "mode 0640: the group is refused"

# --- bad values are refused before anything is created ---
for bad in "--socket-mode 0888" "--socket-mode 1777" "--socket-mode rw" \
	   "--socket-group no-such-group-vhu" "--socket-user no-such-user-vhu" \
	   "--control-mode 8"; do
	# shellcheck disable=SC2086
	"$BIN" -b "$T/img" -s "$T/s.sock" $bad 2>"$T/log"; rc=$?
	check "refused: $bad (exit 1, nothing created)" \
		sat '[ $rc = 1 ] && [ ! -e "$T/s.sock" ] && grep -q "error: --" "$T/log"'
done
exec 7<>/dev/null
"$BIN" -b "$T/img" --fd 7 --socket-mode 0660 2>"$T/log"; rc=$?
check "--socket-mode with --fd is refused" \
	sat '[ $rc = 1 ] && grep -q "apply to --socket-path, not --fd" "$T/log"'
exec 7>&-

# --- atomic: the name appears by rename, with its final rights ---
# An inotify watch on the directory logs every event for the socket's
# name and the file's rights when it is seen; with a create-then-chmod
# the first event would be IN_CREATE, here it must be IN_MOVED_TO.
"$PY" - "$T" s.sock >"$T/events" 2>&1 <<'PY' &
import ctypes, os, struct, sys, time, select
libc = ctypes.CDLL(None, use_errno=True)
IN_CREATE, IN_ATTRIB, IN_MOVED_TO = 0x100, 0x4, 0x80
fd = libc.inotify_init1(os.O_NONBLOCK)
libc.inotify_add_watch(fd, sys.argv[1].encode(), IN_CREATE | IN_ATTRIB | IN_MOVED_TO)
open(os.path.join(sys.argv[1], "watching"), "w").close()
end = time.time() + 8
while time.time() < end:
    select.select([fd], [], [], 0.2)
    try:
        buf = os.read(fd, 65536)
    except BlockingIOError:
        continue
    i = 0
    while i < len(buf):
        wd, mask, cookie, ln = struct.unpack_from("iIII", buf, i)
        name = buf[i + 16:i + 16 + ln].rstrip(b"\0").decode()
        i += 16 + ln
        if name.startswith(".vhu-blk-"):
            print("TMPDIR", hex(mask), flush=True)
        if name != sys.argv[2]:
            continue
        kind = {IN_CREATE: "CREATE", IN_ATTRIB: "ATTRIB", IN_MOVED_TO: "MOVED_TO"}.get(mask, hex(mask))
        try:
            st = os.lstat(os.path.join(sys.argv[1], name))
            print(kind, oct(st.st_mode & 0o777), st.st_gid, flush=True)
        except FileNotFoundError:
            print(kind, "gone", flush=True)
        if kind == "MOVED_TO":
            sys.exit(0)
PY
WPID=$!
for _ in $(seq 50); do [ -e "$T/watching" ] && break; sleep 0.1; done
start --socket-group nogroup
wait "$WPID"
first=$(grep -v TMPDIR "$T/events" | head -1)
echo "# events: $(tr '\n' ';' <"$T/events")"
check "the socket's name first appears by rename (no create in place)" \
	[ "${first%% *}" = MOVED_TO ]
check "... already 0660 root:nogroup when it appears" [ "$first" = "MOVED_TO 0o660 65534" ]
check "the private directory was used and is gone" \
	sat 'grep -q TMPDIR "$T/events" && ! ls -d "$T"/.vhu-blk-* 2>/dev/null'
check "a client connects at once (it listens before the rename)" \
	[ "$(connect_as 65534 65534 "$T/s.sock")" = ok ]

# --- on exit only our own socket is removed ---
"$PY" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/other.sock"
mv "$T/other.sock" "$T/s.sock"
stop
check "a socket put in our place is not removed on exit" [ -S "$T/s.sock" ]
# That one is stale (nothing listens): a new vhu-blk replaces it.
start
check "a stale socket is replaced" [ "$(perms "$T/s.sock")" = "600 root:root" ]
check "... and the new one listens" [ "$(connect_as 0 0 "$T/s.sock")" = ok ]
stop
touch "$T/s.sock"
"$BIN" -b "$T/img" -s "$T/s.sock" 2>"$T/log"; rc=$?
check "a non-socket at the path is refused and kept" \
	sat '[ $rc = 1 ] && [ -f "$T/s.sock" ] && grep -q "not a socket" "$T/log"'
rm -f "$T/s.sock"

# --- a file that appears between the check of the path and the move ---
# A preloaded listen() (called after the path was checked and before the
# socket is moved into place) creates a regular file at RACE_FILE, or
# replaces the stale socket there with one: the start is refused and the
# file is kept, whatever the timing.
cat >"$T/race.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
int listen(int fd, int backlog)
{
	int (*real)(int, int) = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
	const char *p = getenv("RACE_FILE");
	if (p) {
		unlink(p);
		int f = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (f >= 0) {
			if (write(f, "precious\n", 9) != 9)
				_exit(99);
			close(f);
		}
	}
	return real(fd, backlog);
}
C
if cc -shared -fPIC -o "$T/race.so" "$T/race.c" -ldl 2>"$T/cc.log"; then
	RACE_FILE="$T/s.sock" LD_PRELOAD="$T/race.so" \
		timeout 20 "$BIN" -b "$T/img" -s "$T/s.sock" 2>"$T/log"; rc=$?
	check "a file created at the path while starting is kept (start refused)" \
		sat '[ $rc = 1 ] && [ -f "$T/s.sock" ] && [ "$(cat "$T/s.sock")" = precious ]'
	check "... and the private directory is gone" sat '! ls -d "$T"/.vhu-blk-* 2>/dev/null'
	rm -f "$T/s.sock"
	"$PY" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/s.sock"
	RACE_FILE="$T/s.sock" LD_PRELOAD="$T/race.so" \
		timeout 20 "$BIN" -b "$T/img" -s "$T/s.sock" 2>"$T/log"; rc=$?
	check "a stale socket replaced by a file while starting: the file is kept" \
		sat '[ $rc = 1 ] && [ -f "$T/s.sock" ] && [ "$(cat "$T/s.sock")" = precious ]'
	rm -f "$T/s.sock"
else
	cat "$T/cc.log" >&2
	check "the preload shim builds" false
fi

# --- the control socket: the same options ---
rights "--control $T/c.ctl" c.ctl "600 root:root" "control socket default 0600 root:root" \
	65534:65534 EACCES "control: another user cannot connect"
rights "--control $T/c.ctl --control-user nobody" c.ctl "600 nobody:root" \
	"--control-user nobody: 0600 nobody:root" \
	65534:12345 ok "--control-user: that user gets answers" \
	12345:12345 EACCES "--control-user: another user cannot connect"
rights "--control $T/c.ctl --control-group nogroup --control-mode 0666" c.ctl \
	"666 root:nogroup" "--control-mode 0666: mode 0666" \
	12345:12345 ok "--control-mode 0666: uid 12345 gets answers"
# The daemon checks the peer against the rights it was given, also when
# the file was made wider afterwards.
start --control "$T/c.ctl" --control-group nogroup
chmod 666 "$T/c.ctl"
check "control: a group member gets answers" \
	[ "$(connect_as 65534 65534 "$T/c.ctl")" = ok ]
check "control: a file made wider still refuses others (peer check)" \
	[ "$(connect_as 12345 12345 "$T/c.ctl")" = closed ]
stop

finish
