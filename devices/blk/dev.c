/* SPDX-License-Identifier: MIT */
/*
 * The vhu-blk device object: options, features, config space and the
 * vhu_device_ops callbacks (all on the control thread).
 */
#include <ctype.h>
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "blk-int.h"
#include "rbd.h"

/* What is in force: write-back only when the driver can flush (5.2.5)
 * and did not turn the cache off. */
static void apply_wce(struct vhu_blk *blk)
{
	atomic_store(&blk->wce, blk->flush_ok && blk->guest_wce);
}

static void blk_features_set(void *opaque, uint64_t features)
{
	struct vhu_blk *blk = opaque;

	/* 5.2.5: without FLUSH the device must be write-through.  With it,
	 * the guest's writeback choice stays: QEMU sends SET_FEATURES on
	 * every device start (VM stop/cont, reconnect), which is no reset
	 * of the driver's configuration. */
	blk->flush_ok = (features & VHU_BIT(VHU_BLK_F_FLUSH)) != 0;
	apply_wce(blk);
}

static unsigned queues_running(const struct vhu_blk *blk)
{
	unsigned n = 0;

	for (unsigned i = 0; i < blk->num_queues; i++)
		n += blk->runners[i] != NULL;
	return n;
}

/* No queue runs any more, for real: the write lock goes (lock.c, and
 * a back-end's own, RBD's), so a migration's destination can take it. */
static void queues_off(struct vhu_blk *blk)
{
	vhu__blk_lock_release(blk);
	if (blk->be && blk->be->queues_off)
		blk->be->queues_off(blk);
}

static void blk_queue_started(void *opaque, struct vhu_vq *vq)
{
	struct vhu_blk *blk = opaque;
	unsigned idx = vhu_vq_index(vq);
	int r;

	if (idx >= blk->num_queues || blk->runners[idx])
		return;
	/* The write lock comes with the queues (lock.c); a restart at the
	 * same positions keeps what the queues had. */
	if (!vhu_vq_is_restarting(vq)) {
		bool first = queues_running(blk) == 0;

		vhu__blk_lock_take(blk, first);
		if (first && blk->be->queues_on)
			blk->be->queues_on(blk);
	}
	blk->vqs[idx] = vq;
	r = vhu__blk_run_start(blk, vq,
			       blk->num_groups ? blk->groups[idx % blk->num_groups]
					       : NULL,
			       &blk->runners[idx]);
	if (r < 0) {
		blk->runners[idx] = NULL;
		vhu__blk_log(VHU_LOG_ERROR, "queue %u: cannot start: %s", idx,
			     strerror(-r));
	}
}

/* Ask the queue's engine to stop without waiting: the session begins
 * every stop of an all-queue stop before it waits in queue_stopped, so
 * queues behind a server that does not answer give up together. */
static void blk_queue_stop_begin(void *opaque, struct vhu_vq *vq)
{
	struct vhu_blk *blk = opaque;
	unsigned idx = vhu_vq_index(vq);

	if (idx < blk->num_queues)
		vhu__blk_run_stop_begin(blk->runners[idx]);
}

static void blk_queue_stopped(void *opaque, struct vhu_vq *vq)
{
	struct vhu_blk *blk = opaque;
	unsigned idx = vhu_vq_index(vq);

	if (idx >= blk->num_queues)
		return;
	vhu__blk_run_stop(blk->runners[idx]);
	blk->runners[idx] = NULL;
	blk->vqs[idx] = NULL;
	/* The last queue stopped for real (GET_VRING_BASE of a migration,
	 * a VM stop, disable, reset, disconnect): the write lock goes, so
	 * a migration's destination can take it. */
	if (!vhu_vq_is_restarting(vq) && queues_running(blk) == 0)
		queues_off(blk);
}

/* A queue paused for a change that could not start again: its stop was
 * a real one after all, and the write lock goes with the last queue. */
static void blk_queue_restart_failed(void *opaque, struct vhu_vq *vq)
{
	struct vhu_blk *blk = opaque;

	(void)vq;
	if (queues_running(blk) == 0)
		queues_off(blk);
}

