/* SPDX-License-Identifier: MIT */
/* Test-side packed-ring driver: see ring-driver-packed.h. */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ring-driver-packed.h"

int pd_init(struct pd *pd, const struct pd_opts *o)
{
	memset(pd, 0, sizeof(*pd));
	pd->g.fd = -1;
	vhu__vq_init(&pd->vq, 0, &pd->g.mem);
	if (o->size == 0 || o->size > PD_MAX_SIZE)
		return -EINVAL;
	pd->size = o->size;
	int e = gmem_init(&pd->g, o->mem_size, o->split_at,
			  "vhu-ring-driver-packed");
	if (e < 0)
		return e;

	/* The ring, then the two event areas in the next page. */
	pd->ring_gpa = gmem_alloc(&pd->g, vhu__packed_ring_bytes(pd->size), 4096);
	pd->drv_gpa = gmem_alloc(&pd->g, 64, 4096);
	pd->dev_gpa = gmem_alloc(&pd->g, VHU__PEVENT_BYTES, 64);
	gmem_alloc(&pd->g, 0, 4096);

	bool w = !o->start_wrap0;
	pd->avail_pos = pd->used_pos = o->start_pos;
	pd->avail_wrap = pd->used_wrap = w;

	struct vhu_vq *vq = &pd->vq;
	gmem_vq_rings(vq, pd->size, pd->ring_gpa, pd->drv_gpa, pd->dev_gpa,
		      o->event_idx, o->indirect);
	vq->packed = true;
	/* what SET_VRING_BASE does */
	uint32_t base = (uint32_t)o->start_pos | (uint32_t)w << 15;
	vhu__packed_set_base(vq, base | base << 16);
	return gmem_vq_map(vq, true);
}

void pd_fini(struct pd *pd)
{
	vhu__vq_reset(&pd->vq);
	gmem_fini(&pd->g);
}

static struct vhu__pdesc *slot(struct pd *pd, uint16_t pos)
{
	return (struct vhu__pdesc *)gmem_ptr(&pd->g, pd->ring_gpa) + pos;
}

uint16_t pd_avail_bits(bool w)
{
	return w ? VHU__PDESC_F_AVAIL : VHU__PDESC_F_USED;
}

void pd_raw(struct pd *pd, uint16_t pos, uint64_t addr, uint32_t len,
	    uint16_t id, uint16_t flags)
{
	struct vhu__pdesc *d = slot(pd, pos);
	d->addr = htole64(addr);
	d->len = htole32(len);
	d->id = htole16(id);
	__atomic_store_n(&d->flags, htole16(flags), __ATOMIC_RELEASE);
}

void pd_table_entry(struct pd *pd, uint64_t table, unsigned i, uint64_t addr,
		    uint32_t len, uint16_t flags)
{
	struct vhu__pdesc d = {
		.addr = htole64(addr),
		.len = htole32(len),
		.id = 0,
		.flags = htole16(flags),
	};
	memcpy((uint8_t *)gmem_ptr(&pd->g, table) + 16 * (uint64_t)i, &d, sizeof(d));
}

void pd_skip(struct pd *pd, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (++pd->avail_pos == pd->size) {
			pd->avail_pos = 0;
			pd->avail_wrap = !pd->avail_wrap;
		}
	}
}

uint16_t pd_add(struct pd *pd, const struct pd_buf *b, unsigned n,
		uint16_t id)
{
	uint16_t head = pd->avail_pos;
	uint16_t head_flags = 0;
	for (unsigned i = 0; i < n; i++) {
		uint16_t f = (uint16_t)(pd_avail_bits(pd->avail_wrap) |
					(b[i].write ? VHU_VRING_DESC_F_WRITE : 0) |
					(i + 1 < n ? VHU_VRING_DESC_F_NEXT : 0));
		if (i == 0) {
			/* 2.8.6: the head becomes available last. */
			struct vhu__pdesc *d = slot(pd, head);
			d->addr = htole64(b[i].gpa);
			d->len = htole32(b[i].len);
			d->id = htole16(id);
			head_flags = f;
		} else {
			pd_raw(pd, pd->avail_pos, b[i].gpa, b[i].len, id, f);
		}
		pd_skip(pd, 1);
	}
	__atomic_store_n(&slot(pd, head)->flags, htole16(head_flags),
			 __ATOMIC_RELEASE);
	if (id < PD_MAX_SIZE)
		pd->chain_len[id] = (uint16_t)n;
	return id;
}

uint16_t pd_add_indirect(struct pd *pd, const struct pd_buf *b, unsigned n,
			 uint16_t id)
{
	uint64_t table = gmem_buf(&pd->g, 16 * (uint64_t)n);
	for (unsigned i = 0; i < n; i++)
		pd_table_entry(pd, table, i, b[i].gpa, b[i].len,
			       b[i].write ? VHU_VRING_DESC_F_WRITE : 0);
	pd_raw(pd, pd->avail_pos, table, 16 * n, id,
	       (uint16_t)(pd_avail_bits(pd->avail_wrap) |
			  VHU_VRING_DESC_F_INDIRECT));
	pd_skip(pd, 1);
	if (id < PD_MAX_SIZE)
		pd->chain_len[id] = 1;
	return id;
}

int pd_get_used(struct pd *pd, uint16_t *id, uint32_t *len)
{
	struct vhu__pdesc *d = slot(pd, pd->used_pos);
	uint16_t f = le16toh(__atomic_load_n(&d->flags, __ATOMIC_ACQUIRE));
	bool a = f & VHU__PDESC_F_AVAIL, u = f & VHU__PDESC_F_USED;
	if (a != u || u != pd->used_wrap)
		return 0;
	*id = le16toh(d->id);
	*len = le32toh(d->len);
	if (*id >= PD_MAX_SIZE || pd->chain_len[*id] == 0)
		return -1;
	unsigned n = pd->chain_len[*id];
	pd->chain_len[*id] = 0;
	for (unsigned i = 0; i < n; i++) {
		if (++pd->used_pos == pd->size) {
			pd->used_pos = 0;
			pd->used_wrap = !pd->used_wrap;
		}
	}
	return 1;
}

void pd_set_driver_event(struct pd *pd, uint16_t flags, uint16_t off,
			 bool wrap)
{
	uint16_t *e = gmem_ptr(&pd->g, pd->drv_gpa);
	e[0] = htole16((uint16_t)(off | (wrap ? 0x8000 : 0)));
	e[1] = htole16(flags);
}

uint16_t pd_device_flags(struct pd *pd)
{
	return le16toh(((uint16_t *)gmem_ptr(&pd->g, pd->dev_gpa))[1]);
}

uint64_t pd_calls(struct pd *pd)
{
	return gmem_vq_calls(&pd->vq);
}
