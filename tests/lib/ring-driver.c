/* SPDX-License-Identifier: MIT */
/* Test-side split-ring driver: see ring-driver.h. */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ring-driver.h"

int rd_init(struct rd *rd, const struct rd_opts *o)
{
	memset(rd, 0, sizeof(*rd));
	rd->size = o->size;
	int e = gmem_init(&rd->g, o->mem_size, o->split_at, "vhu-ring-driver");
	vhu__vq_init(&rd->vq, 0, &rd->g.mem);
	if (e < 0)
		return e;

	/* desc (16-aligned), avail (2), used (4): page-aligned each. */
	rd->desc_gpa = gmem_alloc(&rd->g, vhu__vring_desc_bytes(rd->size), 4096);
	rd->avail_gpa = gmem_alloc(&rd->g, vhu__vring_avail_bytes(rd->size), 4096);
	rd->used_gpa = gmem_alloc(&rd->g, vhu__vring_used_bytes(rd->size), 4096);
	if (gmem_alloc(&rd->g, 0, 4096) - GMEM_GPA_BASE >= rd->g.size)
		return -ENOSPC;

	rd->avail_idx = rd->used_seen = o->start_idx;
	uint16_t *avail = gmem_ptr(&rd->g, rd->avail_gpa);
	uint16_t *used = gmem_ptr(&rd->g, rd->used_gpa);
	avail[1] = htole16(o->start_idx);
	used[1] = htole16(o->start_idx);

	struct vhu_vq *vq = &rd->vq;
	gmem_vq_rings(vq, rd->size, rd->desc_gpa, rd->avail_gpa, rd->used_gpa,
		      o->event_idx, o->indirect);
	/* what SET_VRING_BASE does */
	vq->last_avail_idx = vq->shadow_avail_idx = o->start_idx;
	vq->used_idx = o->start_idx;
	vq->signalled_used_valid = false;
	return gmem_vq_map(vq, !o->no_call_fd);
}

void rd_fini(struct rd *rd)
{
	vhu__vq_reset(&rd->vq);
	gmem_fini(&rd->g);
}

void rd_desc(struct rd *rd, uint64_t table_gpa, unsigned idx, uint64_t addr,
	     uint32_t len, uint16_t flags, uint16_t next)
{
	struct vhu_vring_desc d = {
		.addr = htole64(addr),
		.len = htole32(len),
		.flags = htole16(flags),
		.next = htole16(next),
	};
	memcpy((uint8_t *)gmem_ptr(&rd->g, table_gpa) + 16 * (uint64_t)idx, &d,
	       sizeof(d));
}

static uint16_t *avail_ring(struct rd *rd)
{
	return gmem_ptr(&rd->g, rd->avail_gpa);
}

static uint16_t *used_ring(struct rd *rd)
{
	return gmem_ptr(&rd->g, rd->used_gpa);
}

void rd_publish(struct rd *rd, uint16_t head)
{
	uint16_t *a = avail_ring(rd);
	a[2 + (rd->avail_idx & (rd->size - 1))] = htole16(head);
	rd->avail_idx++;
	/* 2.7.13: ring entry before the index */
	__atomic_store_n(&a[1], htole16(rd->avail_idx), __ATOMIC_RELEASE);
}

void rd_set_avail_idx(struct rd *rd, uint16_t idx)
{
	rd->avail_idx = idx;
	__atomic_store_n(&avail_ring(rd)[1], htole16(idx), __ATOMIC_RELEASE);
}

static uint16_t take_desc(struct rd *rd)
{
	uint16_t d = rd->next_desc;
	rd->next_desc = (uint16_t)((d + 1) & (rd->size - 1));
	return d;
}

uint16_t rd_add_chain(struct rd *rd, const struct rd_buf *b, unsigned n)
{
	uint16_t ids[n ? n : 1];
	for (unsigned i = 0; i < n; i++)
		ids[i] = take_desc(rd);
	for (unsigned i = 0; i < n; i++) {
		bool last = i + 1 == n;
		rd_desc(rd, rd->desc_gpa, ids[i], b[i].gpa, b[i].len,
			(uint16_t)((b[i].write ? VHU_VRING_DESC_F_WRITE : 0) |
				   (last ? 0 : VHU_VRING_DESC_F_NEXT)),
			last ? 0 : ids[i + 1]);
	}
	rd_publish(rd, ids[0]);
	return ids[0];
}

uint16_t rd_add_indirect(struct rd *rd, const struct rd_buf *b, unsigned n)
{
	uint64_t table = gmem_buf(&rd->g, 16 * (uint64_t)n);
	for (unsigned i = 0; i < n; i++) {
		bool last = i + 1 == n;
		rd_desc(rd, table, i, b[i].gpa, b[i].len,
			(uint16_t)((b[i].write ? VHU_VRING_DESC_F_WRITE : 0) |
				   (last ? 0 : VHU_VRING_DESC_F_NEXT)),
			(uint16_t)(last ? 0 : i + 1));
	}
	uint16_t head = take_desc(rd);
	rd_desc(rd, rd->desc_gpa, head, table, 16 * n,
		VHU_VRING_DESC_F_INDIRECT, 0);
	rd_publish(rd, head);
	return head;
}

int rd_get_used(struct rd *rd, uint32_t *id, uint32_t *len)
{
	uint16_t *u = used_ring(rd);
	uint16_t idx = le16toh(__atomic_load_n(&u[1], __ATOMIC_ACQUIRE));
	if (idx == rd->used_seen)
		return 0;
	const uint32_t *e =
		(const uint32_t *)(u + 2) + 2 * (rd->used_seen & (rd->size - 1));
	*id = le32toh(e[0]);
	*len = le32toh(e[1]);
	rd->used_seen++;
	return 1;
}

uint16_t rd_used_idx(struct rd *rd)
{
	return le16toh(used_ring(rd)[1]);
}

uint16_t rd_used_flags(struct rd *rd)
{
	return le16toh(used_ring(rd)[0]);
}

uint16_t rd_avail_event(struct rd *rd)
{
	return le16toh(used_ring(rd)[2 + 4 * (unsigned)rd->size]);
}

void rd_set_avail_flags(struct rd *rd, uint16_t flags)
{
	avail_ring(rd)[0] = htole16(flags);
}

void rd_set_used_event(struct rd *rd, uint16_t v)
{
	avail_ring(rd)[2 + rd->size] = htole16(v);
}

uint64_t rd_calls(struct rd *rd)
{
	return gmem_vq_calls(&rd->vq);
}

bool rd_need_kick(struct rd *rd, uint16_t old)
{
	/* the new avail->idx is visible before the device's field is read */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (rd->vq.event_idx) {
		uint16_t ev = le16toh(__atomic_load_n(
			&used_ring(rd)[2 + 4 * (unsigned)rd->size],
			__ATOMIC_RELAXED));
		return (uint16_t)(rd->avail_idx - ev - 1) <
		       (uint16_t)(rd->avail_idx - old);
	}
	uint16_t f = le16toh(__atomic_load_n(&used_ring(rd)[0],
					     __ATOMIC_RELAXED));
	return !(f & VHU_VRING_USED_F_NO_NOTIFY);
}

void rd_want_interrupt(struct rd *rd)
{
	uint16_t *a = avail_ring(rd);
	if (rd->vq.event_idx)
		__atomic_store_n(&a[2 + rd->size], htole16(rd->used_seen),
				 __ATOMIC_RELAXED);
	else
		__atomic_store_n(&a[0], 0, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}
