/* SPDX-License-Identifier: MIT */
/*
 * What the open path checks before an image is served (image locking:
 * lock.c): that it is raw data, not a container format whose metadata a
 * guest would see and overwrite.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blk-int.h"

void vhu__blk_open_error(struct vhu_blk *blk, const char *fmt, ...)
{
	va_list ap;

	if (!blk->err || !blk->err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(blk->err, blk->err_len, fmt, ap);
	va_end(ap);
}

/* ---- container formats ---- */

struct magic {
	const char *name;       /* qemu-img's name for the format */
	size_t off;
	size_t len;
	const char *bytes;
};

static const struct magic magics[] = {
	{ "qcow2", 0, 4, "QFI\xfb" },          /* qcow and qcow2 */
	{ "qed", 0, 4, "QED\0" },
	{ "vmdk", 0, 4, "KDMV" },              /* hosted sparse extent */
	{ "vmdk", 0, 4, "COWD" },              /* ESX sparse extent */
	{ "vmdk", 0, 21, "# Disk DescriptorFile" },
	{ "vdi", 0x40, 4, "\x7f\x10\xda\xbe" }, /* 0xbeda107f, little endian */
	{ "vhdx", 0, 8, "vhdxfile" },
	{ "vpc", 0, 8, "conectix" },           /* dynamic VHD: footer copy at 0 */
	{ "luks", 0, 6, "LUKS\xba\xbe" },      /* LUKS1 and LUKS2 */
};

const char *vhu_blk_probe_format(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
		const struct magic *m = &magics[i];

		if (m->off + m->len <= len &&
		    memcmp(p + m->off, m->bytes, m->len) == 0)
			return m->name;
	}
	return NULL;
}

#define PROBE_BYTES 4096u

/*
 * Refuse an image whose first bytes are a container format's header:
 * served as raw, the guest would see the format's metadata as its disk
 * and its first write would destroy the image.
 */
int vhu__blk_image_probe(struct vhu_blk *blk, int fd, const char *path)
{
	const char *fmt;
	void *buf;
	ssize_t n;

	/* Aligned for O_DIRECT (4096 covers 4Kn devices). */
	if (posix_memalign(&buf, PROBE_BYTES, PROBE_BYTES))
		return -ENOMEM;
	do {
		n = pread(fd, buf, PROBE_BYTES, 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		int r = -errno;

		free(buf);
		return r;
	}
	fmt = vhu_blk_probe_format(buf, (size_t)n);
	free(buf);
	if (!fmt)
		return 0;
	if (strcmp(fmt, "luks") == 0)
		vhu__blk_open_error(blk, "'%s' is a LUKS encrypted volume, not raw "
			"data: unlock it (cryptsetup open '%s' NAME) and serve "
			"/dev/mapper/NAME, or pass --format raw to give the guest the "
			"encrypted volume to unlock itself", path, path);
	else
		vhu__blk_open_error(blk, "'%s' is a %s image, not raw data: the "
			"guest would see its metadata and overwrite it.  Convert it "
			"(qemu-img convert -f %s -O raw '%s' IMAGE.raw) or export it "
			"with qemu-storage-daemon or qemu-nbd; pass --format raw only "
			"if these bytes are the guest's own data",
			path, fmt, fmt, path);
	return -EMEDIUMTYPE;
}
