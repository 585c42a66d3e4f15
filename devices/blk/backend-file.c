/* SPDX-License-Identifier: MIT */
/*
 * The file back-end: a raw regular file or block device (image.c opens
 * it).  Reads, writes and flushes go through the queue's io_uring (or,
 * for the blocking engine, preadv2 / pwritev2 / fdatasync on the queue's
 * thread); buffered reads and writes that need no waiting are done
 * inline (try_inline); --cache none copies unaligned guest buffers
 * through bounded bounce buffers; DISCARD and WRITE_ZEROES are
 * segments.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vhu/iov.h>

#include "backend.h"
#include "blk-int.h"

#define MAX_RETRIES 16u
#define DIO_ALIGN 4096u
/* Bounce buffers carry a request in chunks of at most this much. */
#define BOUNCE_CHUNK (256u << 10)

struct fq {
	struct vhu__blk_worker *w;
	struct vhu_blk *blk;
	struct vhu__blk_stats *stats;
	bool sync;          /* blocking engine */
	bool no_nowait;     /* the image refused RWF_NOWAIT: always queue */
	void *zeroes;       /* VHU__BLK_ZERO_BUF aligned zero bytes */
	/* Bounce memory of this queue: never more than VHU_BLK_BOUNCE_BUDGET;
	 * requests that would exceed it wait in FIFO order. */
	size_t bounce_used;
	struct vhu__blk_io *wait_head, *wait_tail;
	struct vhu__blk_ratelimit seg_rl; /* discard / zeroes failures */
};

static void fdone(struct fq *q, struct vhu__blk_io *io, int st, size_t n)
{
	if (io->bounce) {
		free(io->bounce);
		io->bounce = NULL;
		q->bounce_used -= io->bounce_len;
		vhu__blk_stat_add(&q->stats->bounce_bytes, -(uint64_t)io->bounce_len);
		io->bounce_len = 0;
	}
	vhu__blk_io_done(q->w, io, st, n);
}

/* O_DIRECT takes guest memory as it is when every buffer starts on the
 * host's memory alignment and is whole blocks of its offset alignment. */
static bool aligned_iov(const struct vhu_blk_geometry *g,
			const struct iovec *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if ((uintptr_t)iov[i].iov_base % g->dio_mem ||
		    iov[i].iov_len % g->dio_offset)
			return false;
	return true;
}

static void file_uring_done(void *ctx, struct vhu__blk_io *io, int res);

/* The blocking engine's read or write: done here, then handled as an
 * io_uring completion would be (which may submit the rest). */
static void sync_rw(struct fq *q, struct vhu__blk_io *io,
		    const struct iovec *iov, unsigned n, off_t off, int flags)
{
	ssize_t r;

	if (io->req.type == VHU_BLK_T_IN)
		r = preadv2(q->blk->fd, iov, (int)n, off, 0);
	else
		r = pwritev2(q->blk->fd, iov, (int)n, off, flags);
	file_uring_done(q, io, r < 0 ? -errno : (int)(r > INT_MAX ? INT_MAX : r));
}

/* Submit the rest of a read or write, from io->done on. */
static int submit_rw(struct fq *q, struct vhu__blk_io *io)
{
	struct vhu_blk_req *req = &io->req;
	uint64_t off = (req->sector << VHU_BLK_SECTOR_SHIFT) + io->done;
	size_t left = req->data_len - io->done;
	struct io_uring_sqe *sqe;
	struct iovec *iov;
	unsigned n;

	if (io->bounce) {
		/* One chunk at a time through the bounce buffer. */
		if (left > io->bounce_len)
			left = io->bounce_len;
		if (req->type == VHU_BLK_T_OUT)
			vhu_iov_to_buf(req->data, req->n_data, io->done, io->bounce,
				       left);
		io->cur[0].iov_base = io->bounce;
		io->cur[0].iov_len = left;
		iov = io->cur;
		n = 1;
	} else if (io->done == 0) {
		iov = req->data;
		n = req->n_data;
	} else {
		int r = vhu_iov_slice(req->data, req->n_data, io->done, left,
				      io->cur, VHU_BLK_IOV_CAP);
		if (r < 0)
			return r;
		iov = io->cur;
		n = (unsigned)r;
	}

	if (q->sync) {
		sync_rw(q, io, iov, n, (off_t)off, io->through ? RWF_DSYNC : 0);
		return 0;
	}
	sqe = vhu__blk_q_sqe(q->w, io);
	if (!sqe)
		return -EBUSY;
	if (req->type == VHU_BLK_T_IN) {
		io_uring_prep_readv(sqe, q->blk->fd, iov, n, off);
	} else {
		/* Write-through (wce = 0, 5.2.5): each write is durable on
		 * completion, as if followed by a flush. */
		int flags = io->through ? RWF_DSYNC : 0;

		io_uring_prep_writev2(sqe, q->blk->fd, iov, n, off, flags);
	}
	io_uring_sqe_set_data(sqe, io);
	return 0;
}

