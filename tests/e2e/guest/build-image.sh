#!/bin/bash
# build-image.sh OUT_DIR [TEST_SCRIPT [EXTRA_FILE...]]
#
# Writes OUT_DIR/vmlinuz and OUT_DIR/initrd.cpio for a hand-run guest: the
# Debian kernel (cached in tests/e2e/cache) and a busybox initramfs whose
# /init loads the virtio block modules and runs TEST_SCRIPT as /test.sh.
# Prints a matching QEMU command line for one vhost-user-blk socket.
set -u
[ $# -ge 1 ] || { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
out=$1
shift
. "$(dirname "$0")/lib.sh"
mkdir -p "$out" || exit 1
why=$(e2e_kernel) || { echo "build-image: $why" >&2; exit 1; }
e2e_kernel >/dev/null
cp "$E2E_KERNEL" "$out/vmlinuz" || exit 1
why=$(e2e_build_initrd "$out/initrd.cpio" "$@") || { echo "build-image: $why" >&2; exit 1; }
E2E_KERNEL=$out/vmlinuz
e2e_qemu_base "${E2E_ACCEL:-tcg}" "$out/initrd.cpio" "$out/console.log"
echo "built $out/vmlinuz and $out/initrd.cpio; boot with e.g.:"
printf '%q ' "$E2E_QEMU" "${E2E_QEMU_ARGS[@]}" -chardev socket,id=c0,path=SOCK \
	-device vhost-user-blk-pci,chardev=c0,num-queues=1
echo
