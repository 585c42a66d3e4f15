# shellcheck shell=bash
# Host-side helpers for booting a tiny Linux guest against vhost-user-blk
# back-ends.  Sourced by tests/e2e/test-*.sh and scripts/demo; bash only.
#
# Variables callers may set before sourcing / calling:
#   E2E_CACHE_DIR   kernel cache (default: tests/e2e/cache)
#   E2E_ACCEL       kvm|tcg to skip the accelerator probe
#   E2E_PROBE_TIMEOUT  seconds the KVM probe boot may take (default 20)
#   E2E_QEMU        QEMU binary (default qemu-system-x86_64)
#   E2E_QEMU_DATA   extra firmware directory for that QEMU (-L)

E2E_GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_REPO=$(cd "$E2E_GUEST_DIR/../../.." && pwd)
E2E_CACHE_DIR=${E2E_CACHE_DIR:-$E2E_REPO/tests/e2e/cache}
E2E_QEMU=${E2E_QEMU:-qemu-system-x86_64}
E2E_PROBE_TIMEOUT=${E2E_PROBE_TIMEOUT:-20}
E2E_MEM=${E2E_MEM:-512M}
# Never fewer than two possible vCPUs (see e2e_qemu_base).
E2E_SMP=${E2E_SMP:-1,maxcpus=2}
E2E_PIDS=()
# Modules in load order: each depends only on the ones before it.
E2E_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk)

e2e_log() { echo "# $*"; }

# Start a command in the background and remember its pid for e2e_cleanup.
# The pid is left in E2E_LAST_PID.
e2e_spawn() {
	"$@" &
	E2E_LAST_PID=$!
	E2E_PIDS+=("$E2E_LAST_PID")
}

# Stop every process started with e2e_spawn: SIGTERM, then SIGKILL after 3 s.
e2e_cleanup() {
	local p i alive
	for p in "${E2E_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for i in $(seq 30); do
		alive=0
		for p in "${E2E_PIDS[@]}"; do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${E2E_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	E2E_PIDS=()
}

# Wait until PID has exited, at most TIMEOUT seconds.  0 = exited.
e2e_wait_exit() {
	local pid=$1 timeout=$2 i
	for i in $(seq $((timeout * 10))); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
		sleep 0.1
	done
	return 1
}

# Wait for a unix socket (or any file) to appear.  0 = present.
e2e_wait_path() {
	local path=$1 timeout=$2 i
	for i in $(seq $((timeout * 10))); do
		[ -e "$path" ] && return 0
		sleep 0.1
	done
	return 1
}

# e2e_wait_log LOG REGEX TIMEOUT [PID]
# Wait for an extended regex to show up in LOG.  0 = found, 1 = timeout,
# 2 = PID exited first (checked once more after it exits).
e2e_wait_log() {
	local log=$1 re=$2 timeout=$3 pid=${4:-} i
	for i in $(seq $((timeout * 10))); do
		grep -Eq -- "$re" "$log" 2>/dev/null && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			grep -Eq -- "$re" "$log" 2>/dev/null && return 0
			return 2
		fi
		sleep 0.1
	done
	return 1
}

# Make sure the cache holds a kernel and the virtio block modules.
# Uses the Debian package that linux-image-amd64 depends on.  On failure
# prints the reason to stdout and returns 1.
e2e_kernel() {
	local lockfd rc
	mkdir -p "$E2E_CACHE_DIR" || { echo "cannot create $E2E_CACHE_DIR"; return 1; }
	# Concurrent runs share the cache: one fills it, the others wait.
	exec {lockfd}>"$E2E_CACHE_DIR/.lock" || { echo "cannot lock $E2E_CACHE_DIR"; return 1; }
	if ! flock -w 600 "$lockfd"; then
		exec {lockfd}>&-
		echo "timed out waiting for the kernel cache lock"
		return 1
	fi
	_e2e_kernel_locked
	rc=$?
	exec {lockfd}>&-
	return $rc
}

_e2e_kernel_locked() {
	local kdir=$E2E_CACHE_DIR/kernel m ok=1 pkg dl tmp f
	for m in "${E2E_MODULES[@]}"; do
		[ -f "$kdir/modules/$m.ko" ] || ok=0
	done
	if [ $ok = 1 ] && [ -s "$kdir/vmlinuz" ]; then
		E2E_KERNEL=$kdir/vmlinuz
		return 0
	fi
	if ! command -v apt-cache >/dev/null || ! command -v apt-get >/dev/null ||
	   ! command -v dpkg >/dev/null; then
		echo "apt-get/dpkg not available to fetch a kernel"
		return 1
	fi
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	      awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
	if [ -z "$pkg" ]; then
		echo "cannot resolve the kernel package behind linux-image-amd64"
		return 1
	fi
	mkdir -p "$E2E_CACHE_DIR/dl" || return 1
	dl=$E2E_CACHE_DIR/dl
	if ! ls "$dl/${pkg}_"*.deb >/dev/null 2>&1; then
		if ! (cd "$dl" && timeout 300 apt-get download "$pkg") >/dev/null 2>&1; then
			echo "apt-get download $pkg failed"
			return 1
		fi
	fi
	tmp=$(mktemp -d "$E2E_CACHE_DIR/x.XXXXXX") || return 1
	if ! dpkg -x "$(ls "$dl/${pkg}_"*.deb | head -n1)" "$tmp"; then
		rm -rf "$tmp"
		echo "dpkg -x of $pkg failed"
		return 1
	fi
	rm -rf "$kdir"
	mkdir -p "$kdir/modules"
	cp "$(ls "$tmp"/boot/vmlinuz-* | head -n1)" "$kdir/vmlinuz"
	for m in "${E2E_MODULES[@]}"; do
		f=$(find "$tmp/lib/modules" "$tmp/usr/lib/modules" -name "$m.ko*" 2>/dev/null | head -n1)
		case "$f" in
		*.ko) cp "$f" "$kdir/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$f" >"$kdir/modules/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$kdir/modules/$m.ko" ;;
		*.ko.gz) gzip -dc "$f" >"$kdir/modules/$m.ko" ;;
		"") ;;	# built into the kernel
		esac
	done
	echo "$pkg" >"$kdir/PACKAGE"
	rm -rf "$tmp"
	if [ ! -s "$kdir/vmlinuz" ] || [ ! -s "$kdir/modules/virtio_blk.ko" ]; then
		echo "kernel package $pkg lacks vmlinuz or virtio_blk"
		return 1
	fi
	E2E_KERNEL=$kdir/vmlinuz
	return 0
}

