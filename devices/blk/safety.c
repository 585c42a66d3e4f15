/* SPDX-License-Identifier: MIT */
/*
 * What the open path checks before an image is served: that no other
 * process writes it (image locking) and that it is raw data, not a
 * container format whose metadata a guest would see and overwrite.
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

/* ---- locking ---- */

/*
 * The byte ranges QEMU's file driver locks (OFD locks, so they belong to
 * the open file, not the process): a shared lock on byte 100 + bit for
 * each permission held, and on byte 200 + bit for each permission it does
 * not let others have.  Using the same bytes makes vhu-blk, QEMU and
 * qemu-storage-daemon see each other.
 */
#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200

enum { PERM_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE, PERM_BITS };

static const char *const perm_names[PERM_BITS] = {
	"consistent read", "write", "write unchanged", "resize",
};

static int lock_byte(int fd, off_t off)
{
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET,
			    .l_start = off, .l_len = 1 };

	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 1 when another open file holds a lock on the byte, 0 when none. */
static int locked_elsewhere(int fd, off_t off)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
			    .l_start = off, .l_len = 1 };

	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

/*
 * A writer holds read, write, write-unchanged and resize and shares
 * neither write nor resize; a reader (--read-only) holds read and shares
 * neither either, so readers go together but not with a writer.  The
 * locks are taken first and the conflicts checked after: two processes
 * starting at once may both fail, never both succeed.
 */
int vhu__blk_image_lock(struct vhu_blk *blk, int fd, const char *path)
{
	unsigned perms = blk->read_only ? 1u << PERM_READ
					: (1u << PERM_READ) | (1u << PERM_WRITE) |
					  (1u << PERM_WRITE_UNCHANGED) |
					  (1u << PERM_RESIZE);
	unsigned unshared = (1u << PERM_WRITE) | (1u << PERM_RESIZE);
	int r;

	for (unsigned i = 0; i < PERM_BITS; i++) {
		r = 0;
		if (perms & (1u << i))
			r = lock_byte(fd, LOCK_PERM_BASE + i);
		if (r == 0 && (unshared & (1u << i)))
			r = lock_byte(fd, LOCK_SHARED_BASE + i);
		if (r == -EINVAL || r == -ENOSYS || r == -EOPNOTSUPP ||
		    r == -ENOLCK) {
			vhu__blk_log(VHU_LOG_WARN, "'%s': file locking not supported "
				     "here (%s): another writer would go unnoticed",
				     path, strerror(-r));
			return 0;
		}
		if (r == -EAGAIN || r == -EACCES) {
			vhu__blk_open_error(blk, "'%s' is locked exclusively by "
				"another process; stop it, or pass --lock off if you "
				"are sure", path);
			return -EBUSY;
		}
		if (r < 0)
			return r;
	}
	for (unsigned i = 0; i < PERM_BITS; i++) {
		char why[128];

		if ((perms & (1u << i)) &&
		    locked_elsewhere(fd, LOCK_SHARED_BASE + i) > 0)
			snprintf(why, sizeof(why), "and does not share the %s "
				 "permission this %s needs", perm_names[i],
				 blk->read_only ? "read-only open" : "writer");
		else if ((unshared & (1u << i)) &&
			 locked_elsewhere(fd, LOCK_PERM_BASE + i) > 0)
			snprintf(why, sizeof(why), "with the %s permission, "
				 "which a %s does not share", perm_names[i],
				 blk->read_only ? "read-only vhu-blk" :
						  "vhu-blk writer");
		else
			continue;
		vhu__blk_open_error(blk, "'%s' is locked: another process "
			"(vhu-blk, QEMU, qemu-storage-daemon) has it open %s; "
			"stop it, or pass --lock off if you are sure", path, why);
		return -EBUSY;
	}
	return 0;
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