static void build_config(const struct vhu_blk *blk, uint8_t *cfg)
{
	struct vhu_blk_config_in in = {
		.capacity = atomic_load(&blk->capacity),
		.blk_size = blk->blk_size,
		.discard_align = blk->geo.discard,
		.num_queues = blk->num_queues,
		.wce = atomic_load(&blk->wce),
	};

	vhu_blk_config_build(&in, cfg);
}

static int blk_get_config(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
	uint8_t cfg[VHU_BLK_CONFIG_SIZE];

	if (offset > sizeof(cfg) || len > sizeof(cfg) - offset)
		return -EINVAL;
	build_config(opaque, cfg);
	memcpy(buf, cfg + offset, len);
	return 0;
}

static int blk_set_config(void *opaque, uint32_t offset, const void *buf,
			  uint32_t len, uint32_t flags)
{
	struct vhu_blk *blk = opaque;
	const uint8_t *p = buf;

	if (offset > VHU_BLK_CONFIG_SIZE || len > VHU_BLK_CONFIG_SIZE - offset)
		return -EINVAL;
	/* Only writeback is writable (5.2.4); the library has already
	 * refused guest writes elsewhere, and a migration restore carries
	 * only this field of state worth keeping. */
	if (offset <= VHU_BLK_CONFIG_WCE_OFFSET &&
	    VHU_BLK_CONFIG_WCE_OFFSET - offset < len) {
		bool wce = p[VHU_BLK_CONFIG_WCE_OFFSET - offset] != 0;

		blk->guest_wce = wce;
		apply_wce(blk);
		vhu__blk_log(VHU_LOG_INFO, "cache mode: %s",
			     wce ? "write-back" : "write-through");
	} else if (flags != VHU_CONFIG_MIGRATION) {
		return -EPERM;
	}
	return 0;
}

/* Disconnects and device resets alike: the writeback choice waits for
 * device_reset.  The write lock goes with the last queue; here too, for a
 * queue that stopped to restart and never could (vhu_vq_is_restarting). */
static void blk_reset(void *opaque)
{
	struct vhu_blk *blk = opaque;

	if (queues_running(blk) == 0)
		queues_off(blk);
}

/* The guest's device was reset: the cache mode returns to its default. */
static void blk_device_reset(void *opaque)
{
	struct vhu_blk *blk = opaque;

	if (!blk->guest_wce)
		vhu__blk_log(VHU_LOG_INFO, "device reset: cache mode back to write-back");
	blk->guest_wce = true;
	apply_wce(blk);
}

static const struct vhu_device_ops blk_ops = {
	.features_set = blk_features_set,
	.queue_started = blk_queue_started,
	.queue_stopped = blk_queue_stopped,
	.queue_kick = NULL, /* each worker watches its own kick fd */
	.get_config = blk_get_config,
	.set_config = blk_set_config,
	.reset = blk_reset,
	.device_reset = blk_device_reset,
	.queue_stop_begin = blk_queue_stop_begin,
	.queue_restart_failed = blk_queue_restart_failed,
};

static const uint8_t blk_config_writable[VHU_BLK_CONFIG_SIZE] = {
	[VHU_BLK_CONFIG_WCE_OFFSET] = 1,
};

void vhu_blk_backend_opts(struct vhu_blk *blk, struct vhu_backend_opts *o)
{
	uint64_t f = VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_INDIRECT_DESC) |
		     VHU_BIT(VHU_F_EVENT_IDX) | VHU_BIT(VHU_BLK_F_SIZE_MAX) |
		     VHU_BIT(VHU_BLK_F_SEG_MAX) | VHU_BIT(VHU_BLK_F_BLK_SIZE) |
		     VHU_BIT(VHU_BLK_F_TOPOLOGY) | VHU_BIT(VHU_BLK_F_FLUSH) |
		     VHU_BIT(VHU_BLK_F_CONFIG_WCE) | VHU_BIT(VHU_BLK_F_MQ) |
		     VHU_BIT(VHU_BLK_F_DISCARD) | VHU_BIT(VHU_BLK_F_WRITE_ZEROES) |
		     VHU_BIT(VHU_F_RING_PACKED);

	if (blk->read_only)
		f |= VHU_BIT(VHU_BLK_F_RO);
	/* Not offered when the storage cannot do it: the guest then writes
	 * zero blocks itself rather than meet UNSUPP on every attempt. */
	if (blk->no_write_zeroes)
		f &= ~VHU_BIT(VHU_BLK_F_WRITE_ZEROES);
	memset(o, 0, sizeof(*o));
	o->ops = &blk_ops;
	o->opaque = blk;
	o->features = f;
	o->protocol_features = VHU_BIT(VHU_PF_MQ) | VHU_BIT(VHU_PF_REPLY_ACK) |
			       VHU_BIT(VHU_PF_BACKEND_REQ) | VHU_BIT(VHU_PF_CONFIG) |
			       VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS) |
			       /* a restarted vhu-blk resubmits what it had
				* in flight (split and packed rings) */
			       VHU_BIT(VHU_PF_INFLIGHT_SHMFD);
	o->num_queues = blk->num_queues;
	o->max_queue_size = 0;
	o->config_size = VHU_BLK_CONFIG_SIZE;
	o->config_writable = blk_config_writable;
}

