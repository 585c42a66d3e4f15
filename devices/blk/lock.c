/* SPDX-License-Identifier: MIT */
/*
 * Image locking and its hand-over between two vhu-blk processes (a live
 * migration on one host: docs/vhu-blk.md, Locking).
 *
 * The byte ranges are QEMU's file driver's (OFD locks, so they belong to
 * the open file, not the process): a shared lock on byte 100 + bit for
 * each permission held, on byte 200 + bit for each permission not shared
 * with others.  Using the same bytes makes vhu-blk, QEMU and
 * qemu-storage-daemon see each other.
 *
 * A writable vhu-blk holds the read permission and shares everything
 * from open to exit; it takes the write permission (and stops sharing
 * write and resize) when the front-end starts the first queue and gives
 * it back when the last queue stops for real (vhu_vq_is_restarting()
 * tells a dirty-logging switch from that).  A source's rings stop before
 * its destination's start, so the lock passes from one to the other and
 * the two never write at once.  A read-only vhu-blk holds read and shares
 * neither write nor resize, from open to exit.
 *
 * A block device is also claimed exclusively (open with O_EXCL: mounts
 * and other exclusive openers conflict, which file locks miss) on a
 * second descriptor, held exactly as long as the write permission and
 * used for the I/O meanwhile; the locks stay on the first (lock_fd).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blk-int.h"

#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200
/* Not one of QEMU's bytes: held with the write permission by a vhu-blk,
 * which gives it back when its rings stop.  A second vhu-blk (the
 * destination of a migration) tells that writer by it from one that
 * keeps the image for good (QEMU, qemu-storage-daemon). */
#define LOCK_HANDOVER    300

enum { PERM_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE, PERM_BITS };
#define BIT(p) (1u << (p))
#define WRITER_PERMS (BIT(PERM_WRITE) | BIT(PERM_WRITE_UNCHANGED) | BIT(PERM_RESIZE))
#define WRITER_UNSHARED (BIT(PERM_WRITE) | BIT(PERM_RESIZE))

/* Tries over about half a second when the first queue starts: the
 * source of a migration may still be giving the lock back. */
#define TAKE_TRIES 10
#define TAKE_WAIT_NS 50000000L

static const char *const perm_names[PERM_BITS] = {
	"consistent read", "write", "write unchanged", "resize",
};

static const char *const state_names[] = {
	[VHU_BLK_LOCK_OFF] = "off",
	[VHU_BLK_LOCK_NONE] = "none",
	[VHU_BLK_LOCK_SHARED] = "shared",
	[VHU_BLK_LOCK_WRITE] = "write",
	[VHU_BLK_LOCK_CONFLICT] = "conflict",
};

const char *vhu_blk_lock_name(enum vhu_blk_lock_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ?
	       state_names[s] : "?";
}

enum vhu_blk_lock_state vhu_blk_lock_state(const struct vhu_blk *blk)
{
	return atomic_load(&blk->lock_state);
}

/* type F_RDLCK (take) or F_UNLCK (give back) on one byte. */
static int set_byte(int fd, off_t off, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET,
			    .l_start = off, .l_len = 1 };

	return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

static int set_bits(int fd, off_t base, unsigned bits, short type)
{
	for (unsigned i = 0; i < PERM_BITS; i++) {
		int r = (bits & BIT(i)) ? set_byte(fd, base + i, type) : 0;

		if (r < 0)
			return r;
	}
	return 0;
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

/* Holding perms and sharing none of unshared: the first conflict with
 * another open file, described in why; false when there is none. */
static bool conflict(int fd, unsigned perms, unsigned unshared, char *why,
		     size_t len)
{
	for (unsigned i = 0; i < PERM_BITS; i++) {
		if ((perms & BIT(i)) &&
		    locked_elsewhere(fd, LOCK_SHARED_BASE + i) > 0) {
			snprintf(why, len, "does not share the %s permission",
				 perm_names[i]);
			return true;
		}
		if ((unshared & BIT(i)) &&
		    locked_elsewhere(fd, LOCK_PERM_BASE + i) > 0) {
			snprintf(why, len, "holds the %s permission",
				 perm_names[i]);
			return true;
		}
	}
	return false;
}

static bool no_locking(int r)
{
	return r == -EINVAL || r == -ENOSYS || r == -EOPNOTSUPP || r == -ENOLCK;
}

/* Claim the block device exclusively (open with O_EXCL: -EBUSY when it
 * is mounted or claimed elsewhere).  keep: the claim becomes the I/O
 * descriptor (the kernel lets only the claim's own descriptor discard
 * and zero ranges that have cached pages); else it is closed again. */
static int claim_blockdev(struct vhu_blk *blk, bool keep)
{
	int fd = open(blk->path, keep ? blk->open_flags | O_EXCL
				      : O_RDONLY | O_EXCL | O_CLOEXEC);
	struct stat a, b;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &a) < 0 || fstat(blk->lock_fd, &b) < 0 ||
	    a.st_rdev != b.st_rdev) {
		close(fd);
		return -ESTALE;         /* the path names another device now */
	}
	if (keep)
		blk->fd = fd;
	else
		close(fd);
	return 0;
}