# e2e_build_initrd OUT [TEST_SCRIPT [EXTRA_FILE...]]
# Pack busybox, /init, the modules, an optional /test.sh and extra files
# (copied to /bin) into a newc cpio archive.  Needs e2e_kernel first.
e2e_build_initrd() {
	local out=$1 script=${2:-} root f bb
	shift 2 2>/dev/null || shift $#
	bb=$(command -v busybox)
	[ -n "$bb" ] || bb=/bin/busybox
	if ! file -L "$bb" 2>/dev/null | grep -q 'statically linked' &&
	   ldd "$bb" >/dev/null 2>&1; then
		echo "busybox at $bb is not static (install busybox-static)"
		return 1
	fi
	root=$(mktemp -d) || return 1
	mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
	cp "$bb" "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	cp "$E2E_GUEST_DIR/init" "$root/init"
	chmod 755 "$root/init"
	cp "$E2E_CACHE_DIR"/kernel/modules/*.ko "$root/lib/modules/"
	if [ -n "$script" ]; then
		cp "$script" "$root/test.sh"
		chmod 755 "$root/test.sh"
	fi
	for f in "$@"; do
		cp "$f" "$root/bin/"
	done
	(cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet) >"$out"
	local rc=$?
	rm -rf "$root"
	return $rc
}

# Fill the array E2E_QEMU_ARGS with the machine part of a QEMU command line
# for accelerator $1 (kvm|tcg), initrd $2 and serial log $3.  Devices are
# appended by the caller.
e2e_qemu_base() {
	local accel=$1 initrd=$2 log=$3
	E2E_QEMU_ARGS=(-machine "${E2E_MACHINE:-q35}" -nodefaults -display none -vga none
		-no-reboot -monitor none -serial "file:$log"
		-m "$E2E_MEM"
		-object "memory-backend-memfd,id=mem,size=$E2E_MEM,share=on"
		-numa node,memdev=mem
		-kernel "$E2E_KERNEL" -initrd "$initrd"
		-append "console=ttyS0 panic=-1 quiet ${E2E_APPEND:-}")
	# Firmware and option ROMs of the QEMU that runs (E2E_QEMU_DATA, for
	# a QEMU that is not installed); its default paths still follow.
	[ -n "${E2E_QEMU_DATA:-}" ] && E2E_QEMU_ARGS+=(-L "$E2E_QEMU_DATA")
	# Two possible vCPUs even with one online: with a single possible vCPU
	# the guest kernel elides SMP memory barriers that the cross-process
	# virtqueue protocol needs.
	if [ "$accel" = kvm ]; then
		E2E_QEMU_ARGS+=(-accel kvm -cpu host -smp "$E2E_SMP")
	else
		E2E_QEMU_ARGS+=(-accel tcg -cpu max -smp "$E2E_SMP")
	fi
}

# e2e_boot_one_disk INITRD LOG SOCKET ERR: QEMU ($E2E_ACCEL) booting the guest
# with one vhost-user-blk disk (one queue, PCI slot 4) on SOCKET, serial
# console in LOG (emptied first), stderr in ERR; started with e2e_spawn
# (E2E_LAST_PID).
e2e_boot_one_disk() {
	: >"$2"
	e2e_qemu_base "$E2E_ACCEL" "$1" "$2"
	E2E_QEMU_ARGS+=(-chardev "socket,id=c0,path=$3"
		-device vhost-user-blk-pci,chardev=c0,num-queues=1,addr=0x4)
	e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" 2>"$4"
}

# Decide KVM vs TCG by booting a device-less guest under KVM and waiting for
# its boot marker.  Sets E2E_ACCEL; the answer is kept in $1/accel so later
# calls with the same work dir do not boot again.
e2e_probe_accel() {
	local work=$1
	case "${E2E_ACCEL:-}" in kvm|tcg) return 0 ;; esac
	if [ ! -s "$work/accel" ]; then
		# A subshell with its own stderr: a QEMU that aborts on KVM setup
		# must not leave job-control noise in the caller's output.
		( _e2e_probe_kvm "$work" ) 2>>"$work/probe.err"
	fi
	E2E_ACCEL=$(cat "$work/accel" 2>/dev/null)
	case "$E2E_ACCEL" in kvm|tcg) ;; *) E2E_ACCEL=tcg ;; esac
	return 0
}

_e2e_probe_kvm() {
	local work=$1 initrd=$1/probe.cpio log=$1/probe.log accel=tcg qpid
	E2E_PIDS=()
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && e2e_build_initrd "$initrd" >/dev/null; then
		: >"$log"
		e2e_qemu_base kvm "$initrd" "$log"
		e2e_spawn "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}"
		qpid=$E2E_LAST_PID
		e2e_wait_log "$log" VHU-GUEST-BOOTED "$E2E_PROBE_TIMEOUT" "$qpid" && accel=kvm
		e2e_cleanup
	fi
	echo "$accel" >"$work/accel"
}

# e2e_rpc CTRL_SOCKET METHOD [PARAMS_JSON] [--get KEY]
e2e_rpc() {
	python3 "$E2E_GUEST_DIR/rpc.py" jsonrpc "$@"
}

# e2e_qmp QMP_SOCKET COMMAND [ARGS_JSON]
e2e_qmp() {
	python3 "$E2E_GUEST_DIR/rpc.py" qmp "$@"
}

# ---- the frame of a guest test script -----------------------------------

# e2e_guest_kernel: e2e_kernel, or the whole script skipped with its reason.
e2e_guest_kernel() {
	local why
	why=$(e2e_kernel) || { echo "1..0 # SKIP guest kernel unavailable: $why"; exit 0; }
	e2e_kernel >/dev/null
}

# e2e_guest_work PREFIX: E2E_WORK, a fresh directory /tmp/PREFIX.XXXXXX.  At
# exit (and on INT/TERM) e2e_guest_release runs when the script defines it,
# then e2e_cleanup, then E2E_WORK is removed (E2E_KEEP=1 keeps it).
e2e_guest_work() {
	E2E_WORK=$(mktemp -d "/tmp/$1.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
	trap e2e_guest_finish EXIT
	trap 'exit 130' INT TERM
}
e2e_guest_finish() {
	if declare -F e2e_guest_release >/dev/null; then e2e_guest_release; fi
	e2e_cleanup
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		echo "# work directory kept: $E2E_WORK"
	else
		rm -rf "$E2E_WORK"
	fi
}

# e2e_guest_image DIR SCRIPT [EXTRA_FILE...]: DIR/initrd.cpio with the guest
# SCRIPT and the extra files, then the accelerator (E2E_ACCEL, printed).
# Bails out (exit 1) when the image cannot be made.
e2e_guest_image() {
	local dir=$1 why
	shift
	if ! why=$(e2e_build_initrd "$dir/initrd.cpio" "$@"); then
		echo "Bail out! cannot build the guest image: $why"
		exit 1
	fi
	e2e_probe_accel "$dir"
	echo "# accel: $E2E_ACCEL"
}

# e2e_guest_tool DIR NAME: tests/e2e/guest/NAME.c built static as DIR/NAME,
# or a bail-out (exit 1) with the compiler's first words.
e2e_guest_tool() {
	if ! cc -static -O2 -o "$1/$2" "$E2E_GUEST_DIR/$2.c" 2>"$1/cc.err"; then
		echo "Bail out! cannot build the guest's $2: $(head -c 300 "$1/cc.err")"
		exit 1
	fi
}

# e2e_qemu10: QEMU 10.0 for the configurations that want it.  Q10 is its
# binary (E2E_QEMU10, else what tests/e2e/peers/fetch-qemu10 unpacks) and
# Q10_DATA its firmware directory; when there is none Q10 is empty and
# Q10_WHY says why.
e2e_qemu10() {
	local d
	Q10='' Q10_DATA='' Q10_WHY=''
	if [ -n "${E2E_QEMU10:-}" ]; then
		Q10=$E2E_QEMU10
	elif d=$("$E2E_GUEST_DIR/../peers/fetch-qemu10"); then
		Q10=$d/bin/qemu-system-x86_64 Q10_DATA=$d/share/qemu
	else
		Q10_WHY=$d
	fi
}