/*
 * The default serial: the image's file name (at most 11 bytes, characters
 * other than [A-Za-z0-9._-] as '_') and a hash of its absolute path, so
 * two disk.img in different directories do not share a /dev/disk/by-id
 * name, and a restart on the same path gives the same serial.  The
 * directory is resolved (symlinks, "..") but not the file name itself,
 * so /dev/disk/by-id/NAME stays NAME and not the /dev/sdX it points to.
 */
static void default_serial(char *out, const char *path)
{
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
	char *real = dir ? realpath(dir, NULL) : NULL;
	uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a, 64 bits */
	size_t n = 0;

	for (const char *p = real ? real : path; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	if (real) {
		h = (h ^ '/') * 0x100000001b3ull;
		for (const char *p = base; *p; p++)
			h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	}
	free(real);
	free(dir);
	memset(out, 0, VHU_BLK_ID_BYTES + 1);
	for (; base[n] && n < 11; n++) {
		char c = base[n];

		out[n] = (isalnum((unsigned char)c) || c == '.' || c == '_' ||
			  c == '-') ? c : '_';
	}
	snprintf(out + n, VHU_BLK_ID_BYTES + 1 - n, "-%08x",
		 (unsigned)(h ^ (h >> 32)));
}

int vhu_blk_pick_blk_size(unsigned requested, enum vhu_blk_cache cache,
			  const struct vhu_blk_geometry *g, unsigned *out,
			  char *why, size_t size)
{
	/* Buffered I/O goes through the page cache, which serves any
	 * 512-byte block; O_DIRECT needs the host's alignment. */
	unsigned need = 512, best;

	if (cache == VHU_BLK_CACHE_NONE)
		need = g->dio_offset > g->logical ? g->dio_offset : g->logical;
	/* The default is the host's own block size: what a guest then
	 * aligns to never needs a read-modify-write below us. */
	best = need > g->logical ? need : g->logical;
	if (requested == 0) {
		*out = best <= 512 ? 512 : 4096;
		if (best <= 4096)
			return 0;
		snprintf(why, size, "the host needs %u-byte blocks; vhu-blk "
			 "serves 512 or 4096", best);
		return -EINVAL;
	}
	if (requested % need == 0) {
		*out = requested;
		return 0;
	}
	snprintf(why, size, "--blk-size %u with --cache none: the image needs "
		 "direct I/O aligned to %u bytes (logical block size %u); use "
		 "--blk-size %u or --cache writeback", requested, need,
		 g->logical, need <= 4096 ? 4096 : need);
	return -EINVAL;
}

int vhu_blk_probe_io_uring(void)
{
	struct io_uring ring;
	int r = io_uring_queue_init(4, &ring, 0);

	if (r < 0)
		return r;
	io_uring_queue_exit(&ring);
	return 0;
}

/* io_uring unavailable must not leave the guest's I/O hanging: use the
 * blocking engine, or refuse to start when io_uring was asked for. */
static int pick_aio(struct vhu_blk *blk, enum vhu_blk_aio want)
{
	int r;

	if (want == VHU_BLK_AIO_THREADS) {
		blk->aio = VHU_BLK_AIO_THREADS;
		return 0;
	}
	r = vhu_blk_probe_io_uring();
	if (r == 0) {
		blk->aio = VHU_BLK_AIO_IO_URING;
		return 0;
	}
	if (want == VHU_BLK_AIO_IO_URING) {
		vhu__blk_log(VHU_LOG_ERROR, "io_uring is unavailable (%s: a seccomp "
			     "filter, or the kernel.io_uring_disabled sysctl?); "
			     "use --aio threads or --aio auto", strerror(-r));
		return -ENOSYS;
	}
	vhu__blk_log(VHU_LOG_WARN, "io_uring is unavailable (%s); serving I/O "
		     "with blocking calls on the queue threads (--aio threads)",
		     strerror(-r));
	blk->aio = VHU_BLK_AIO_THREADS;
	return 0;
}

/* Free what vhu_blk_new() set up (no runner started). */
static void blk_release(struct vhu_blk *blk)
{
	for (unsigned i = 0; i < blk->num_groups; i++)
		vhu__blk_group_free(blk->groups[i]);
	free(blk->groups);
	if (blk->be && blk->be->close)
		blk->be->close(blk);
	free(blk->path);
	free(blk->stats);
	free(blk->runners);
	free(blk->vqs);
	free(blk);
}

int vhu_blk_new(const struct vhu_blk_opts *opts, struct vhu_blk **out)
{
	struct vhu_blk *blk;
	int r;

	if (!opts || !opts->path || !out)
		return -EINVAL;
	if (opts->num_queues < 1 || opts->num_queues > VHU_BACKEND_MAX_QUEUES)
		return -EINVAL;
	if (opts->blk_size != 0 && opts->blk_size != 512 && opts->blk_size != 4096)
		return -EINVAL;
	if (opts->serial && strlen(opts->serial) > VHU_BLK_ID_BYTES)
		return -ENAMETOOLONG;

	blk = calloc(1, sizeof(*blk));
	if (!blk)
		return -ENOMEM;
	blk->fd = -1;
	blk->lock_fd = -1;
	atomic_init(&blk->lock_state, opts->no_lock ? VHU_BLK_LOCK_OFF
						    : VHU_BLK_LOCK_NONE);
	blk->change_fd = -1;
	blk->read_only = opts->read_only;
	blk->cache = opts->cache;
	blk->aio = opts->aio;
	blk->aio_strict = opts->aio == VHU_BLK_AIO_IO_URING;
	blk->blk_size = opts->blk_size ? opts->blk_size : 512;
	blk->num_queues = opts->num_queues;
	blk->queue_depth = opts->queue_depth;
	blk->poll_us = opts->poll_us == VHU_BLK_POLL_US_AUTO ? VHU_BLK_POLL_US_AUTO
		     : opts->poll_us > VHU_BLK_POLL_US_MAX ? VHU_BLK_POLL_US_MAX
							   : opts->poll_us;
	blk->poll_always = opts->poll_always;
	blk->no_lock = opts->no_lock;
	blk->format_raw = opts->format_raw;
	blk->reconnect_timeout = opts->reconnect_timeout;
	blk->nbd_persistent_cache = opts->nbd_persistent_cache;
	blk->err = opts->err;
	blk->err_len = opts->err_len;
	atomic_init(&blk->wce, true);
	blk->guest_wce = true;
	blk->flush_ok = true;
	if (opts->serial) {
		memset(blk->serial, 0, sizeof(blk->serial));
		memcpy(blk->serial, opts->serial, strlen(opts->serial));
	} else if (vhu__blk_rbd_is_uri(opts->path)) {
		/* rbd:POOL/IMAGE[@SNAP], without its options. */
		char *name = strndup(opts->path, strcspn(opts->path + 4, ":") + 4);

		if (!name) {
			r = -ENOMEM;
			goto fail;
		}
		default_serial(blk->serial, name);
		free(name);
	} else {
		default_serial(blk->serial, opts->path);
	}
	blk->path = strdup(opts->path);
	blk->stats = calloc(blk->num_queues, sizeof(*blk->stats));
	blk->runners = calloc(blk->num_queues, sizeof(*blk->runners));
	blk->vqs = calloc(blk->num_queues, sizeof(*blk->vqs));
	if (!blk->path || !blk->stats || !blk->runners || !blk->vqs) {
		r = -ENOMEM;
		goto fail;
	}
	r = vhu__blk_backend_open(blk, opts->path);
	blk->err = NULL;
	if (r < 0)
		goto fail;
	if (blk->poll_us == VHU_BLK_POLL_US_AUTO)
		blk->poll_us = blk->be->remote ? 0 : VHU_BLK_POLL_US_DEFAULT;
	{
		char why[200];
		uint64_t size = atomic_load(&blk->size);

		/* Buffered I/O on a regular file works at 512 whatever the
		 * file system; anything else must fit what the host needs. */
		r = vhu_blk_pick_blk_size(opts->blk_size, blk->cache, &blk->geo,
					  &blk->blk_size, why, sizeof(why));
		if (r < 0) {
			vhu__blk_log(VHU_LOG_ERROR, "%s: %s", opts->path, why);
			goto fail;
		}
		if (!opts->blk_size && blk->blk_size != 512)
			vhu__blk_log(VHU_LOG_INFO, "%s: block size %u (host logical "
				     "block size %u, direct-I/O alignment %u)",
				     opts->path, blk->blk_size, blk->geo.logical,
				     blk->geo.dio_offset);
		vhu__blk_set_size(blk, size);
	}
	r = pick_aio(blk, opts->aio);
	if (r < 0)
		goto fail;
	if (opts->threads && opts->threads < blk->num_queues) {
		blk->groups = calloc(opts->threads, sizeof(*blk->groups));
		if (!blk->groups) {
			r = -ENOMEM;
			goto fail;
		}
		for (; blk->num_groups < opts->threads; blk->num_groups++) {
			r = vhu__blk_group_new(&blk->groups[blk->num_groups]);
			if (r < 0)
				goto fail;
		}
	}
	*out = blk;
	return 0;
fail:
	blk_release(blk);
	return r;
}

void vhu_blk_free(struct vhu_blk *blk)
{
	if (!blk)
		return;
	for (unsigned i = 0; i < blk->num_queues; i++)
		vhu__blk_run_stop(blk->runners[i]);
	vhu__blk_thr_fini(blk);
	blk_release(blk);
}

int vhu_blk_change_fd(const struct vhu_blk *blk)
{
	return blk->change_fd;
}

uint64_t vhu_blk_size(const struct vhu_blk *blk)
{
	return atomic_load(&blk->size);
}

uint64_t vhu_blk_capacity(const struct vhu_blk *blk)
{
	return atomic_load(&blk->capacity);
}

bool vhu_blk_wce(const struct vhu_blk *blk)
{
	return atomic_load(&blk->wce);
}

bool vhu_blk_read_only(const struct vhu_blk *blk)
{
	return blk->read_only;
}

bool vhu_blk_is_blockdev(const struct vhu_blk *blk)
{
	return blk->blockdev;
}

const char *vhu_blk_serial(const struct vhu_blk *blk)
{
	return blk->serial;
}

unsigned vhu_blk_num_queues(const struct vhu_blk *blk)
{
	return blk->num_queues;
}

unsigned vhu_blk_blk_size(const struct vhu_blk *blk)
{
	return blk->blk_size;
}

const struct vhu_blk_geometry *vhu_blk_geometry(const struct vhu_blk *blk)
{
	return &blk->geo;
}

unsigned vhu_blk_num_threads(const struct vhu_blk *blk)
{
	return blk->num_groups ? blk->num_groups : blk->num_queues;
}

enum vhu_blk_cache vhu_blk_cache_mode(const struct vhu_blk *blk)
{
	return blk->cache;
}

enum vhu_blk_aio vhu_blk_aio(const struct vhu_blk *blk)
{
	return blk->aio;
}

/*
 * Quiesce: stop every started queue.  Each stops popping, lets what it
 * has in flight complete and be pushed, and its engine is freed; nothing
 * touches the image until resume() starts the same queues again (requests
 * the driver adds meanwhile wait in the ring, their kicks in the eventfd).
 * Both run on the control thread, as queue_started/queue_stopped do.
 */
static void quiesce(struct vhu_blk *blk, struct vhu_vq **vqs)
{
	/* Every queue is asked first, then waited for: the waits overlap
	 * (a stop of all queues takes one give-up period, not one each). */
	for (unsigned i = 0; i < blk->num_queues; i++)
		vhu__blk_run_stop_begin(blk->runners[i]);
	for (unsigned i = 0; i < blk->num_queues; i++) {
		vqs[i] = blk->runners[i] ? blk->vqs[i] : NULL;
		if (!vqs[i])
			continue;
		vhu__blk_run_stop(blk->runners[i]);
		blk->runners[i] = NULL;
	}
}

static void resume(struct vhu_blk *blk, struct vhu_vq **vqs)
{
	for (unsigned i = 0; i < blk->num_queues; i++)
		if (vqs[i])
			blk_queue_started(blk, vqs[i]);
}

int vhu_blk_refresh_size(struct vhu_blk *blk)
{
	uint64_t size, old = atomic_load(&blk->capacity);
	int r = blk->be->size(blk, &size);

	if (r < 0)
		return r;
	if (size < atomic_load(&blk->size)) {
		/* Smaller: a write in flight may extend the file again, so
		 * the size that counts is the one read with no I/O running. */
		struct vhu_vq **vqs = calloc(blk->num_queues, sizeof(*vqs));

		if (!vqs)
			return -ENOMEM;
		quiesce(blk, vqs);
		r = blk->be->size(blk, &size);
		if (r == 0)
			vhu__blk_set_size(blk, size);
		resume(blk, vqs);
		free(vqs);
		if (r < 0)
			return r;
	} else {
		vhu__blk_set_size(blk, size);
	}
	return atomic_load(&blk->capacity) != old;
}

/* The resize itself, with the right to resize held (vhu_blk_resize). */
static int resize_locked(struct vhu_blk *blk, uint64_t size, unsigned flags)
{
	struct vhu_vq **vqs;
	uint64_t cur;
	int r = blk->be->size(blk, &cur);

	if (r < 0)
		return r;
	if (cur < atomic_load(&blk->size))
		cur = atomic_load(&blk->size);
	if (size >= cur) {
		/* Growing: requests in flight lie below the old end and
		 * cannot reach past the new one. */
		r = blk->be->resize(blk, size);
		if (r < 0)
			return r;
		vhu__blk_set_size(blk, size);
		return 0;
	}
	if (!(flags & VHU_BLK_RESIZE_SHRINK))
		return -EPERM;
	/* Shrinking: with the queues quiesced no write can land past the
	 * new end after the truncate and extend the file again. */
	vqs = calloc(blk->num_queues, sizeof(*vqs));
	if (!vqs)
		return -ENOMEM;
	quiesce(blk, vqs);
	r = blk->be->resize(blk, size);
	if (r == 0)
		vhu__blk_set_size(blk, size);
	resume(blk, vqs);
	free(vqs);
	return r;
}

int vhu_blk_resize(struct vhu_blk *blk, uint64_t size, unsigned flags)
{
	int r;

	if (vhu_blk_resize_refusal(blk))
		return -EOPNOTSUPP;
	if (blk->read_only)
		return -EROFS;
	if (size == 0 || size % blk->blk_size != 0 || size > (uint64_t)INT64_MAX)
		return -EINVAL;
	/* Another user of the image (a writer serving its guest) must not
	 * see it change under it: the resize permission for the whole
	 * resize, growing or shrinking, as QEMU's block_resize needs. */
	blk->resize_why[0] = 0;
	r = vhu__blk_lock_resize(blk);
	if (r < 0)
		return r;
	r = resize_locked(blk, size, flags);
	vhu__blk_unlock_resize(blk);
	return r;
}

const char *vhu_blk_resize_error(const struct vhu_blk *blk)
{
	return blk->resize_why[0] ? blk->resize_why : NULL;
}

int vhu_blk_queue_stats(const struct vhu_blk *blk, unsigned index,
			struct vhu_blk_qstats *st)
{
	const struct vhu__blk_stats *s;

	if (index >= blk->num_queues)
		return -EINVAL;
	s = &blk->stats[index];
	st->requests = atomic_load(&s->requests);
	st->bytes_read = atomic_load(&s->bytes_read);
	st->bytes_written = atomic_load(&s->bytes_written);
	st->errors = atomic_load(&s->errors);
	st->in_flight = atomic_load(&s->in_flight);
	st->flushes = atomic_load(&s->flushes);
	st->discards = atomic_load(&s->discards);
	st->writes_through = atomic_load(&s->writes_through);
	st->bounce_bytes = atomic_load(&s->bounce_bytes);
	st->bounce_peak = atomic_load(&s->bounce_peak);
	return 0;
}
