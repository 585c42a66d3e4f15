/* SPDX-License-Identifier: MIT */
/* The backing image: a raw regular file or a block device. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "backend.h"
#include "blk-int.h"

void vhu__blk_log(enum vhu_log_level level, const char *fmt, ...)
{
	va_list ap;

	/* Through the library's sink (vhu_set_log_fn), never straight to
	 * stderr: the application decides where device lines go. */
	va_start(ap, fmt);
	vhu_logv(level, fmt, ap);
	va_end(ap);
}

int vhu__blk_image_size(const struct vhu_blk *blk, uint64_t *size)
{
	struct stat st;

	if (blk->blockdev) {
		uint64_t bytes;

		if (ioctl(blk->fd, BLKGETSIZE64, &bytes) < 0)
			return -errno;
		*size = bytes;
		return 0;
	}
	if (fstat(blk->fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

void vhu__blk_set_size(struct vhu_blk *blk, uint64_t size)
{
	/* Only whole logical blocks are visible to the guest (5.2.4:
	 * capacity in 512-byte sectors, a multiple of blk_size). */
	uint64_t blocks = size / blk->blk_size;

	vhu__blk_map_size(blk, size);
	atomic_store(&blk->size, size);
	atomic_store(&blk->capacity,
		     blocks * (blk->blk_size >> VHU_BLK_SECTOR_SHIFT));
}

static unsigned read_sysfs_uint(const struct stat *st, const char *attr)
{
	char path[96], buf[32];
	unsigned long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/%s",
		 major(st->st_rdev), minor(st->st_rdev), attr);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "%lu", &v) != 1)
		v = 0;
	fclose(f);
	return v > UINT_MAX ? 0 : (unsigned)v;
}

static bool pow2_in(unsigned v, unsigned lo, unsigned hi)
{
	return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

/*
 * What the host needs: the logical block size of a block device
 * (BLKSSZGET; 512 for files), the direct-I/O alignment of offsets and
 * lengths and of memory (statx STATX_DIOALIGN where the kernel reports
 * it; else the logical block size, which is what O_DIRECT traditionally
 * needs), and the discard granularity (sysfs for block devices, the file
 * system block for files).
 */
void vhu__blk_image_geometry(int fd, const struct stat *st,
			     struct vhu_blk_geometry *g)
{
	struct statx sx;
	int v;

	g->logical = 512;
	if (S_ISBLK(st->st_mode) && ioctl(fd, BLKSSZGET, &v) == 0 &&
	    pow2_in((unsigned)v, 512, 65536))
		g->logical = (unsigned)v;
	g->dio_offset = g->logical;
	g->dio_mem = g->logical;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align) {
		if (pow2_in(sx.stx_dio_offset_align, 1, 65536))
			g->dio_offset = sx.stx_dio_offset_align;
		if (pow2_in(sx.stx_dio_mem_align, 1, 65536))
			g->dio_mem = sx.stx_dio_mem_align;
	}
	if (g->dio_offset < g->logical && S_ISBLK(st->st_mode))
		g->dio_offset = g->logical;
	if (S_ISBLK(st->st_mode))
		g->discard = read_sysfs_uint(st, "discard_granularity");
	else
		g->discard = (unsigned)st->st_blksize;
	if (!pow2_in(g->discard, 512, 1u << 20))
		g->discard = g->logical;
	if (g->discard < g->logical)
		g->discard = g->logical;
}

/* tmpfs and ramfs hold their files in memory: reading or writing them is
 * a copy that never waits for a device. */
static bool in_memory_fs(int fd)
{
	struct statfs sfs;

	if (fstatfs(fd, &sfs) < 0)
		return false;
	return sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC;
}

/*
 * The null device (path "null:SIZE", SIZE with an optional K, M or G
 * suffix, a whole number of 512-byte sectors): no image at all; reads
 * return zeros, writes, flushes, discards and write-zeroes complete at
 * once.  It measures the protocol path alone (its back-end: backend.c).
 */
int vhu__blk_null_open(struct vhu_blk *blk, const char *spec)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!*spec || *spec == '-' || *spec == '+')
		goto bad;
	errno = 0;
	v = strtoull(spec, &end, 10);
	if (errno)
		goto bad;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end || v == 0 || v > ((uint64_t)INT64_MAX >> shift) ||
	    (v << shift) % VHU_BLK_SECTOR_SIZE)
		goto bad;
	blk->fd = -1;
	blk->geo = (struct vhu_blk_geometry){ .logical = 512, .dio_offset = 512,
					      .dio_mem = 512, .discard = 4096 };
	vhu__blk_set_size(blk, (uint64_t)v << shift);
	return 0;
bad:
	vhu__blk_open_error(blk, "null:SIZE needs a size in bytes (suffix K, M "
			    "or G allowed), a multiple of 512, not '%s'", spec);
	return -EINVAL;
}

size_t vhu__blk_null_req(const struct vhu_blk_req *req)
{
	if (req->type != VHU_BLK_T_IN)
		return 0;
	for (unsigned i = 0; i < req->n_data; i++)
		memset(req->data[i].iov_base, 0, req->data[i].iov_len);
	return req->data_len;
}

int vhu__blk_image_open(struct vhu_blk *blk, const char *path)
{
	int flags = O_CLOEXEC | (blk->read_only ? O_RDONLY : O_RDWR);
	struct stat st;
	uint64_t size;
	int fd, r;

	if (blk->cache == VHU_BLK_CACHE_NONE)
		flags |= O_DIRECT;
	/* Never O_EXCL here: a block device's exclusive claim (a mount and
	 * other exclusive openers conflict with it, which file locks miss)
	 * is a descriptor of its own, held with the write lock (lock.c). */
	fd = open(path, flags);
	if (fd < 0 && !blk->read_only &&
	    (errno == EACCES || errno == EROFS || errno == EPERM)) {
		int e = errno, ro = open(path, O_RDONLY | O_CLOEXEC);

		if (ro >= 0) {
			close(ro);
			vhu__blk_open_error(blk, "'%s' cannot be opened for writing "
					    "(%s); to serve it read-only, pass "
					    "--read-only (-r)", path, strerror(e));
		}
		return -e;
	}
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		close(fd);
		return -ENOTBLK;
	}
	blk->blockdev = S_ISBLK(st.st_mode);
	blk->fd = fd;
	blk->lock_fd = fd;
	blk->open_flags = flags;
	if (!blk->no_lock) {
		r = vhu__blk_image_lock(blk, fd, path);
		if (r < 0)
			goto fail;
	}
	if (!blk->format_raw) {
		r = vhu__blk_image_probe(blk, fd, path);
		if (r < 0)
			goto fail;
	}
	vhu__blk_image_geometry(fd, &st, &blk->geo);
	blk->mem_backed = !blk->blockdev && in_memory_fs(fd);
	r = vhu__blk_image_size(blk, &size);
	if (r < 0)
		goto fail;
	vhu__blk_set_size(blk, size);
	return vhu__blk_map_open(blk);
fail:
	close(fd);
	blk->fd = -1;
	blk->lock_fd = -1;
	return r;
}
