#!/bin/bash
# SPDX-License-Identifier: MIT
# The Debian packages, as an operator installs them:
#   - scripts/deb builds libvhu0, libvhu-dev, vhu-blk and vhu from a copy
#     of the tree (the checkout and its build directory are not touched)
#     and lintian reports no error or warning;
#   - `apt-get install ./*.deb` installs them: the library with its soname
#     link, the units, the sysusers entry (user vhu is created), the
#     vhost-user JSON descriptor, the man pages, /var/lib/vhu;
#   - the installed unit's ExecStart, expanded as systemd does it (its
#     EnvironmentFile in /etc/vhu/blk, %i; /run/vhu-blk moved to a scratch
#     directory) and run as user vhu, serves an image in /var/lib/vhu, and
#     the installed `vhu bench --verify` passes against it;
#   - an upgrade to a rebuilt package (a new Debian revision) with apt
#     while `vhu bench --verify` reads from that daemon and a guest (QEMU
#     with reconnect, when QEMU and the test kernel are there) writes and
#     verifies its disk generation after generation on a second instance:
#     the I/O goes on, the daemons are not disturbed (systemd is not PID 1
#     here, so the postinst restarts nothing); then the restart the
#     postinst does under systemd, of both instances (SIGTERM: the old
#     daemon exits 0; the new /usr/bin/vhu-blk from the unit's command
#     line): the guest's I/O pauses and resumes, every pass of it checks
#     out (no error, no lost or torn write) and the guest kernel logs no
#     I/O error; the data vhu bench wrote before reads back verified (vhu
#     bench does not reconnect, so it is not running during the restart);
#   - `apt-get remove` leaves only configuration (an instance's
#     /etc/vhu/blk/NAME.conf), `apt-get purge` nothing.
# Everything it installed is purged at the end (also on failure), and the
# user vhu and /var/lib/vhu are removed when they did not exist before.
# Needs root, apt and the packaging tools (scripts/deps --test); skipped
# when one of the packages is installed already.
# Usage: tests/e2e/test-deb.sh [BUILD_DIR]    (prints TAP)
set -u
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/guest/lib.sh
. "$(dirname "$0")/guest/lib.sh"

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || BUILD=""
PKGS="libvhu0 libvhu-dev vhu-blk vhu vhu-vsock"

[ "$(id -u)" = 0 ] || skip_all "needs root (installs packages)"
for t in apt-get dpkg-buildpackage dh lintian python3 setpriv; do
	command -v "$t" >/dev/null || skip_all "$t missing (scripts/deps --test)"
done
for p in $PKGS; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed\|config-files'; then
		skip_all "package $p is installed already"
	fi
done

T=$(mktemp -d /tmp/vhu-e2e-deb.XXXXXX)
chmod 755 "$T"
INST=e2e-deb-$$
CONF=/etc/vhu/blk/$INST.conf
IMG=/var/lib/vhu/$INST.img
# A second instance, for a guest.
INST2=$INST-vm
CONF2=/etc/vhu/blk/$INST2.conf
IMG2=/var/lib/vhu/$INST2.img
had_user=0; getent passwd vhu >/dev/null && had_user=1
had_group=0; getent group vhu >/dev/null && had_group=1
had_varlib=0; [ -e /var/lib/vhu ] && had_varlib=1
DPID="" DPID2="" BPID=""
export DEBIAN_FRONTEND=noninteractive
cleanup() {
	e2e_cleanup	# QEMU (guest/lib.sh)
	e2e_stop "$BPID"
	e2e_stop "$DPID"
	e2e_stop "$DPID2"
	rm -f "$CONF" "$IMG" "$CONF2" "$IMG2"
	# shellcheck disable=SC2086 # one word per package
	dpkg --purge $PKGS >/dev/null 2>&1
	if [ "$had_user" = 0 ] && getent passwd vhu >/dev/null; then userdel vhu 2>/dev/null; fi
	if [ "$had_group" = 0 ] && getent group vhu >/dev/null; then groupdel vhu 2>/dev/null; fi
	[ "$had_varlib" = 1 ] || rm -rf /var/lib/vhu
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# sat 'SHELL CONDITION': for check, when the condition has && or ||.
sat() { eval "$1"; }
# pkgstatus PACKAGE: dpkg's status word (installed, config-files, or
# not-installed when dpkg does not know it).
pkgstatus() {
	local s
	s=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) || s=not-installed
	echo "${s:-not-installed}"
}
# debs DIR: the four packages' files in DIR (no -dbgsym).
debs() { local p; for p in $PKGS; do echo "$1/${p}_"*.deb; done; }

