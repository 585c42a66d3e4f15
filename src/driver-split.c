/* SPDX-License-Identifier: MIT */
/*
 * The driver side of a split virtqueue (virtio 1.2, 2.7): fill
 * descriptors, publish them in the available ring, notify the device, and
 * reap the used ring.
 *
 * The device shares the rings and can write anything into them, so the
 * driver keeps its own copy of what matters (free list, chain lengths,
 * tokens) and trusts only the used elements it reads, once, after
 * checking them against that copy.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define AVAIL_FLAGS 0
#define AVAIL_IDX   1
#define USED_FLAGS  0
#define USED_IDX    1

static inline uint16_t load16(volatile uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void store16(volatile uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* avail->ring[size] is followed by used_event; used->ring by avail_event
 * (virtio 1.2, 2.7.10). */
static inline volatile uint16_t *used_event(struct vhu_fe_vq *vq)
{
	return &vq->avail[2 + vq->size];
}

static inline volatile uint16_t *avail_event(struct vhu_fe_vq *vq)
{
	return &vq->used[2 + 4 * (unsigned)vq->size];
}

int vhu__sdrv_init(struct vhu_fe_vq *vq, unsigned size)
{
	vq->next = calloc(size, sizeof(*vq->next));
	if (!vq->next)
		return -ENOMEM;
	for (unsigned i = 0; i < size; i++)
		vq->next[i] = (uint16_t)((i + 1) & (size - 1));
	vq->free_head = 0;
	vq->num_free = (uint16_t)(size > 0xffff ? 0xffff : size);
	vq->avail_idx = vq->kicked_idx = vq->last_used = 0;
	return 0;
}

void vhu__sdrv_free(struct vhu_fe_vq *vq)
{
	free(vq->next);
	vq->next = NULL;
}

int vhu__sdrv_add(struct vhu_fe_vq *vq, const struct vhu_fe_buf *out,
		  unsigned n_out, const struct vhu_fe_buf *in, unsigned n_in,
		  void *data)
{
	unsigned n = n_out + n_in;
	if (n > vq->num_free)
		return -ENOSPC;

	uint16_t head = vq->free_head, d = head;
	uint64_t inb = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct vhu_fe_buf *b = i < n_out ? &out[i] : &in[i - n_out];
		struct vhu_vring_desc *desc = &vq->desc[d];
		desc->addr = b->gpa;
		desc->len = b->len;
		desc->flags = (uint16_t)((i < n_out ? 0 : VHU_VRING_DESC_F_WRITE) |
					 (i + 1 < n ? VHU_VRING_DESC_F_NEXT : 0));
		desc->next = vq->next[d];
		if (i >= n_out)
			inb += b->len;
		d = vq->next[d];
	}
	vq->free_head = d;
	vq->num_free = (uint16_t)(vq->num_free - n);
	vq->chain_len[head] = (uint16_t)n;
	vq->in_bytes[head] = inb;
	vq->data[head] = data;
	vq->inflight++;

	/* The entry is written now; avail->idx moves at the next kick. */
	vq->avail[2 + (vq->avail_idx & (vq->size - 1))] = head;
	vq->avail_idx++;
	return head;
}

int vhu__sdrv_kick(struct vhu_fe_vq *vq)
{
	uint16_t old = vq->kicked_idx, now = vq->avail_idx;
	if (old == now)
		return 0;
	/* Descriptors and ring entries before the index (release), and the
	 * index before reading the device's suppression state (full fence:
	 * virtio 1.2, 2.7.13 "Notifying The Device"). */
	store16(&vq->avail[AVAIL_IDX], now);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vq->kicked_idx = now;

	bool need;
	if (vq->event_idx) {
		uint16_t ev = load16(avail_event(vq));
		need = (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
	} else {
		need = !(load16(&vq->used[USED_FLAGS]) & VHU_VRING_USED_F_NO_NOTIFY);
	}
	if (!need)
		return 0;
	int r = vhu__eventfd_signal(vq->kick_fd);
	return r < 0 ? r : 1;
}

int vhu__sdrv_get_used(struct vhu_fe_vq *vq, void **data, uint32_t *len)
{
	uint16_t idx = load16(&vq->used[USED_IDX]);
	uint16_t pending = (uint16_t)(idx - vq->last_used);
	if (pending == 0)
		return 0;
	if (pending > vq->inflight)
		return vhu__drv_broken(vq, "completed more than in flight", pending);

	/* Read the element once; idx was loaded with acquire semantics. */
	const volatile struct vhu_vring_used_elem *ring =
		(const volatile struct vhu_vring_used_elem *)&vq->used[2];
	unsigned slot = vq->last_used & (vq->size - 1);
	uint32_t id = ring[slot].id;
	uint32_t l = ring[slot].len;
	if (id >= vq->size || vq->chain_len[id] == 0)
		return vhu__drv_broken(vq, "returned an id not in flight", id);
	if (l > vq->in_bytes[id])
		return vhu__drv_broken(vq, "claims more bytes written than writable", l);

	uint16_t n = vq->chain_len[id], d = (uint16_t)id;
	for (uint16_t i = 1; i < n; i++)
		d = vq->next[d];
	vq->next[d] = vq->free_head;
	vq->free_head = (uint16_t)id;
	vq->num_free = (uint16_t)(vq->num_free + n);
	vq->chain_len[id] = 0;
	vq->inflight--;
	vq->last_used++;
	*data = vq->data[id];
	*len = l;
	return 1;
}

bool vhu__sdrv_has_used(struct vhu_fe_vq *vq)
{
	return load16(&vq->used[USED_IDX]) != vq->last_used;
}

/* Ask for a call at the next completion (virtio 1.2, 2.7.10). */
void vhu__sdrv_arm(struct vhu_fe_vq *vq)
{
	if (vq->event_idx)
		store16(used_event(vq), vq->last_used);
}