static int lock_at_open_ro(struct vhu_blk *blk, int fd, const char *path)
{
	char why[96];
	int r = set_bits(fd, LOCK_PERM_BASE, BIT(PERM_READ), F_RDLCK);

	if (r == 0)
		r = set_bits(fd, LOCK_SHARED_BASE, WRITER_UNSHARED, F_RDLCK);
	if (r < 0)
		return r;
	if (!conflict(fd, BIT(PERM_READ), WRITER_UNSHARED, why, sizeof(why)))
		return 0;
	vhu__blk_open_error(blk, "'%s' is locked: another process (vhu-blk, QEMU, "
		"qemu-storage-daemon) has it open and %s, which a read-only "
		"vhu-blk does not share; stop it, or pass --lock off if you are "
		"sure", path, why);
	return -EBUSY;
}

/* A writer at open: read only, everything shared.  What is refused: a
 * process that does not share read, a reader that does not share write,
 * a writer that keeps the image for as long as it runs (QEMU,
 * qemu-storage-daemon, qemu-io: no hand-over byte).  Another vhu-blk
 * writing it now is the source of a migration: a warning. */
static int lock_at_open_rw(struct vhu_blk *blk, int fd, const char *path)
{
	int r = set_byte(fd, LOCK_PERM_BASE + PERM_READ, F_RDLCK);
	bool writer, unshared, handover;
	const char *why = NULL;

	if (r < 0)
		return r;
	writer = locked_elsewhere(fd, LOCK_PERM_BASE + PERM_WRITE) > 0;
	unshared = locked_elsewhere(fd, LOCK_SHARED_BASE + PERM_WRITE) > 0;
	handover = locked_elsewhere(fd, LOCK_HANDOVER) > 0;
	if (locked_elsewhere(fd, LOCK_SHARED_BASE + PERM_READ) > 0)
		why = "and does not share the consistent read permission";
	else if (unshared && !writer)
		why = "read-only and does not share the write permission";
	else if (writer && !handover)
		why = "with the write permission, and is no vhu-blk that "
		      "hands it over when its guest stops";
	if (why) {
		vhu__blk_open_error(blk, "'%s' is locked: another process "
			"(vhu-blk, QEMU, qemu-storage-daemon) has it open %s; "
			"stop it, or pass --lock off if you are sure", path, why);
		return -EBUSY;
	}
	if (blk->blockdev) {
		r = claim_blockdev(blk, false);
		if (r == -EBUSY && !handover) {
			vhu__blk_open_error(blk, "'%s' is in use: mounted, or opened "
				"exclusively by another process; pass --lock off "
				"if you are sure", path);
			return -EBUSY;
		}
	}
	if (writer)
		vhu__blk_log(VHU_LOG_WARN, "'%s' is being written by another "
			     "vhu-blk (serving a running guest): this one takes "
			     "the write lock when its front-end starts the queues "
			     "(as the destination of a migration does, once the "
			     "source stopped) and serves no request while the "
			     "other writes", path);
	return 0;
}

int vhu__blk_image_lock(struct vhu_blk *blk, int fd, const char *path)
{
	int r = blk->read_only ? lock_at_open_ro(blk, fd, path)
			       : lock_at_open_rw(blk, fd, path);

	if (no_locking(r)) {
		vhu__blk_log(VHU_LOG_WARN, "'%s': file locking not supported "
			     "here (%s): another writer would go unnoticed",
			     path, strerror(-r));
		atomic_store(&blk->lock_state, VHU_BLK_LOCK_NONE);
		return 0;
	}
	if (r < 0)
		return r;
	atomic_store(&blk->lock_state, VHU_BLK_LOCK_SHARED);
	return 0;
}

static void give_back(struct vhu_blk *blk)
{
	(void)set_bits(blk->lock_fd, LOCK_PERM_BASE, WRITER_PERMS, F_UNLCK);
	(void)set_bits(blk->lock_fd, LOCK_SHARED_BASE, WRITER_UNSHARED, F_UNLCK);
	(void)set_byte(blk->lock_fd, LOCK_HANDOVER, F_UNLCK);
	if (blk->fd != blk->lock_fd)
		close(blk->fd);
	blk->fd = blk->lock_fd;
}

/* One try: every byte taken, then the conflicts checked (two processes
 * trying at once may both fail, never both succeed). */
static bool try_take(struct vhu_blk *blk, char *why, size_t len)
{
	int r = blk->blockdev ? claim_blockdev(blk, true) : 0;

	if (r < 0) {
		snprintf(why, len, "the block device is %s",
			 r == -EBUSY ? "mounted, or opened exclusively elsewhere"
				     : strerror(-r));
		return false;
	}
	r = set_bits(blk->lock_fd, LOCK_PERM_BASE, WRITER_PERMS, F_RDLCK);
	if (r == 0)
		r = set_bits(blk->lock_fd, LOCK_SHARED_BASE, WRITER_UNSHARED,
			     F_RDLCK);
	if (r == 0)
		r = set_byte(blk->lock_fd, LOCK_HANDOVER, F_RDLCK);
	if (r < 0) {
		snprintf(why, len, "locking failed: %s", strerror(-r));
	} else {
		char what[64];

		if (!conflict(blk->lock_fd, WRITER_PERMS, WRITER_UNSHARED, what,
			      sizeof(what)))
			return true;
		snprintf(why, len, "another process (vhu-blk, QEMU, "
			 "qemu-storage-daemon) %s", what);
	}
	give_back(blk);
	return false;
}

