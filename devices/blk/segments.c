/* SPDX-License-Identifier: MIT */
/*
 * DISCARD and WRITE_ZEROES (virtio 1.2, 5.2.6.2) on the image: BLKDISCARD
 * and BLKZEROOUT on block devices, hole punching and FALLOC_FL_ZERO_RANGE
 * on files, writing zeroes where those refuse the range.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "blk-int.h"

static int write_zeroes_slow(struct vhu_blk *blk, const void *zeroes,
			     uint64_t off, uint64_t len)
{
	while (len > 0) {
		size_t n = len < VHU__BLK_ZERO_BUF ? (size_t)len : VHU__BLK_ZERO_BUF;
		ssize_t r = pwrite(blk->fd, zeroes, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

/* Inward to the discard granularity: a partial block cannot be
 * discarded (block devices refuse it), and discard is only a hint. */
static bool trim_range(unsigned gran, uint64_t *off, uint64_t *len)
{
	uint64_t start = (*off + gran - 1) / gran * gran;
	uint64_t end = (*off + *len) / gran * gran;

	if (start >= end)
		return false;
	*off = start;
	*len = end - start;
	return true;
}

/* DISCARD: BLKDISCARD on a block device, a punched hole in a file.
 * A host that cannot discard makes it a no-op (5.2.6.2: a hint). */
static int seg_discard(struct vhu_blk *blk, uint64_t off, uint64_t len)
{
	int r;

	if (!trim_range(blk->geo.discard, &off, &len))
		return 0;
	if (blk->blockdev) {
		uint64_t range[2] = { off, len };

		r = ioctl(blk->fd, BLKDISCARD, range);
	} else {
		r = fallocate(blk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)off, (off_t)len);
	}
	if (r < 0 && errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	return 0;
}

/* WRITE_ZEROES: the range reads back as zeroes, or the request fails.
 * unmap: the guest allows deallocation (hole / unmapping zeroout). */
static int seg_zeroes(struct vhu_blk *blk, const void *zeroes, uint64_t off,
		      uint64_t len, bool unmap)
{
	int fd = blk->fd, r;

	/* KEEP_SIZE: block devices require it, and a file never grows past
	 * the checked capacity.  On a block device PUNCH_HOLE is a zeroout
	 * that may unmap and ZERO_RANGE one that must not. */
	if (unmap && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       (off_t)off, (off_t)len) == 0)
		return 0;
	if (blk->blockdev) {
		uint64_t range[2] = { off, len };

		r = ioctl(fd, BLKZEROOUT, range);
	} else {
		r = fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			      (off_t)off, (off_t)len);
	}
	if (r == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -errno;
	/* Not offered by this file system, or a range finer than the
	 * device's blocks (buffered writes handle those). */
	r = write_zeroes_slow(blk, zeroes, off, len);
	if (r == -EINVAL && blk->blockdev)
		r = -EOPNOTSUPP;
	return r;
}

/*
 * DISCARD and WRITE_ZEROES run synchronously on the queue's thread: they
 * are rare and not worth a slot's worth of state machine.  Segments were
 * checked against the capacity by vhu_blk_req_check().
 */
int vhu__blk_segments(struct vhu_blk *blk, const void *zeroes,
		      const struct vhu_blk_req *req, bool *through)
{
	for (unsigned i = 0; i < req->n_segs; i++) {
		const struct vhu_blk_seg *sg = &req->segs[i];
		uint64_t off = sg->sector << VHU_BLK_SECTOR_SHIFT;
		uint64_t len = (uint64_t)sg->num_sectors << VHU_BLK_SECTOR_SHIFT;
		int r;

		if (len == 0)
			continue;
		if (req->type == VHU_BLK_T_DISCARD)
			r = seg_discard(blk, off, len);
		else
			r = seg_zeroes(blk, zeroes, off, len,
				       (sg->flags & VHU_BLK_SEG_F_UNMAP) != 0);
		if (r < 0)
			return r;
	}
	if (!atomic_load(&blk->wce)) {
		if (fdatasync(blk->fd) < 0)
			return -errno;
		*through = true;
	}
	return 0;
}

/* At most one warning per queue every 10 s, with the count it stands
 * for: a guest's discards must not flood the log. */
void vhu__blk_seg_failed(struct vhu__blk_ratelimit *rl, unsigned queue,
			 uint32_t type, int err)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	rl->count++;
	if (rl->logged && now.tv_sec - rl->last < 10)
		return;
	vhu__blk_log(VHU_LOG_WARN, "queue %u: %s failed: %s (%u failure%s "
		     "since the last report)", queue,
		     type == VHU_BLK_T_DISCARD ? "discard" : "write zeroes",
		     strerror(-err), rl->count,
		     rl->count == 1 ? "" : "s");
	rl->logged = true;
	rl->last = now.tv_sec;
	rl->count = 0;
}

