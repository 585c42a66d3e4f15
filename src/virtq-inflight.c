/* SPDX-License-Identifier: MIT */
/*
 * Inflight I/O tracking, the queue's side (vhost-user.rst "Inflight I/O
 * tracking"): a split queue's record in the shared region, recovered when
 * the queue starts, and the list of heads to resubmit.  Ring state: this
 * file knows the queue and its record, never the session that mapped the
 * region (backend-inflight.c does that, and serves GET/SET_INFLIGHT_FD).
 *
 * Split rings only.  Per queue, at a stride of VHU__INFLIGHT_ALIGN:
 *   u64 features; u16 version; u16 desc_num; u16 last_batch_head;
 *   u16 used_idx; then desc_num entries
 *   { u8 inflight; u8 padding[5]; u16 next; u64 counter }.
 * With VIRTIO_F_RING_PACKED a queue is not tracked (vq->inf stays NULL).
 *
 * The region is shared with the front-end and may hold anything: every
 * index read from it is checked against the queue size, and the walks
 * over it are bounded by the queue size.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define VHU__INFLIGHT_ALIGN 64u
#define VHU__INFLIGHT_VERSION 1u

size_t vhu__inflight_queue_bytes(unsigned queue_size)
{
	size_t n = sizeof(struct vhu__inflight_split) +
		   (size_t)queue_size * sizeof(struct vhu__inflight_desc);
	return (n + VHU__INFLIGHT_ALIGN - 1) & ~(size_t)(VHU__INFLIGHT_ALIGN - 1);
}

/* ------------------------------------------------ queue life cycle */

static int by_counter_cmp(const void *a, const void *b, void *arg)
{
	const struct vhu__inflight_split *q = arg;
	uint64_t ca = q->desc[*(const uint16_t *)a].counter;
	uint64_t cb = q->desc[*(const uint16_t *)b].counter;
	return ca < cb ? -1 : ca > cb;
}

/*
 * Called when a tracked queue starts.  A fresh region (version 0) is
 * initialised.  Otherwise vhost-user.rst "When reconnecting": if used_idx
 * lags the used ring's idx, the last batch was published but not yet
 * cleared, so clear it; then every entry still inflight is queued for
 * resubmission in counter order, the used position becomes the used
 * ring's idx and the avail position used->idx + that count (everything
 * popped was either used or is in flight), whatever SET_VRING_BASE said:
 * a front-end that lost its back-end cannot know how far it got.
 */
int vhu__inflight_vq_start(struct vhu_vq *vq)
{
	struct vhu__inflight_split *q = vq->inf;
	unsigned size = vq->size;

	free(vq->inf_resubmit);
	vq->inf_resubmit = NULL;
	vq->inf_n = vq->inf_pos = 0;
	if (!q)
		return 0;

	uint16_t used = le16toh(__atomic_load_n(&vq->used[1], __ATOMIC_ACQUIRE));
	uint16_t version = q->version, desc_num = q->desc_num;
	if (version != VHU__INFLIGHT_VERSION || desc_num != size) {
		if (version != 0)
			vhu__warn("queue %u: inflight record version %u, %u "
				  "entries: started afresh", vq->index,
				  version, desc_num);
		memset(q->desc, 0, size * sizeof(q->desc[0]));
		q->features = 0;
		q->desc_num = (uint16_t)size;
		q->last_batch_head = 0;
		q->used_idx = used;
		q->version = VHU__INFLIGHT_VERSION;
		vq->inf_counter = 1;
		return 0;
	}

	uint16_t batch = (uint16_t)(used - q->used_idx);
	uint16_t h = q->last_batch_head;
	for (unsigned k = 0; k < batch && k < size && h < size; k++) {
		q->desc[h].inflight = 0;
		h = q->desc[h].next;
	}
	q->used_idx = used;

	unsigned n = 0;
	uint64_t max = 0;
	for (unsigned i = 0; i < size; i++) {
		if (!q->desc[i].inflight)
			continue;
		q->desc[i].inflight = 1;
		n++;
		if (q->desc[i].counter > max)
			max = q->desc[i].counter;
	}
	vq->inf_counter = max + 1;
	if (n == 0)
		return 0;

	uint16_t *list = malloc(n * sizeof(*list));
	if (!list)
		return -ENOMEM;
	unsigned k = 0;
	for (unsigned i = 0; i < size && k < n; i++)
		if (q->desc[i].inflight)
			list[k++] = (uint16_t)i;
	qsort_r(list, k, sizeof(*list), by_counter_cmp, q);
	vq->inf_resubmit = list;
	vq->inf_n = (uint16_t)k;
	vq->used_idx = used;
	vq->last_avail_idx = (uint16_t)(used + k);
	vq->shadow_avail_idx = vq->last_avail_idx;
	vhu__info("queue %u: resubmitting %u inflight request%s", vq->index,
		  k, k == 1 ? "" : "s");
	return 0;
}

void vhu__inflight_vq_release(struct vhu_vq *vq)
{
	free(vq->inf_resubmit);
	vq->inf_resubmit = NULL;
	vq->inf_n = vq->inf_pos = 0;
	vq->inf = NULL;
}
