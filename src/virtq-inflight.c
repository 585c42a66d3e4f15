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
/* last_batch_head of a record that has completed no batch yet. */
#define VHU__INFLIGHT_NO_BATCH 0xffffu

size_t vhu__inflight_queue_bytes(unsigned queue_size)
{
	size_t n = sizeof(struct vhu__inflight_split) +
		   (size_t)queue_size * sizeof(struct vhu__inflight_desc);
	return (n + VHU__INFLIGHT_ALIGN - 1) & ~(size_t)(VHU__INFLIGHT_ALIGN - 1);
}

/* ------------------------------------------------ queue life cycle */

/* A head to resubmit with its counter, copied out of the shared region
 * once: the front-end's memory may change under us, so nothing sorted or
 * indexed here is read from it twice. */
struct resub {
	uint64_t counter;
	uint16_t head;
};

static int by_counter_cmp(const void *a, const void *b)
{
	const struct resub *x = a, *y = b;
	if (x->counter != y->counter)
		return x->counter < y->counter ? -1 : 1;
	return x->head < y->head ? -1 : x->head > y->head;
}

/* Sort the copies and keep the heads as the queue's resubmission list;
 * the counter after the newest becomes the next pop's. */
static int install_resubmit(struct vhu_vq *vq, struct resub *r, unsigned n)
{
	uint64_t max = 0;
	for (unsigned i = 0; i < n; i++)
		if (r[i].counter > max)
			max = r[i].counter;
	vq->inf_counter = max + 1;
	if (n == 0)
		return 0;
	qsort(r, n, sizeof(*r), by_counter_cmp);
	uint16_t *list = malloc(n * sizeof(*list));
	if (!list)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++)
		list[i] = r[i].head;
	vq->inf_resubmit = list;
	vq->inf_n = (uint16_t)n;
	vhu__info("queue %u: resubmitting %u inflight request%s", vq->index,
		  n, n == 1 ? "" : "s");
	return 0;
}

/*
 * vhost-user.rst "When reconnecting", step 1, for a split record whose
 * used_idx lags the used ring's idx by batch: the last batch was
 * published but its marks not yet cleared.  Clear them, but only when
 * the record really describes such a batch: a batch was completed at
 * all (last_batch_head is not the "none yet" value we initialise it
 * to, and a zeroed record from elsewhere - used_idx 0, last_batch_head
 * 0 - never completed one unless head 0 carries our first-batch link),
 * and the list from last_batch_head holds batch distinct in-range heads
 * that are all marked.  A record that disagrees with the ring for
 * another reason (nothing completed yet, so descriptor 0 only looks
 * like a batch head: SPDK issue #3766) keeps every mark: resubmitting
 * too much is caught by the device, losing a request is not.
 */
static void clear_last_batch(struct vhu__inflight_split *q, unsigned size,
			     uint16_t used, uint16_t rec_used, uint16_t lbh)
{
	uint16_t batch = (uint16_t)(used - rec_used);
	if (batch == 0)
		return;
	if (lbh == VHU__INFLIGHT_NO_BATCH)
		return;
	if (rec_used == 0 && lbh == 0 && lbh < size &&
	    q->desc[0].next != VHU__INFLIGHT_NO_BATCH)
		goto refuse;
	if (batch > size)
		goto refuse;
	uint8_t seen[VHU_MAX_QUEUE_SIZE / 8] = { 0 };
	uint16_t *heads = malloc(batch * sizeof(*heads));
	if (!heads)
		goto refuse;
	uint16_t h = lbh;
	for (unsigned k = 0; k < batch; k++) {
		if (h >= size || (seen[h / 8] & (1u << (h % 8))) ||
		    !q->desc[h].inflight) {
			free(heads);
			goto refuse;
		}
		seen[h / 8] |= (uint8_t)(1u << (h % 8));
		heads[k] = h;
		h = q->desc[h].next;
	}
	for (unsigned k = 0; k < batch; k++)
		q->desc[heads[k]].inflight = 0;
	free(heads);
	return;
refuse:
	vhu__warn("inflight record: used index %u, ring's %u, but no "
		  "matching last batch: nothing cleared", rec_used, used);
}

/*
 * Called when a tracked queue starts.  A fresh region (version 0) is
 * initialised.  Otherwise vhost-user.rst "When reconnecting": clear a
 * published last batch (clear_last_batch), then every entry still
 * inflight is queued for resubmission in counter order, the used
 * position becomes the used ring's idx and the avail position used->idx
 * + that count (everything popped was either used or is in flight),
 * whatever SET_VRING_BASE said: a front-end that lost its back-end
 * cannot know how far it got.
 */
static int split_start(struct vhu_vq *vq)
{
	struct vhu__inflight_split *q = vq->inf;
	unsigned size = vq->size;

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
		q->last_batch_head = VHU__INFLIGHT_NO_BATCH;
		q->used_idx = used;
		q->version = VHU__INFLIGHT_VERSION;
		vq->inf_counter = 1;
		return 0;
	}

	clear_last_batch(q, size, used, q->used_idx, q->last_batch_head);
	q->used_idx = used;

	struct resub *r = malloc(size * sizeof(*r));
	if (!r)
		return -ENOMEM;
	unsigned n = 0;
	for (unsigned i = 0; i < size; i++) {
		if (!q->desc[i].inflight)
			continue;
		q->desc[i].inflight = 1;
		r[n].head = (uint16_t)i;
		r[n].counter = q->desc[i].counter;
		n++;
	}
	int rc = install_resubmit(vq, r, n);
	free(r);
	if (rc < 0 || n == 0)
		return rc;
	vq->used_idx = used;
	vq->last_avail_idx = (uint16_t)(used + n);
	vq->shadow_avail_idx = vq->last_avail_idx;
	return 0;
}

int vhu__inflight_vq_start(struct vhu_vq *vq)
{
	free(vq->inf_resubmit);
	vq->inf_resubmit = NULL;
	vq->inf_n = vq->inf_pos = 0;
	if (!vq->inf)
		return 0;
	return split_start(vq);
}

void vhu__inflight_vq_release(struct vhu_vq *vq)
{
	free(vq->inf_resubmit);
	vq->inf_resubmit = NULL;
	vq->inf_n = vq->inf_pos = 0;
	vq->inf = NULL;
}