/*
 * Page-cache fast path for buffered I/O: a preadv2/pwritev2 with
 * RWF_NOWAIT completes inline when it needs no blocking (cached data,
 * writable page cache), which costs far less than a round trip through
 * io_uring and, for files whose reads io_uring would hand to a kernel
 * worker thread, saves that thread's CPU too.  Whatever it leaves undone
 * (EAGAIN, a short transfer) goes through io_uring as usual.  Images on
 * tmpfs/ramfs refuse RWF_NOWAIT, but their I/O is a memory copy that never
 * waits for a device: those are copied inline without the flag.
 * Returns the bytes done inline (0 when none).
 */
static size_t try_inline(struct fq *q, struct vhu__blk_io *io)
{
	struct vhu_blk_req *req = &io->req;
	off_t off = (off_t)(req->sector << VHU_BLK_SECTOR_SHIFT);
	int nowait = q->blk->mem_backed ? 0 : RWF_NOWAIT;
	ssize_t r;

	if (q->no_nowait || q->blk->cache == VHU_BLK_CACHE_NONE ||
	    req->n_data > IOV_MAX)
		return 0;
	/* An image in memory: a copy through its mapping (imgmap.c);
	 * write-through writes keep RWF_DSYNC below. */
	if (q->blk->map && !io->through) {
		size_t n = vhu__blk_map_copy(q->blk, req);

		if (n)
			return n;
	}
	if (req->type == VHU_BLK_T_IN) {
		r = preadv2(q->blk->fd, req->data, (int)req->n_data, off,
			    nowait);
	} else {
		/* Write-through wants each write durable: leave it to
		 * io_uring with RWF_DSYNC. */
		if (io->through)
			return 0;
		r = pwritev2(q->blk->fd, req->data, (int)req->n_data, off,
			     nowait);
	}
	if (r < 0) {
		if (errno == EOPNOTSUPP || errno == EINVAL)
			q->no_nowait = true;
		return 0;
	}
	return (size_t)r;
}

/* Give io a bounce buffer: one chunk of the request (at most BOUNCE_CHUNK,
 * a multiple of the direct-I/O alignment) within the queue's budget.
 * Returns 1 when io has one, 0 when io now waits for memory (it is started
 * when another request frees some; FIFO, so none starves), -errno. */
static int take_bounce(struct fq *q, struct vhu__blk_io *io)
{
	size_t len = io->req.data_len - io->done;
	size_t align = q->blk->geo.dio_mem > DIO_ALIGN ? q->blk->geo.dio_mem
						       : DIO_ALIGN;

	if (len > BOUNCE_CHUNK)
		len = BOUNCE_CHUNK;
	if (q->bounce_used + len > VHU_BLK_BOUNCE_BUDGET ||
	    (q->wait_head && q->wait_head != io)) {
		if (q->wait_head != io) {
			io->next = NULL;
			if (q->wait_tail)
				q->wait_tail->next = io;
			else
				q->wait_head = io;
			q->wait_tail = io;
		}
		return 0;
	}
	if (posix_memalign(&io->bounce, align, len)) {
		io->bounce = NULL;
		return -ENOMEM;
	}
	io->bounce_len = len;
	q->bounce_used += len;
	vhu__blk_stat_add(&q->stats->bounce_bytes, len);
	if (atomic_load_explicit(&q->stats->bounce_bytes, memory_order_relaxed) >
	    atomic_load_explicit(&q->stats->bounce_peak, memory_order_relaxed))
		atomic_store_explicit(&q->stats->bounce_peak,
				      atomic_load_explicit(&q->stats->bounce_bytes,
							   memory_order_relaxed),
				      memory_order_relaxed);
	return 1;
}