# --- build ---------------------------------------------------------------
# A copy of the tree: the files git knows (or all but build directories).
mkdir -p "$T/src"
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do
			{ [ -e "$f" ] || [ -L "$f" ]; } || continue
			case "$f" in tests/e2e/cache|tests/e2e/cache/*) continue ;; esac
			printf '%s\0' "$f"
		done | tar --null -T - -cf -) | tar -C "$T/src" -xf -
else
	tar -C "$SRC" --exclude-vcs --exclude='./build*' --exclude='./obj-*' \
		--exclude=./tests/e2e/cache --exclude=./vhu-run --exclude='*.img' -cf - . |
		tar -C "$T/src" -xf -
fi
check "the tree is copied" sat '[ -x "$T/src/scripts/deb" ] && [ -f "$T/src/debian/control" ]'
version=$(dpkg-parsechangelog -l "$T/src/debian/changelog" -S Version)
"$T/src/scripts/deb" -j2 "$T/out1" >"$T/deb1.log" 2>&1
rc=$?
sed -n 's/^\([EW]\): /# lintian \1: /p' "$T/deb1.log" | head -20
echo "# built in ${SECONDS}s"
check_rc "scripts/deb builds the packages $version and lintian passes" $rc \
	"$(tail -n 15 "$T/deb1.log" | tr '\n' ';')"
check "lintian reports no error" sat '! grep -q "^E: " "$T/deb1.log"'
for d in $(debs "$T/out1"); do
	check "built $(basename "$d")" [ -f "$d" ]
	check "... and scripts/deb printed its path" grep -qxF "$d" "$T/deb1.log"
done
[ "$rc" = 0 ] || finish

# --- install ---------------------------------------------------------------
# shellcheck disable=SC2046 # one word per file
out=$(apt-get install -y -q --no-install-recommends $(debs "$T/out1") 2>&1); rc=$?
check_rc "apt-get install ./*.deb" $rc "$(tail -n 5 <<<"$out" | tr '\n' ';')"
for p in $PKGS; do
	check "$p $version is installed" \
		[ "$(dpkg-query -W -f='${Version} ${db:Status-Status}' "$p" 2>/dev/null)" = "$version installed" ]
done
[ "$rc" = 0 ] || finish
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
lib=/usr/lib/$multiarch/libvhu.so.0
check "libvhu.so.0 links to the library, whose SONAME it is" \
	sat '[ -f "$(readlink -f "$lib")" ] && [ "$(readlink "$lib")" != "" ] &&
	     objdump -p "$lib" | grep -qE "SONAME +libvhu\.so\.0$"'
check "libvhu-dev: libvhu.so, libvhu.a, the headers, vhu.pc" \
	sat '[ "$(readlink -f /usr/lib/$multiarch/libvhu.so)" = "$(readlink -f "$lib")" ] &&
	     [ -f /usr/lib/$multiarch/libvhu.a ] && [ -f /usr/include/vhu/backend.h ] &&
	     [ "$(pkg-config --modversion vhu)" = "${version%-*}" ]'
check "the units are in /lib/systemd/system" \
	sat '[ -f "/lib/systemd/system/vhu-blk@.service" ] && [ -f "/lib/systemd/system/vhu-blk@.socket" ]'
check "the sysusers entry is in /usr/lib/sysusers.d" grep -q '^u vhu ' /usr/lib/sysusers.d/vhu.conf
check "the vhost-user descriptor names /usr/bin/vhu-blk" \
	grep -q '"binary": "/usr/bin/vhu-blk"' /usr/share/qemu/vhost-user/50-vhu-blk.json
check "the man pages vhu-blk(1) and vhu(1)" \
	sat '[ -f /usr/share/man/man1/vhu-blk.1.gz ] && [ -f /usr/share/man/man1/vhu.1.gz ]'
check "the example configuration" [ -f /usr/share/doc/vhu-blk/examples/vhu-blk.conf.example ]
check "user and group vhu exist" sat 'getent passwd vhu >/dev/null && getent group vhu >/dev/null'
[ "$had_user" = 0 ] || echo "# user vhu existed before the install"
check "/var/lib/vhu belongs to vhu" [ "$(stat -c %U:%G /var/lib/vhu 2>/dev/null)" = vhu:vhu ]
out=$(/usr/bin/vhu-blk --version 2>&1)
check "/usr/bin/vhu-blk --version: ${version%-*}" grep -q "${version%-*}" <<<"$out"
out=$(/usr/bin/vhu-vsock --version 2>&1)
check "/usr/bin/vhu-vsock --version: ${version%-*}" grep -q "${version%-*}" <<<"$out"
check "vhu-vsock's man page" [ -f /usr/share/man/man1/vhu-vsock.1.gz ]
check "/usr/bin/vhu-blk loads the installed libvhu.so.0" \
	sat 'ldd /usr/bin/vhu-blk | grep -q "libvhu.so.0 => /lib/$multiarch/libvhu.so.0\|libvhu.so.0 => /usr/lib/$multiarch/libvhu.so.0"'
# The tests run the programs of a build directory: with the package
# installed they still load that build's libvhu (RUNPATH), not /usr/lib's.
if [ -n "$BUILD" ] && [ -x "$BUILD/tools/vhu-blk" ]; then
	got=$(ldd "$BUILD/tools/vhu-blk" | awk '$1 == "libvhu.so.0" { print $3 }')
	check "$BUILD/tools/vhu-blk still loads its own build's libvhu.so.0" \
		[ "$(readlink -f "$got")" = "$(readlink -f "$BUILD/src/libvhu.so.0")" ]
else
	skip "a build directory's vhu-blk loads its own libvhu" "no vhu-blk in '${1:-build}'"
fi

# --- the installed unit's command line ---------------------------------------
unit=/lib/systemd/system/vhu-blk@.service
execstart=$(sed -n 's/^ExecStart=//p' "$unit")
envfile=$(sed -n 's/^EnvironmentFile=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit")
check "the unit reads /etc/vhu/blk/%i.conf and runs /usr/bin/vhu-blk as vhu" \
	sat '[ "$envfile" = "/etc/vhu/blk/%i.conf" ] && [ "${execstart%% *}" = /usr/bin/vhu-blk ] &&
	     [ "$user" = vhu ]'
# The instance's configuration, made from the example as an operator would.
sed "s|^VHU_BLK_IMAGE=.*|VHU_BLK_IMAGE=$IMG|" \
	/usr/share/doc/vhu-blk/examples/vhu-blk.conf.example >"$CONF"
truncate -s 64M "$IMG"
chown vhu:vhu "$IMG"
mkdir -p "$T/run"
chown vhu:vhu "$T/run"
# argv.py EXECSTART ENVFILE INSTANCE RUNDIR: the command line as systemd
# expands it (%i; ${VAR} one word, $VAR split at blanks), NUL-separated.
cat >"$T/argv.py" <<'PY'
import shlex, sys
execstart, envfile, inst, rundir = sys.argv[1:5]
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
sys.stdout.write("\0".join(argv) + "\0")
PY
# start_daemon LOG [INSTANCE]: the unit's command line as user vhu, in the
# background (pid in DPID, or DPID2 for the second instance).
start_daemon() {
	local inst=${2:-$INST} pid
	local -a argv
	mapfile -d '' argv < <(python3 "$T/argv.py" "$execstart" "${envfile/\%i/$inst}" "$inst" "$T/run")
	setpriv --reuid=vhu --regid=vhu --init-groups -- "${argv[@]}" >"$1" 2>&1 &
	pid=$!
	if [ "$inst" = "$INST" ]; then DPID=$pid; else DPID2=$pid; fi
	for _ in $(seq 100); do
		[ -S "$T/run/$inst.sock" ] && [ -S "$T/run/$inst.ctl" ] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
SOCK=$T/run/$INST.sock
start_daemon "$T/daemon1.log"
check "the unit's command line starts vhu-blk (as vhu) on an image in /var/lib/vhu" sat \
	'[ -S "$SOCK" ] && [ "$(stat -c %U /proc/$DPID)" = vhu ]'
[ -S "$SOCK" ] || echo "# $(tail -n 3 "$T/daemon1.log" | tr '\n' ';')"
bench() { timeout 120 /usr/bin/vhu bench "$SOCK" --quiet --bs 4k --size 16M "$@"; }
out=$(bench --pattern write --verify --count 4096 --seed 7 2>&1); rc=$?
check_rc "installed vhu bench --verify: writes over 16 MiB" $rc "$(tr '\n' ';' <<<"$out")"
out=$(bench --pattern read --verify --count 4096 --seed 7 2>&1); rc=$?
check_rc "installed vhu bench --verify: reads them back" $rc "$(tr '\n' ';' <<<"$out")"
check "... every read checked, no mismatch" grep -q "verify: 4096 reads checked, 0 mismatches" <<<"$out"
out=$(timeout 10 /usr/bin/vhu ctl "$T/run/$INST.ctl" info 2>&1)
check "installed vhu ctl info answers" grep -q "$IMG" <<<"$out"

# --- upgrade -------------------------------------------------------------------
new="${version%-*}-$((${version##*-} + 1))"
{
	printf 'vhu (%s) unstable; urgency=medium\n\n  * Rebuild for the upgrade test.\n\n' "$new"
	printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l "$T/src/debian/changelog" -S Maintainer)" \
		"$(date -R)"
	cat "$T/src/debian/changelog"
} >"$T/changelog" && mv "$T/changelog" "$T/src/debian/changelog"
"$T/src/scripts/deb" --no-deps --nocheck --no-lintian -j2 "$T/out2" >"$T/deb2.log" 2>&1
rc=$?
echo "# rebuilt at ${SECONDS}s"
check_rc "scripts/deb rebuilds the packages as $new" $rc "$(tail -n 10 "$T/deb2.log" | tr '\n' ';')"
[ "$rc" = 0 ] || finish

# A guest on a second instance, through QEMU with reconnect: it writes and
# verifies its disk, one generation after another (blkload: lost, stale
# and torn writes told apart), across the upgrade and the restart.
G=$T/guest
mkdir -p "$G"
cat >"$G/deb-guest.sh" <<'SH'
#!/bin/sh
# Guest half of tests/e2e/test-deb.sh: write and verify the one disk,
# generation after generation, until the host stops QEMU.
i=0
while [ $i -lt 50 ] && [ ! -e /sys/block/vda ]; do usleep 100000; i=$((i + 1)); done
blocks=$(($(blockdev --getsize64 /dev/vda) / 4096))
echo "READY $blocks"
gen=1
while :; do
	blkload write /dev/vda $gen $blocks 8
	blkload verify /dev/vda $gen $blocks 8
	echo "KERR $gen $(dmesg | grep -c -E 'I/O error|blk_update_request|critical medium|Buffer I/O')"
	gen=$((gen + 1))
done
SH
GWHY=""
if ! command -v "$E2E_QEMU" >/dev/null; then
	GWHY="$E2E_QEMU not installed"
elif ! GWHY=$(e2e_kernel); then
	GWHY="guest kernel unavailable: $GWHY"
elif ! cc -static -O2 -o "$G/blkload" "$E2E_GUEST_DIR/blkload.c" 2>"$G/cc.err"; then
	GWHY="blkload does not build: $(head -c 200 "$G/cc.err")"
elif ! GWHY=$(e2e_build_initrd "$G/initrd.cpio" "$G/deb-guest.sh" "$G/blkload"); then
	GWHY="no guest image: $GWHY"
else
	GWHY=""
	e2e_kernel >/dev/null
	e2e_probe_accel "$G"
fi
GLOG=$G/console.log
QPID=""
if [ -n "$GWHY" ]; then
	skip "a guest on a second instance" "$GWHY"
else
	sed "s|^VHU_BLK_IMAGE=.*|VHU_BLK_IMAGE=$IMG2|" \
		/usr/share/doc/vhu-blk/examples/vhu-blk.conf.example >"$CONF2"
	truncate -s 32M "$IMG2"
	chown vhu:vhu "$IMG2"
	rc=1
	if start_daemon "$T/daemon2-1.log" "$INST2"; then
		reconnect=reconnect=1
		qv=$("$E2E_QEMU" --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -n 1)
		read -r qmaj qmin <<<"$qv"
		if [ "${qmaj:-0}" -gt 9 ] || { [ "${qmaj:-0}" = 9 ] && [ "${qmin:-0}" -ge 2 ]; }; then
			reconnect="reconnect-ms=1000"
		fi
		: >"$GLOG"
		e2e_qemu_base "$E2E_ACCEL" "$G/initrd.cpio" "$GLOG"
		E2E_QEMU_ARGS+=(-chardev "socket,id=c0,path=$T/run/$INST2.sock,$reconnect"
			-device vhost-user-blk-pci,chardev=c0,num-queues=1,addr=0x4)
		e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$G/qemu.err"
		QPID=$E2E_LAST_PID
		e2e_wait_log "$GLOG" '^PROGRESS write 1 ' 120 "$QPID"; rc=$?
	fi
	check_rc "a guest ($E2E_ACCEL) writes to a second instance's disk" $rc \
		"$(tail -n 3 "$GLOG" "$G/qemu.err" "$T/daemon2-1.log" 2>/dev/null | tr -d '\r' | tr '\n' ';')"
	[ "$rc" = 0 ] || GWHY="the guest did not start"
fi

# Random reads across the upgrade, each checked against what was written
# before (seed 7), until SIGTERM after the upgrade (then it reports and
# exits 0 unless a request failed or a read did not check out).
timeout 300 /usr/bin/vhu bench "$SOCK" --quiet --bs 4k --size 16M --pattern randread --verify \
	--time 240 --seed 7 --iodepth 8 >"$T/bench.out" 2>&1 &
BPID=$!
sleep 1
# shellcheck disable=SC2046 # one word per file
out=$(apt-get install -y -q --no-install-recommends $(debs "$T/out2") 2>&1); rc=$?
check_rc "apt-get install of $new (upgrade)" $rc "$(tail -n 5 <<<"$out" | tr '\n' ';')"
echo "# upgraded at ${SECONDS}s"
check "... done while vhu bench was running" kill -0 "$BPID"
for p in $PKGS; do
	check "$p $new is installed" \
		[ "$(dpkg-query -W -f='${Version} ${db:Status-Status}' "$p" 2>/dev/null)" = "$new installed" ]
done
check "the running vhu-blk was not disturbed by the upgrade" kill -0 "$DPID"
[ -n "$GWHY" ] || check "... nor the guest's" sat 'kill -0 "$DPID2" && kill -0 "$QPID"'
sleep 1
kill -TERM "$BPID"
wait "$BPID"; rc=$?
BPID=""
check_rc "vhu bench --verify across the upgrade: no error, no mismatch" $rc \
	"$(tr '\n' ';' <"$T/bench.out")"
check "... and it checked reads" grep -qE "verify: [1-9][0-9]* reads checked, 0 mismatches" "$T/bench.out"
# The restart the postinst does under systemd, of every running instance:
# SIGTERM, then the unit's command line again, now the new /usr/bin/vhu-blk.
gen0=0
if [ -z "$GWHY" ]; then
	gen0=$(grep -a '^PROGRESS ' "$GLOG" | tail -n 1 | cut -d' ' -f3)
	check "the guest's I/O is running at the restart (generation $gen0)" \
		sat 'kill -0 "$QPID" && [ -n "$gen0" ]'
	kill -TERM "$DPID2"
	wait "$DPID2"; rc=$?
	DPID2=""
	check_rc "the guest's vhu-blk stops on SIGTERM with status 0" $rc \
		"$(tail -n 3 "$T/daemon2-1.log" | tr '\n' ';')"
	start_daemon "$T/daemon2-2.log" "$INST2"
	check "... and the new one starts from the unit's command line" \
		sat '[ -n "$DPID2" ] && [ "$(readlink /proc/$DPID2/exe)" = /usr/bin/vhu-blk ]'
fi
kill -TERM "$DPID"
wait "$DPID"; rc=$?
DPID=""
check_rc "the old vhu-blk stops on SIGTERM with status 0" $rc "$(tail -n 3 "$T/daemon1.log" | tr '\n' ';')"
start_daemon "$T/daemon2.log"
check "the new vhu-blk starts from the unit's command line" sat \
	'[ -S "$SOCK" ] && [ "$(readlink /proc/$DPID/exe)" = /usr/bin/vhu-blk ]'
out=$(bench --pattern read --verify --count 4096 --seed 7 2>&1); rc=$?
check_rc "the restarted vhu-blk reads back what the old one wrote (vhu bench --verify)" $rc \
	"$(tr '\n' ';' <<<"$out")"
out=$(bench --pattern randrw --verify --count 4096 --seed 11 2>&1); rc=$?
check_rc "... and serves writes and reads (randrw --verify)" $rc "$(tr '\n' ';' <<<"$out")"
e2e_stop "$DPID"
DPID=""
if [ -z "$GWHY" ]; then
	# QEMU reconnects; the guest's I/O resumes and the generation after the
	# one the restart interrupted is written and verified in full.
	e2e_wait_log "$GLOG" "^KERR $((gen0 + 1)) " 180 "$QPID"; rc=$?
	check_rc "after the restart the guest writes and verifies generation $((gen0 + 1))" $rc \
		"$(tail -n 3 "$GLOG" "$G/qemu.err" | tr -d '\r' | tr '\n' ';')"
	e2e_cleanup
	bad=$(grep -a '^PASS ' "$GLOG" | tr -d '\r' |
		grep -v ' ioerr=0 unwritten=0 stale=0 future=0 misplaced=0 torn=0$')
	check "every guest pass, generation $gen0 included: every block, no error, no lost or torn write" \
		sat '[ -z "$bad" ] && grep -aq "^PASS verify $gen0 " "$GLOG"'
	[ -z "$bad" ] || head -n 3 <<<"$bad" | sed 's/^/# /'
	kerr=$(grep -a '^KERR ' "$GLOG" | tr -d '\r' | grep -v ' 0$')
	check "no I/O error in the guest kernel log" [ -z "$kerr" ]
	echo "# guest: $(grep -ac '^PASS verify' "$GLOG") generations verified"
	e2e_stop "$DPID2"
	DPID2=""
fi

# --- remove and purge ------------------------------------------------------------
for p in $PKGS; do dpkg-query -L "$p" 2>/dev/null; done | sort -u >"$T/files"
# shellcheck disable=SC2086 # one word per package
out=$(apt-get remove -y -q $PKGS 2>&1); rc=$?
check_rc "apt-get remove" $rc "$(tail -n 5 <<<"$out" | tr '\n' ';')"
left=$(while read -r f; do [ -d "$f" ] || [ ! -e "$f" ] || echo "$f"; done <"$T/files")
check "remove: no file of the packages is left" [ -z "$left" ]
[ -z "$left" ] || echo "# left: $(tr '\n' ' ' <<<"$left")"
check "remove: the instance's configuration is kept" [ -f "$CONF" ]
check "remove: vhu-blk is in state config-files" [ "$(pkgstatus vhu-blk)" = config-files ]
rm -f "$CONF" "$IMG" "$CONF2" "$IMG2"
# Packages without maintainer scripts are gone with remove already (apt no
# longer knows them: they came from files); purge those that are left.
conf=$(for p in $PKGS; do [ "$(pkgstatus "$p")" = config-files ] && echo "$p"; done)
# shellcheck disable=SC2086 # one word per package
out=$(apt-get purge -y -q $conf 2>&1); rc=$?
check_rc "apt-get purge" $rc "$(tail -n 5 <<<"$out" | tr '\n' ';')"
st=$(for p in $PKGS; do pkgstatus "$p"; done | sort -u)
check "purge: dpkg knows none of the packages" [ "$st" = not-installed ]
# What is left must belong to another package (/usr/bin, /lib/systemd/system...).
left=$(while read -r f; do [ "$f" = /. ] && continue
	[ ! -e "$f" ] || dpkg-query -S "$f" >/dev/null 2>&1 || echo "$f"
done <"$T/files")
check "purge: nothing of the packages is left" [ -z "$left" ]
[ -z "$left" ] || echo "# left: $(tr '\n' ' ' <<<"$left")"
check "purge: /etc/vhu is gone" [ ! -e /etc/vhu ]
if [ "$had_varlib" = 0 ]; then
	check "purge: the (empty) /var/lib/vhu is gone" [ ! -e /var/lib/vhu ]
fi
finish
