/* SPDX-License-Identifier: MIT */
/*
 * The driver side of a packed virtqueue (virtio 1.2, 2.8): fill
 * descriptors at the driver's position with its wrap counter, notify the
 * device unless its event suppression says not to, and read used
 * descriptors back.
 *
 * A chain takes consecutive ring positions and carries one buffer id (in
 * every descriptor; the device reads it from the last, 2.8.6).  The head's
 * flags are written last, with release ordering, so the device never sees
 * a partial chain; a chain is therefore visible as soon as it is added.
 * The device can write anything into the ring: the driver keeps the
 * length of each chain and the writable bytes per buffer id itself and
 * reads each used descriptor once, checking it against that.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define OFF_MASK 0x7fffu
#define WRAP_BIT 15

int vhu__pdrv_init(struct vhu_fe_vq *vq, unsigned size)
{
	vq->p_free_ids = calloc(size, sizeof(*vq->p_free_ids));
	if (!vq->p_free_ids)
		return -ENOMEM;
	/* Lowest ids on top of the stack. */
	for (unsigned i = 0; i < size; i++)
		vq->p_free_ids[i] = (uint16_t)(size - 1 - i);
	vq->p_nfree_ids = (uint16_t)size;
	vq->num_free = (uint16_t)size;
	/* 2.8.1: both wrap counters start at 1. */
	vq->p_avail_pos = vq->p_used_pos = 0;
	vq->p_avail_wrap = vq->p_used_wrap = true;
	vq->p_added = 0;
	return 0;
}

void vhu__pdrv_free(struct vhu_fe_vq *vq)
{
	free(vq->p_free_ids);
	vq->p_free_ids = NULL;
}

static inline uint16_t avail_bits(bool wrap)
{
	/* 2.8.1: AVAIL equal to the wrap counter, USED the inverse. */
	return wrap ? VHU__PDESC_F_AVAIL : VHU__PDESC_F_USED;
}

int vhu__pdrv_add(struct vhu_fe_vq *vq, const struct vhu_fe_buf *out,
		  unsigned n_out, const struct vhu_fe_buf *in, unsigned n_in,
		  void *data)
{
	unsigned n = n_out + n_in;
	if (n > vq->num_free || vq->p_nfree_ids == 0)
		return -ENOSPC;

	uint16_t id = vq->p_free_ids[--vq->p_nfree_ids];
	uint16_t head = vq->p_avail_pos, head_flags = 0;
	unsigned pos = head;
	bool wrap = vq->p_avail_wrap;
	uint64_t inb = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct vhu_fe_buf *b = i < n_out ? &out[i] : &in[i - n_out];
		uint16_t f = (uint16_t)(avail_bits(wrap) |
					(i < n_out ? 0 : VHU_VRING_DESC_F_WRITE) |
					(i + 1 < n ? VHU_VRING_DESC_F_NEXT : 0));
		struct vhu__pdesc *d = &vq->pring[pos];
		d->addr = htole64(b->gpa);
		d->len = htole32(b->len);
		d->id = htole16(id);
		if (i == 0)
			head_flags = f;
		else
			__atomic_store_n(&d->flags, htole16(f), __ATOMIC_RELAXED);
		if (i >= n_out)
			inb += b->len;
		if (++pos == vq->size) {
			pos = 0;
			wrap = !wrap;
		}
	}
	vq->chain_len[id] = (uint16_t)n;
	vq->in_bytes[id] = inb;
	vq->data[id] = data;
	vq->num_free = (uint16_t)(vq->num_free - n);
	vq->inflight++;
	vq->p_avail_pos = (uint16_t)pos;
	vq->p_avail_wrap = wrap;
	vq->p_added += n;
	/* 2.8.6: the head last, after the rest of the chain. */
	__atomic_store_n(&vq->pring[head].flags, htole16(head_flags),
			 __ATOMIC_RELEASE);
	return id;
}

