#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk under systemd: the installed units (`meson install`) pass
# `systemd-analyze verify`, and the service's command line, run as systemd
# runs it (EnvironmentFile, %i, NOTIFY_SOCKET; with the .socket unit also
# LISTEN_FDS/LISTEN_PID and the socket as fd 3), reports READY=1 only once
# its socket listens, STOPPING=1 on SIGTERM, and serves a front-end.
# Usage: tests/e2e/test-blk-systemd.sh BUILD_DIR    (prints TAP)
set -u
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

BUILD=${1:-build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd)
BIN=$BUILD/tools/vhu-blk
VHU=$BUILD/tools/vhu
{ [ -x "$BIN" ] && [ -x "$VHU" ]; } || skip_all "$BIN or $VHU not built"
command -v python3 >/dev/null || skip_all "python3 missing"

T=$(e2e_tmpdir vhu-blk-systemd)
PID=""
cleanup() { e2e_stop "$PID"; rm -rf "$T"; }
trap cleanup EXIT
# sat 'SHELL CONDITION': for check, when the condition has && or ||.
sat() { eval "$1"; }

# --- installed units ---
if ! out=$(meson install -C "$BUILD" --no-rebuild --destdir "$T/dest" 2>&1); then
	notok "meson install --destdir" "$(tail -n 5 <<<"$out")"
	finish
fi
svc=$(find "$T/dest" -name 'vhu-blk@.service' | head -1)
sock=$(find "$T/dest" -name 'vhu-blk@.socket' | head -1)
check "vhu-blk@.service and vhu-blk@.socket are installed" sat '[ -f "$svc" ] && [ -f "$sock" ]'
check "... in the same unit directory" [ "$(dirname "$svc")" = "$(dirname "$sock")" ]
check "the sysusers.d entry for user vhu is installed" \
	grep -q '^u vhu ' "$(find "$T/dest" -path '*sysusers.d/vhu.conf' | head -1)"
check "an example configuration is installed" \
	[ -n "$(find "$T/dest" -name vhu-blk.conf.example)" ]
{ [ -f "$svc" ] && [ -f "$sock" ]; } || finish

execstart=$(sed -n 's/^ExecStart=//p' "$svc")
envfile=$(sed -n 's/^EnvironmentFile=//p' "$svc")
check "the service is Type=notify" grep -qx 'Type=notify' "$svc"
check "the service runs as user vhu with NoNewPrivileges and ProtectSystem=strict" \
	sat 'grep -qx User=vhu "$svc" && grep -qx NoNewPrivileges=yes "$svc" &&
	     grep -qx ProtectSystem=strict "$svc"'
check "its configuration is the instance's EnvironmentFile" \
	[ "${envfile##*/}" = "%i.conf" ]
check "the socket unit listens where the service's --socket-path says" \
	sat '[ "$(sed -n "s/^ListenStream=//p" "$sock")" = "/run/vhu-blk/%i.sock" ] &&
	     grep -q -- "--socket-path /run/vhu-blk/%i.sock" <<<"$execstart"'

# systemd-analyze verify: the units as installed, the binary path pointed
# at this build (the installed prefix need not exist on this host).
if command -v systemd-analyze >/dev/null; then
	mkdir -p "$T/units"
	bin_installed=${execstart%% *}
	for u in "$svc" "$sock"; do
		n=$(basename "$u"); n=${n/@./@t1.}
		sed "s|$bin_installed|$BIN|" "$u" >"$T/units/$n"
	done
	out=$(cd "$T/units" && systemd-analyze verify --man=no \
		./vhu-blk@t1.service ./vhu-blk@t1.socket 2>&1); rc=$?
	[ -n "$out" ] && echo "$out" | head -5 | sed 's/^/# /'
	check "systemd-analyze verify passes, without warnings" sat '[ $rc = 0 ] && [ -z "$out" ]'
	# A unit with a mistake in it is caught: the check can fail.
	sed 's/^Type=notify/Type=notifyy/' "$T/units/vhu-blk@t1.service" >"$T/units/vhu-blk@t2.service"
	out=$(cd "$T/units" && systemd-analyze verify --man=no ./vhu-blk@t2.service 2>&1)
	check "systemd-analyze verify catches a broken unit" grep -q "notifyy" <<<"$out"
else
	skip "systemd-analyze verify" "systemd-analyze not installed"
fi

# --- the service's command line, as systemd runs it ---
# launch.py UNIT_EXECSTART ENVFILE INSTANCE RUNDIR [--activate]: expand the
# command line (%i, ${VAR} one word, $VAR split), listen on RUNDIR/INST.sock
# and pass it as fd 3 with LISTEN_FDS/LISTEN_PID when --activate, bind a
# notify socket, run it; print each notification as it arrives with what
# is true of the socket at that moment.  SIGTERM after READY=1 when
# STOP=1 is in the environment.
cat >"$T/launch.py" <<'PY'
import os, shlex, signal, socket, stat, sys, time
execstart, envfile, inst, rundir, binpath = sys.argv[1:6]
activate = "--activate" in sys.argv[6:]
env = {}
for line in open(envfile):
    line = line.strip()
    if line and not line.startswith("#") and "=" in line:
        k, v = line.split("=", 1)
        env[k] = " ".join(shlex.split(v))
argv = []
for w in execstart.replace("%i", inst).replace("/run/vhu-blk", rundir).split():
    if w.startswith("${") and w.endswith("}"):
        argv.append(env.get(w[2:-1], ""))
    elif w.startswith("$"):
        argv += env.get(w[1:], "").split()
    else:
        argv.append(w)
