#!/bin/bash
# SPDX-License-Identifier: MIT
# vhu-blk under a libvirt-managed guest, as an operator runs it: libvirtd
# and virtlogd (started here when not running, stopped by their pids),
# vhu-blk with --socket-group libvirt-qemu, a transient domain (TCG, two
# vCPUs, memfd shared memory, the e2e kernel and initramfs) whose disk is
# <disk type='vhostuser'> with reconnect.  The guest sees the size, its
# write lands in the image, a live resize with `vhu ctl` is seen, vhu-blk
# restarted under the running domain is reconnected to, and `virsh
# destroy` leaves vhu-blk serving.
# Usage: tests/e2e/test-libvirt.sh BUILD_DIR    (prints TAP)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$HERE/lib.sh"
# shellcheck source=tests/e2e/guest/lib.sh
. "$HERE/guest/lib.sh"

BUILD=${1:-build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd)
BIN=$BUILD/tools/vhu-blk
VHU=$BUILD/tools/vhu
URI=qemu:///system
{ [ -x "$BIN" ] && [ -x "$VHU" ]; } || skip_all "$BIN or $VHU not built"
[ "$(id -u)" = 0 ] || skip_all "needs root (starts libvirtd)"
for c in libvirtd virtlogd virsh qemu-system-x86_64; do
	command -v $c >/dev/null || skip_all "$c missing (scripts/deps installs libvirt-daemon-system, libvirt-clients)"
done
getent passwd libvirt-qemu >/dev/null || skip_all "no user libvirt-qemu (Debian's libvirt-daemon-system makes it)"

W=$(e2e_tmpdir vhu-libvirt)
chmod 755 "$W"   # libvirt-qemu reaches the kernel, initrd and socket here
DOM=vhu-e2e-$$
STARTED=()   # pids of the daemons this test started
BLK=""
cleanup() {
	virsh -c "$URI" destroy "$DOM" >/dev/null 2>&1
	e2e_stop "$BLK"
	local p
	for p in "${STARTED[@]}"; do
		kill "$p" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
	rm -rf "$W"
}
trap cleanup EXIT
# sat 'SHELL CONDITION': for check, when the condition has && or ||.
sat() { eval "$1"; }

# One libvirt test at a time on this host (the daemons are shared).
exec 9>/run/vhu-e2e-libvirt.lock
flock -w 900 9 || skip_all "another libvirt test holds /run/vhu-e2e-libvirt.lock"