/* Start the requests waiting for bounce memory while it lasts. */
static void file_round(void *ctx)
{
	struct fq *q = ctx;

	while (q->wait_head) {
		struct vhu__blk_io *io = q->wait_head;
		int r = take_bounce(q, io);

		if (r == 0)
			return;
		q->wait_head = io->next;
		if (!q->wait_head)
			q->wait_tail = NULL;
		if (r > 0)
			r = submit_rw(q, io);
		if (r < 0)
			fdone(q, io, VHU_BLK_S_IOERR, 0);
	}
}

/* 1: nothing to transfer; 2: done inline; 0: queued; -errno. */
static int start_rw(struct fq *q, struct vhu__blk_io *io)
{
	struct vhu_blk_req *req = &io->req;

	io->done = 0;
	io->retries = 0;
	/* Decided once per request, so a retry or the rest of a short
	 * transfer is as durable as its start. */
	io->through = req->type == VHU_BLK_T_OUT && io->write_through;
	if (req->data_len == 0)
		return 1;
	io->done = try_inline(q, io);
	if (io->done >= req->data_len)
		return 2;
	/* O_DIRECT needs aligned memory; guest buffers usually are, the
	 * rest go through a bounce buffer (bounded: see take_bounce). */
	if (q->blk->cache == VHU_BLK_CACHE_NONE &&
	    !aligned_iov(&q->blk->geo, req->data, req->n_data)) {
		int r = take_bounce(q, io);

		if (r <= 0)
			return r;  /* waits for memory, or failed */
	}
	return submit_rw(q, io);
}

static int submit_flush(struct fq *q, struct vhu__blk_io *io)
{
	struct io_uring_sqe *sqe;

	if (q->sync) {
		int r = fdatasync(q->blk->fd);

		fdone(q, io, r < 0 ? VHU_BLK_S_IOERR : VHU_BLK_S_OK, 0);
		return 0;
	}
	sqe = vhu__blk_q_sqe(q->w, io);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_fsync(sqe, q->blk->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, io);
	return 0;
}

static void file_submit(void *ctx, struct vhu__blk_io *io)
{
	struct fq *q = ctx;
	struct vhu_blk_req *req = &io->req;
	int r;

	switch (req->type) {
	case VHU_BLK_T_IN:
	case VHU_BLK_T_OUT:
		r = start_rw(q, io);
		if (r == 1)
			fdone(q, io, VHU_BLK_S_OK, 0);
		else if (r == 2)
			fdone(q, io, VHU_BLK_S_OK, req->data_len);
		else if (r < 0)
			fdone(q, io, VHU_BLK_S_IOERR, 0);
		return;
	case VHU_BLK_T_FLUSH:
		if (submit_flush(q, io) < 0)
			fdone(q, io, VHU_BLK_S_IOERR, 0);
		return;
	case VHU_BLK_T_DISCARD:
	case VHU_BLK_T_WRITE_ZEROES:
		/* Holes may appear: reads stop using the mapping (imgmap.c). */
		vhu__blk_map_holes(q->blk);
		r = vhu__blk_segments(q->blk, q->zeroes, req, &io->through);
		if (r < 0)
			vhu__blk_seg_failed(&q->seg_rl, vhu__blk_q_index(q->w),
					    req->type, r);
		/* A write-zeroes the host cannot do is UNSUPP: never OK
		 * for zeroes that were not written. */
		fdone(q, io, r == 0 ? VHU_BLK_S_OK :
			     r == -EOPNOTSUPP || r == -ENOSYS ? VHU_BLK_S_UNSUPP :
			     VHU_BLK_S_IOERR, 0);
		return;
	default:
		fdone(q, io, VHU_BLK_S_UNSUPP, 0);
		return;
	}
}