argv[0] = binpath
path = os.path.join(rundir, inst + ".sock")
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ns.bind(os.path.join(rundir, "notify"))
ns.settimeout(10)
lfd = None
if activate:
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    os.chmod(path, 0o660)
    ls.listen(16)
    lfd = ls.fileno()
pid = os.fork()
if pid == 0:
    e = dict(os.environ, NOTIFY_SOCKET=os.path.join(rundir, "notify"))
    if activate:
        os.dup2(lfd, 3)
        e["LISTEN_FDS"] = "1"
        e["LISTEN_PID"] = str(os.getpid())
    os.execve(argv[0], argv, e)
print("PID", pid, flush=True)
def state():
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.connect(path)
        ok = "listening"
    except OSError as ex:
        ok = "refused:" + ex.__class__.__name__
    c.close()
    ctl = " ctl" if os.path.exists(os.path.join(rundir, inst + ".ctl")) else ""
    return "%s %o %s%s" % ("socket" if stat.S_ISSOCK(st.st_mode) else "other",
                           st.st_mode & 0o777, ok, ctl)
ns.settimeout(0.2)
deadline = time.time() + 20
status = None
while time.time() < deadline:
    try:
        msg = ns.recv(4096).decode()
    except socket.timeout:
        # Gone without (more) notifications?
        p, st = os.waitpid(pid, os.WNOHANG)
        if p:
            status = st
            break
        continue
    print("NOTIFY", msg.replace("\n", " "), "|", state(), flush=True)
    if "READY=1" in msg and os.environ.get("STOP") == "1":
        os.kill(pid, signal.SIGTERM)
    if "STOPPING=1" in msg:
        break
if status is None:
    _, status = os.waitpid(pid, 0)
print("EXIT", os.waitstatus_to_exitcode(status), flush=True)
PY

mkdir -p "$T/run" "$T/etc"
truncate -s 64M "$T/img"
cat >"$T/etc/t1.conf" <<EOF
# as the example: the image and more options
VHU_BLK_IMAGE=$T/img
VHU_BLK_OPTIONS="--socket-mode 0660 --num-queues 2"
EOF

# Plain service: vhu-blk makes the socket; READY=1 comes after it listens.
STOP=1 timeout 30 python3 "$T/launch.py" "$execstart" "$T/etc/t1.conf" t1 "$T/run" "$BIN" \
	>"$T/plain.out" 2>"$T/plain.err"
ready=$(grep -m1 "^NOTIFY READY=1" "$T/plain.out")
[ -n "$ready" ] || echo "# $(tr '\n' ';' <"$T/plain.out") $(tail -3 "$T/plain.err" | tr '\n' ';')"
check "plain service: READY=1 arrives" [ -n "$ready" ]
check "... only once the socket exists (0660, from VHU_BLK_OPTIONS) and listens, control socket up" \
	[ "${ready#*| }" = "socket 660 listening ctl" ]
check "plain service: STOPPING=1 on SIGTERM" grep -q "^NOTIFY STOPPING=1" "$T/plain.out"
check "plain service: exit 0" grep -qx "EXIT 0" "$T/plain.out"
check "plain service: it removed its sockets" sat '[ ! -e "$T/run/t1.sock" ] && [ ! -e "$T/run/t1.ctl" ]'

# Socket activation: the socket as fd 3; a front-end is served on it.
rm -f "$T/run/notify"
timeout 60 python3 "$T/launch.py" "$execstart" "$T/etc/t1.conf" t1 "$T/run" "$BIN" --activate \
	>"$T/act.out" 2>"$T/act.err" &
LPID=$!
for _ in $(seq 50); do grep -q "^NOTIFY READY=1" "$T/act.out" && break; sleep 0.1; done
PID=$(sed -n 's/^PID //p' "$T/act.out")
echo "# $(tr '\n' ';' <"$T/act.out")"
check "activated: READY=1 arrives" grep -q "^NOTIFY READY=1 | socket 660 listening ctl" "$T/act.out"
e2e_probe "$VHU" "$T/run/t1.sock" " (activated: served on the systemd socket)"
ctl_ok() { timeout 10 "$VHU" ctl "$T/run/t1.ctl" info >/dev/null 2>&1; }
check "activated: the control socket answers" ctl_ok
kill -TERM "$PID" 2>/dev/null
wait "$LPID"
PID=""
check "activated: STOPPING=1 on SIGTERM" grep -q "^NOTIFY STOPPING=1" "$T/act.out"
check "activated: exit 0" grep -qx "EXIT 0" "$T/act.out"
check "activated: the socket systemd made is left in place" [ -S "$T/run/t1.sock" ]
rm -f "$T/run/t1.sock" "$T/run/notify"

# The systemd socket must be the one --socket-path names.
timeout 30 python3 "$T/launch.py" "${execstart/--socket-path \/run\/vhu-blk\/%i.sock/--socket-path /elsewhere.sock}" \
	"$T/etc/t1.conf" t1 "$T/run" "$BIN" --activate >"$T/bad.out" 2>"$T/bad.err"
check "activated with another --socket-path: refused, exit 1" \
	sat 'grep -qx "EXIT 1" "$T/bad.out" && grep -q "not bound to --socket-path ./elsewhere.sock." "$T/bad.err"'
if grep -q "READY=1" "$T/bad.out"; then notok "... and READY=1 never sent"; else ok "... and READY=1 never sent"; fi

finish