void vhu__blk_lock_take(struct vhu_blk *blk, bool wait)
{
	enum vhu_blk_lock_state s = atomic_load(&blk->lock_state);
	char why[160];

	if (blk->read_only ||
	    (s != VHU_BLK_LOCK_SHARED && s != VHU_BLK_LOCK_CONFLICT))
		return;
	for (unsigned i = 0;; i++) {
		if (try_take(blk, why, sizeof(why))) {
			atomic_store(&blk->lock_state, VHU_BLK_LOCK_WRITE);
			vhu__blk_log(VHU_LOG_INFO, "'%s': write lock taken (queues "
				     "started)", blk->path);
			return;
		}
		if (!wait || i + 1 >= TAKE_TRIES)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = TAKE_WAIT_NS }, NULL);
	}
	atomic_store(&blk->lock_state, VHU_BLK_LOCK_CONFLICT);
	vhu__blk_log(VHU_LOG_ERROR, "'%s': no write lock: %s.  Every request "
		     "fails with an I/O error until the queues start again with "
		     "the other writer gone", blk->path, why);
}

void vhu__blk_lock_release(struct vhu_blk *blk)
{
	enum vhu_blk_lock_state s = atomic_load(&blk->lock_state);

	if (s == VHU_BLK_LOCK_WRITE) {
		give_back(blk);
		vhu__blk_log(VHU_LOG_INFO, "'%s': write lock released (queues "
			     "stopped)", blk->path);
	}
	if (s == VHU_BLK_LOCK_WRITE || s == VHU_BLK_LOCK_CONFLICT)
		atomic_store(&blk->lock_state, VHU_BLK_LOCK_SHARED);
}

/* A resize changes the image under every other user: it needs QEMU's
 * resize permission, which a writer serving a running guest (vhu-blk with
 * the write lock, QEMU, qemu-storage-daemon) and a read-only vhu-blk do
 * not share.  A writer whose queues run holds it already; otherwise it is
 * taken for the resize alone, the conflict checked after (as try_take). */
int vhu__blk_lock_resize(struct vhu_blk *blk)
{
	enum vhu_blk_lock_state s = atomic_load(&blk->lock_state);
	char what[64];
	int r;

	if (s != VHU_BLK_LOCK_SHARED && s != VHU_BLK_LOCK_CONFLICT)
		return 0;       /* off, none (no file locks), or held */
	r = set_byte(blk->lock_fd, LOCK_PERM_BASE + PERM_RESIZE, F_RDLCK);
	if (r < 0) {
		snprintf(blk->resize_why, sizeof(blk->resize_why), "cannot take "
			 "the resize lock of '%s': %s", blk->path, strerror(-r));
		return r;
	}
	if (!conflict(blk->lock_fd, BIT(PERM_RESIZE), 0, what, sizeof(what)))
		return 0;
	(void)set_byte(blk->lock_fd, LOCK_PERM_BASE + PERM_RESIZE, F_UNLCK);
	snprintf(blk->resize_why, sizeof(blk->resize_why), "'%s' is locked: "
		 "another process (vhu-blk, QEMU, qemu-storage-daemon) has it "
		 "open and %s (it serves a running guest, or reads the image); "
		 "resize it there, or once it stopped", blk->path, what);
	return -EBUSY;
}

void vhu__blk_unlock_resize(struct vhu_blk *blk)
{
	enum vhu_blk_lock_state s = atomic_load(&blk->lock_state);

	/* OFD locks do not count: with the write lock taken meanwhile (a
	 * shrink's resume), the byte is the write lock's now. */
	if (s == VHU_BLK_LOCK_SHARED || s == VHU_BLK_LOCK_CONFLICT)
		(void)set_byte(blk->lock_fd, LOCK_PERM_BASE + PERM_RESIZE,
			       F_UNLCK);
}

void vhu__blk_lock_denied(struct vhu_blk *blk, unsigned queue)
{
	uint64_t n = atomic_fetch_add(&blk->lock_denied, 1) + 1;
	struct timespec now;
	int64_t last, at;

	clock_gettime(CLOCK_MONOTONIC, &now);
	at = (int64_t)now.tv_sec + 1;   /* 0: never reported */
	last = atomic_load(&blk->lock_denied_at);
	if (last && at - last < 10)
		return;
	if (!atomic_compare_exchange_strong(&blk->lock_denied_at, &last, at))
		return;
	vhu__blk_log(VHU_LOG_ERROR, "queue %u: request failed with an I/O error: "
		     "no write lock on '%s' (another process writes it); %llu "
		     "request%s refused so far", queue, blk->path,
		     (unsigned long long)n, n == 1 ? "" : "s");
}