static void file_uring_done(void *ctx, struct vhu__blk_io *io, int res)
{
	struct fq *q = ctx;
	struct vhu_blk_req *req = &io->req;

	if (req->type == VHU_BLK_T_FLUSH) {
		fdone(q, io, res < 0 ? VHU_BLK_S_IOERR : VHU_BLK_S_OK, 0);
		return;
	}
	if ((res == -EINTR || res == -EAGAIN) && io->retries++ < MAX_RETRIES) {
		if (submit_rw(q, io) < 0)
			fdone(q, io, VHU_BLK_S_IOERR, 0);
		return;
	}
	if (res <= 0) {
		/* 0: end of file, i.e. the image shrank under the request. */
		vhu__blk_log(VHU_LOG_DEBUG, "queue %u: %s at sector %llu: %s",
			     vhu__blk_q_index(q->w),
			     req->type == VHU_BLK_T_IN ? "read" : "write",
			     (unsigned long long)req->sector,
			     res < 0 ? strerror(-res) : "end of image");
		fdone(q, io, VHU_BLK_S_IOERR, 0);
		return;
	}
	if (io->bounce && req->type == VHU_BLK_T_IN)
		vhu_iov_from_buf(req->data, req->n_data, io->done, io->bounce,
				 (size_t)res);
	io->done += (size_t)res;
	if (io->done < req->data_len) {
		/* Short transfer: continue where it stopped. */
		if (submit_rw(q, io) < 0)
			fdone(q, io, VHU_BLK_S_IOERR, 0);
		return;
	}
	fdone(q, io, VHU_BLK_S_OK, req->data_len);
}

static int file_q_open(struct vhu_blk *blk, struct vhu__blk_worker *w,
		       void **ctx)
{
	struct fq *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	if (posix_memalign(&q->zeroes, DIO_ALIGN, VHU__BLK_ZERO_BUF)) {
		free(q);
		return -ENOMEM;
	}
	memset(q->zeroes, 0, VHU__BLK_ZERO_BUF);
	q->w = w;
	q->blk = blk;
	q->stats = vhu__blk_q_stats(w);
	q->sync = vhu__blk_q_sync(w);
	/* A queue start is a moment to see whether holes were filled. */
	vhu__blk_map_dense_check(blk);
	*ctx = q;
	return 0;
}

static void file_q_close(void *ctx)
{
	struct fq *q = ctx;

	if (!q)
		return;
	free(q->zeroes);
	free(q);
}

static int file_size(struct vhu_blk *blk, uint64_t *size)
{
	return vhu__blk_image_size(blk, size);
}

static const char *file_no_resize(const struct vhu_blk *blk)
{
	return blk->blockdev ? "the image is a block device, whose size follows "
			       "the device: resize the device, then call "
			       "\"refresh\" (or send SIGHUP)" : NULL;
}

static int file_resize(struct vhu_blk *blk, uint64_t size)
{
	return ftruncate(blk->fd, (off_t)size) < 0 ? -errno : 0;
}

static void file_close(struct vhu_blk *blk)
{
	/* While the write lock is held, a block device's I/O goes through
	 * its exclusive claim, a descriptor of its own (lock.c). */
	vhu__blk_map_close(blk);
	if (blk->fd >= 0 && blk->fd != blk->lock_fd)
		close(blk->fd);
	if (blk->lock_fd >= 0)
		close(blk->lock_fd);
	blk->fd = -1;
	blk->lock_fd = -1;
}

const struct vhu__blk_backend_ops vhu__blk_file_ops = {
	.kind = "file",
	.size = file_size,
	.no_resize = file_no_resize,
	.resize = file_resize,
	.close = file_close,
	.q_open = file_q_open,
	.q_close = file_q_close,
	.submit = file_submit,
	.uring_done = file_uring_done,
	.round = file_round,
};
