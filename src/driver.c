/* SPDX-License-Identifier: MIT */
/*
 * The driver side's dispatch (the front-end's twin of virtq.c): each
 * public vhu_fe_vq_* call does what both layouts share (the broken-queue
 * state, argument checks, the wait for a call) and hands the rest to the
 * split (driver-split.c) or packed (driver-packed.c) driver, which never
 * call each other.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"

/* Per buffer (split: by head, packed: by buffer id), in both layouts:
 * its length in the ring, its writable bytes, the caller's token. */
int vhu__drv_init(struct vhu_fe_vq *vq, unsigned size)
{
	vq->chain_len = calloc(size, sizeof(*vq->chain_len));
	vq->in_bytes = calloc(size, sizeof(*vq->in_bytes));
	vq->data = calloc(size, sizeof(*vq->data));
	int r = -ENOMEM;
	vq->inflight = 0;
	vq->broken = false;
	if (vq->chain_len && vq->in_bytes && vq->data)
		r = vq->packed ? vhu__pdrv_init(vq, size)
			       : vhu__sdrv_init(vq, size);
	if (r < 0)
		vhu__drv_free(vq);
	return r;
}

void vhu__drv_free(struct vhu_fe_vq *vq)
{
	if (vq->packed)
		vhu__pdrv_free(vq);
	else
		vhu__sdrv_free(vq);
	free(vq->chain_len);
	free(vq->in_bytes);
	free(vq->data);
	vq->chain_len = NULL;
	vq->in_bytes = NULL;
	vq->data = NULL;
}

int vhu__drv_broken(struct vhu_fe_vq *vq, const char *why, unsigned v)
{
	vq->broken = true;
	vhu__log_rl(VHU_LOG_WARN, "front-end: queue %u: device %s (%u)",
		    vq->index, why, v);
	return -EIO;
}

int vhu_fe_vq_add(struct vhu_fe_vq *vq, const struct vhu_fe_buf *out,
		  unsigned n_out, const struct vhu_fe_buf *in, unsigned n_in,
		  void *data)
{
	unsigned n = n_out + n_in;
	if (vq->broken)
		return -EIO;
	if (n == 0 || n < n_out)
		return -EINVAL;
	if (vq->packed)
		return vhu__pdrv_add(vq, out, n_out, in, n_in, data);
	return vhu__sdrv_add(vq, out, n_out, in, n_in, data);
}

int vhu_fe_vq_kick(struct vhu_fe_vq *vq)
{
	return vq->packed ? vhu__pdrv_kick(vq) : vhu__sdrv_kick(vq);
}

int vhu_fe_vq_get_used(struct vhu_fe_vq *vq, void **data, uint32_t *len)
{
	if (vq->broken)
		return -EIO;
	if (vq->packed)
		return vhu__pdrv_get_used(vq, data, len);
	return vhu__sdrv_get_used(vq, data, len);
}

static bool has_used(struct vhu_fe_vq *vq)
{
	return vq->packed ? vhu__pdrv_has_used(vq) : vhu__sdrv_has_used(vq);
}

/* Wait on the call eventfd until has_used() or timeout_ms (-1 forever):
 * 1 ready, 0 timed out, -errno. */
static int wait_call(struct vhu_fe_vq *vq, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : vhu__now_ms() + timeout_ms;
	for (;;) {
		if (has_used(vq))
			return 1;
		int t = -1;
		if (deadline >= 0) {
			int64_t left = deadline - vhu__now_ms();
			if (left <= 0)
				return 0;
			t = left > 1000000 ? 1000000 : (int)left;
		}
		struct pollfd p = { .fd = vq->call_fd, .events = POLLIN };
		int r = poll(&p, 1, t);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0) {
			uint64_t v;
			if (read(vq->call_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				return -errno;
		}
	}
}

int vhu_fe_vq_wait(struct vhu_fe_vq *vq, int timeout_ms)
{
	if (vq->broken)
		return -EIO;
	if (has_used(vq))
		return 1;
	/* Ask for a call at the next completion, then look again: a
	 * completion between the first look and the request would otherwise
	 * go unsignalled (virtio 1.2, 2.7.10 and 2.8.10). */
	if (vq->packed)
		vhu__pdrv_arm(vq);
	else
		vhu__sdrv_arm(vq);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return wait_call(vq, timeout_ms);
}

unsigned vhu_fe_vq_num_free(const struct vhu_fe_vq *vq)
{
	return vq->num_free;
}

unsigned vhu_fe_vq_inflight(const struct vhu_fe_vq *vq)
{
	return vq->inflight;
}

int vhu_fe_vq_call_fd(const struct vhu_fe_vq *vq)
{
	return vq->call_fd;
}