# daemon NAME: start it (-d daemonizes, pid in /run/NAME.pid) unless its
# pid file names a live process.
daemon() {
	local pidf=/run/$1.pid pid
	pid=$(cat "$pidf" 2>/dev/null)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		echo "# $1 already running (pid $pid): used, not stopped"
		return 0
	fi
	"$1" -d || return 1
	for _ in $(seq 50); do
		pid=$(cat "$pidf" 2>/dev/null)
		[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && break
		sleep 0.1
	done
	[ -n "$pid" ] || return 1
	STARTED+=("$pid")
}
daemon virtlogd || skip_all "virtlogd -d failed"
daemon libvirtd || skip_all "libvirtd -d failed"
for _ in $(seq 100); do virsh -c "$URI" version >/dev/null 2>&1 && break; sleep 0.2; done
virsh -c "$URI" version >/dev/null 2>&1 || skip_all "libvirtd does not answer on $URI"
ok "libvirtd and virtlogd run"

# The guest: its own copies of the kernel and initramfs (libvirt may
# relabel what a domain uses; the shared cache stays untouched).
e2e_kernel >"$W/kernel.err" || skip_all "no guest kernel: $(cat "$W/kernel.err")"
cp "$E2E_KERNEL" "$W/vmlinuz"
e2e_build_initrd "$W/initrd" "$HERE/guest/libvirt-checks.sh" || skip_all "cannot build the initramfs"

IMG=$W/disk.img
truncate -s 64M "$IMG"
BLK_ARGS=(-b "$IMG" -s "$W/vhu.sock" --socket-group libvirt-qemu --num-queues 2
	  --control "$W/vhu.ctl")
start_blk() {
	"$BIN" "${BLK_ARGS[@]}" 2>>"$W/blk.log" &
	BLK=$!
	e2e_wait_path "$W/vhu.sock" 10 && e2e_wait_path "$W/vhu.ctl" 10
}
start_blk
check "vhu-blk socket is 0660 group libvirt-qemu" \
	[ "$(stat -c '%a %G' "$W/vhu.sock")" = "660 libvirt-qemu" ]

cat >"$W/dom.xml" <<EOF
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$W/vmlinuz</kernel>
    <initrd>$W/initrd</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='vhostuser' device='disk'>
      <driver name='qemu' type='raw' queues='2'/>
      <source type='unix' path='$W/vhu.sock'>
        <reconnect enabled='yes' timeout='1'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='$W/serial.log'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
LOG=$W/serial.log
out=$(virsh -c "$URI" create "$W/dom.xml" 2>&1); rc=$?
check_rc "virsh create: the domain starts on the vhost-user disk" $rc "$out"
if [ $rc != 0 ]; then
	echo "# $(tail -n 5 "/var/log/libvirt/qemu/$DOM.log" 2>/dev/null | tr '\n' ' ')"
	finish
fi
qpid=$(pgrep -f "guest=$DOM" | head -1)
check "libvirt runs QEMU as libvirt-qemu" \
	sat '[ -n "$qpid" ] && [ "$(ps -o user= -p "$qpid")" = libvirt-qemu ]'

res() { sed -n "s/^RESULT $1 //p" "$LOG" | tr -d '\r' | head -1; }
gwait() { e2e_wait_log "$LOG" "$1" "$2"; }

gwait "WAITING resize" 240
[ "$(res size)" = "ok 131072" ] || echo "# serial: $(tail -n 5 "$LOG" | tr '\n' ' ')"
check "guest sees the 64 MiB disk (131072 sectors)" [ "$(res size)" = "ok 131072" ]
check "guest's write lands in the image" \
	[ "$(dd if="$IMG" bs=512 skip=2048 count=1 2>/dev/null | head -c 19)" = VHU-LIBVIRT-WRITE-1 ]

# Live resize while libvirt runs the guest.
out=$(timeout 20 "$VHU" ctl "$W/vhu.ctl" resize 96M 2>&1); rc=$?
check_rc "vhu ctl resize 96M" $rc "$out"
gwait "WAITING restart" 90
check "guest sees the resize (196608 sectors)" [ "$(res resize)" = "ok 196608" ]

# Restart vhu-blk under the running domain: QEMU reconnects (timeout 1 s).
kill -TERM "$BLK"
e2e_wait_exit "$BLK" 15; wait "$BLK"; rc=$?
BLK=""
check_rc "vhu-blk exits 0 on SIGTERM under the running domain" $rc
start_blk
connected() { timeout 5 "$VHU" ctl "$W/vhu.ctl" info 2>/dev/null | grep -Eq '"?connected"?:? *true'; }
for _ in $(seq 100); do connected && break; sleep 0.2; done
check "QEMU reconnects to the new vhu-blk" connected
printf 'GO' | dd of="$IMG" bs=512 seek=4096 conv=notrunc 2>/dev/null
gwait "WAITING destroy" 90
check "guest reads through the new vhu-blk" [ "$(res reread)" = "ok " ]
check "guest's write after the restart lands in the image" \
	[ "$(dd if="$IMG" bs=512 skip=2049 count=1 2>/dev/null | head -c 19)" = VHU-LIBVIRT-WRITE-2 ]
check "guest reads the last sector of the new size" [ "$(res lastsector)" = "ok 196607" ]
grep -q "^RESULT .* fail" "$LOG" && echo "# $(grep '^RESULT .* fail' "$LOG" | tr '\n' ' ')"

# The guest is done (it waits); virsh destroy ends it, vhu-blk stays.
out=$(virsh -c "$URI" destroy "$DOM" 2>&1); rc=$?
check_rc "virsh destroy" $rc "$out"
check "the domain is gone" bash -c "! virsh -c '$URI' domstate '$DOM' >/dev/null 2>&1"
check "vhu-blk outlives the domain" kill -0 "$BLK"

finish