int vhu__pdrv_kick(struct vhu_fe_vq *vq)
{
	uint32_t added = vq->p_added;
	if (added == 0)
		return 0;
	vq->p_added = 0;
	/* Descriptors before reading the device's suppression state
	 * (2.8.22 "Notifying the device"). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint32_t ev = le32toh(__atomic_load_n((volatile uint32_t *)vq->dev_area,
					      __ATOMIC_RELAXED));
	unsigned flags = (ev >> 16) & 3;
	bool need = true;
	if (flags == VHU__PEVENT_DISABLE) {
		need = false;
	} else if (flags == VHU__PEVENT_DESC && vq->event_idx) {
		/* Kick when the event position is among those just made
		 * available: [pos - added, pos). */
		unsigned off = ev & OFF_MASK;
		bool wrap = (ev >> WRAP_BIT) & 1;
		if (off < vq->size) {
			long delta = (long)vq->p_avail_pos - (long)off;
			if (wrap != vq->p_avail_wrap)
				delta += vq->size;
			need = delta >= 1 && (unsigned long)delta <= added;
		}
	}
	if (!need)
		return 0;
	int r = vhu__eventfd_signal(vq->kick_fd);
	return r < 0 ? r : 1;
}

/* The used descriptor at the driver's used position, if the device has
 * written it in this lap (2.8.1: AVAIL == USED == the wrap counter). */
static bool used_ready(struct vhu_fe_vq *vq, uint16_t *flags)
{
	uint16_t f = le16toh(__atomic_load_n(&vq->pring[vq->p_used_pos].flags,
					     __ATOMIC_ACQUIRE));
	bool a = (f & VHU__PDESC_F_AVAIL) != 0;
	bool u = (f & VHU__PDESC_F_USED) != 0;
	*flags = f;
	return a == u && u == vq->p_used_wrap;
}

int vhu__pdrv_get_used(struct vhu_fe_vq *vq, void **data, uint32_t *len)
{
	if (vq->inflight == 0)
		return 0; /* a used-looking slot now is stale or hostile */
	uint16_t f;
	if (!used_ready(vq, &f))
		return 0;
	/* Read id and length once, after the flags (acquire). */
	const struct vhu__pdesc *d = &vq->pring[vq->p_used_pos];
	uint16_t id = le16toh(*(const volatile uint16_t *)&d->id);
	uint32_t l = le32toh(*(const volatile uint32_t *)&d->len);
	if (id >= vq->size || vq->chain_len[id] == 0)
		return vhu__drv_broken(vq, "returned a buffer id not in flight", id);
	/* 2.8.3: the length only counts with WRITE set. */
	if (!(f & VHU_VRING_DESC_F_WRITE))
		l = 0;
	if (l > vq->in_bytes[id])
		return vhu__drv_broken(vq, "claims more bytes written than writable", l);

	unsigned n = vq->chain_len[id];
	unsigned pos = vq->p_used_pos + n;
	if (pos >= vq->size) {
		pos -= vq->size;
		vq->p_used_wrap = !vq->p_used_wrap;
	}
	vq->p_used_pos = (uint16_t)pos;
	vq->chain_len[id] = 0;
	vq->p_free_ids[vq->p_nfree_ids++] = id;
	vq->num_free = (uint16_t)(vq->num_free + n);
	vq->inflight--;
	*data = vq->data[id];
	*len = l;
	return 1;
}

bool vhu__pdrv_has_used(struct vhu_fe_vq *vq)
{
	uint16_t f;
	return vq->inflight && used_ready(vq, &f);
}

/* Ask for a notification at the next used descriptor (DESC with
 * EVENT_IDX, else ENABLE; 2.8.10). */
void vhu__pdrv_arm(struct vhu_fe_vq *vq)
{
	uint16_t ow = 0, fl = VHU__PEVENT_ENABLE;
	if (vq->event_idx) {
		ow = (uint16_t)(vq->p_used_pos | (vq->p_used_wrap ? 1u << WRAP_BIT : 0));
		fl = VHU__PEVENT_DESC;
	}
	vq->drv_area[0] = htole16(ow);
	__atomic_store_n(&vq->drv_area[1], htole16(fl), __ATOMIC_RELEASE);
}
