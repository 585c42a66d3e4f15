/* SPDX-License-Identifier: MIT */
/*
 * Inflight I/O tracking at the ring layer (vhost-user.rst "Inflight I/O
 * tracking"), both layouts: a device pops requests (chains, indirect
 * tables, a packed chain that wraps the ring), completes some out of
 * order and dies with the rest popped.  A new queue - what the next
 * back-end process builds, with the stale ring positions the front-end
 * sends - is given the same record: it must hand out exactly the
 * requests still in flight, in pop order, each with the buffers the
 * first one saw, then nothing but what the driver adds next.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "ring-driver-packed.h"
#include "ring-driver.h"
#include "tap.h"

struct got {
	int r;
	uint16_t id, n_out, n_in;
	struct iovec iov[8];
};

static struct got pop_from(struct vhu_vq *vq)
{
	struct got g;
	struct vhu_vq_elem e;
	memset(&g, 0, sizeof(g));
	g.r = vhu_vq_pop(vq, &e, g.iov, 8);
	if (g.r == 1) {
		g.id = (uint16_t)e.id;
		g.n_out = e.n_out;
		g.n_in = e.n_in;
	}
	return g;
}

static bool same_buffers(const struct got *a, const struct got *b)
{
	if (a->r != 1 || b->r != 1 || a->id != b->id ||
	    a->n_out != b->n_out || a->n_in != b->n_in)
		return false;
	for (unsigned i = 0; i < (unsigned)a->n_out + a->n_in; i++)
		if (a->iov[i].iov_base != b->iov[i].iov_base ||
		    a->iov[i].iov_len != b->iov[i].iov_len)
			return false;
	return true;
}

static void push_id(struct vhu_vq *vq, uint16_t id)
{
	struct vhu_vq_elem e = { .id = id };
	vhu_vq_push(vq, &e, 0);
}

static void *region(size_t bytes)
{
	void *p = aligned_alloc(64, bytes);
	if (p)
		memset(p, 0, bytes);
	return p;
}

/*
 * The next process's queue: the same configuration and memory, nothing
 * of the old one's private state, and the ring positions a front-end
 * that lost its back-end sends (split: the used index in guest memory;
 * packed: whatever it last had - here the initial ones).
 */
static void successor(struct vhu_vq *b, const struct vhu_vq *a, void *rec)
{
	*b = *a;
	b->inf = NULL;
	b->infp = NULL;
	b->inf_resubmit = NULL;
	b->inf_n = b->inf_pos = 0;
	b->pk_next = b->pk_num = b->pk_head = b->pk_last = NULL;
	b->inflight = 0;
	b->broken = false;
	if (a->packed) {
		b->pk_chain = calloc(VHU_MAX_QUEUE_SIZE, sizeof(*b->pk_chain));
		vhu__packed_set_base(b, 0x80008000u);
		b->infp = rec;
	} else {
		b->pk_chain = NULL;
		uint16_t u = le16toh(a->used[1]);
		b->last_avail_idx = b->shadow_avail_idx = b->used_idx = u;
		b->inf = rec;
	}
}

static void successor_free(struct vhu_vq *b)
{
	vhu__inflight_vq_release(b);
	free(b->pk_chain);
	b->pk_chain = NULL;
}

/* ------------------------------------------------------- split ring */

TEST(split_death_with_chains_and_indirect)
{
	struct rd rd;
	struct rd_opts o = { .size = 8, .indirect = true };
	CHECK_EQ(rd_init(&rd, &o), 0);
	struct vhu_vq *a = &rd.vq;
	void *rec = region(vhu__inflight_queue_bytes(8));
	a->inf = rec;
	CHECK_EQ(vhu__inflight_vq_start(a), 0);
	/* A fresh record: nothing taken over (no start interrupt). */
	CHECK(!a->inf_resumed);

	uint64_t d = gmem_buf(&rd.g, 4096);
	struct rd_buf b3[3] = { { d, 16, false }, { d + 64, 512, true },
				{ d + 1024, 1, true } };
	struct rd_buf b1[1] = { { d + 2048, 8, false } };
	struct rd_buf b2[2] = { { d + 2100, 8, false }, { d + 2200, 1, true } };
	struct got g[5];
	rd_add_chain(&rd, b3, 3);       /* 0: chain of 3 */
	rd_add_chain(&rd, b1, 1);       /* 1 */
	rd_add_indirect(&rd, b3, 3);    /* 2: indirect */
	rd_add_chain(&rd, b2, 2);       /* 3 */
	rd_add_indirect(&rd, b2, 2);    /* 4: indirect */
	for (int i = 0; i < 5; i++) {
		g[i] = pop_from(a);
		CHECK_EQ(g[i].r, 1);
	}
	/* Out of order: 1 and 3 complete, 0, 2 and 4 stay in flight. */
	push_id(a, g[1].id);
	push_id(a, g[3].id);
	uint32_t id, len;
	CHECK_EQ(rd_get_used(&rd, &id, &len), 1);
	CHECK_EQ(id, g[1].id);
	CHECK_EQ(rd_get_used(&rd, &id, &len), 1);
	CHECK_EQ(id, g[3].id);

	struct vhu_vq b;
	successor(&b, a, rec);
	CHECK_EQ(vhu__inflight_vq_start(&b), 0);
	CHECK(b.inf_resumed);
	CHECK_EQ(b.inf_n, 3);
	for (int i = 0; i < 5; i += 2) {
		struct got r = pop_from(&b);
		CHECK(same_buffers(&r, &g[i]));
	}
	CHECK_EQ(pop_from(&b).r, 0);
	push_id(&b, g[4].id);
	push_id(&b, g[0].id);
	push_id(&b, g[2].id);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(rd_get_used(&rd, &id, &len), 1);
	CHECK_EQ(rd_get_used(&rd, &id, &len), 0);
	/* The next request the driver adds is the next one popped. */
	rd_add_chain(&rd, b1, 1);
	struct got n = pop_from(&b);
	CHECK_EQ(n.r, 1);
	CHECK_EQ(n.iov[0].iov_len, 8);
	CHECK_EQ(pop_from(&b).r, 0);
	successor_free(&b);
	rd_fini(&rd);
	free(rec);
}

/* ------------------------------------------------------ packed ring */

static struct pd pd;
static struct got pg[8];

/*
 * Ring of 8.  Buffers 2 (chain of 3, positions 0-2), 3 (1, pos 3),
 * 4 (chain of 2, pos 4-5), 5 (indirect of 3, pos 6) are popped; 3 and
 * 4 complete, and their used descriptors overwrite positions 0-2, where
 * buffer 2's descriptors were.  Then buffer 6, a chain of 3, takes
 * positions 7, 0, 1: it wraps the ring.  It is popped too.  In flight:
 * 2, 5, 6.  With torn, the device died inside the push of 5, after
 * its used descriptor reached the ring.
 */
static void *packed_life(bool torn)
{
	struct pd_opts o = { .size = 8, .indirect = true };
	if (pd_init(&pd, &o) < 0)
		return NULL;
	struct vhu_vq *a = &pd.vq;
	void *rec = region(vhu__inflight_queue_bytes_packed(8));
	a->infp = rec;
	CHECK_EQ(vhu__inflight_vq_start(a), 0);

	uint64_t d = gmem_buf(&pd.g, 4096);
	struct pd_buf b3[3] = { { d, 16, false }, { d + 64, 512, true },
				{ d + 1024, 1, true } };
	struct pd_buf b1[1] = { { d + 2048, 8, false } };
	struct pd_buf b2[2] = { { d + 2100, 8, false }, { d + 2200, 1, true } };
	pd_add(&pd, b3, 3, 2);
	pd_add(&pd, b1, 1, 3);
	pd_add(&pd, b2, 2, 4);
	pd_add_indirect(&pd, b3, 3, 5);
	for (int i = 0; i < 4; i++) {
		pg[i] = pop_from(a);
		CHECK_EQ(pg[i].r, 1);
		CHECK_EQ(pg[i].id, 2 + i);
	}
	push_id(a, 3);
	push_id(a, 4);
	uint16_t id;
	uint32_t len;
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 3);
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 4);
	pd_add(&pd, b3, 3, 6);
	CHECK_EQ(pd.avail_pos, 2);
	pg[4] = pop_from(a);
	CHECK_EQ(pg[4].r, 1);
	CHECK_EQ(pg[4].id, 6);
	if (torn) {
		/* vhu__packed_push of 5 up to its used descriptor. */
		vhu__inflight_pk_pushing(a, 5, 4, true);
		struct vhu__pdesc *u = gmem_ptr(&pd.g, pd.ring_gpa) +
				       3 * sizeof(struct vhu__pdesc);
		u->id = htole16(5);
		u->len = 0;
		__atomic_store_n(&u->flags, htole16(pd_avail_bits(true) |
						    VHU__PDESC_F_USED),
				 __ATOMIC_RELEASE);
	}
	return rec;
}

static void packed_restart(bool torn)
{
	void *rec = packed_life(torn);
	CHECK(rec != NULL);
	struct vhu_vq b;
	successor(&b, &pd.vq, rec);
	CHECK_EQ(vhu__inflight_vq_start(&b), 0);
	CHECK(!b.broken);
	/* Taken over: the session signals the driver when it starts. */
	CHECK(b.inf_resumed);
	/* Positions rebuilt from the record, not the stale base. */
	CHECK_EQ(b.used_idx, torn ? 4 : 3);
	CHECK_EQ(b.pk_used_wrap, 1);
	CHECK_EQ(b.last_avail_idx, 2);
	CHECK_EQ(b.pk_avail_wrap, 0);

	uint16_t id;
	uint32_t len;
	if (torn) {
		CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
		CHECK_EQ(id, 5);
	}
	struct got r = pop_from(&b);
	CHECK(same_buffers(&r, &pg[0]));          /* 2, from the record */
	if (!torn) {
		r = pop_from(&b);
		CHECK(same_buffers(&r, &pg[3]));  /* 5, indirect */
	}
	r = pop_from(&b);
	CHECK(same_buffers(&r, &pg[4]));          /* 6, wrapped */
	CHECK_EQ(pop_from(&b).r, 0);

	push_id(&b, 6);
	push_id(&b, 2);
	if (!torn)
		push_id(&b, 5);
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 6);
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 2);
	if (!torn) {
		CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
		CHECK_EQ(id, 5);
	}
	CHECK_EQ(pd_get_used(&pd, &id, &len), 0);

	/* Life goes on where the driver is: two more laps' worth. */
	uint64_t d = gmem_buf(&pd.g, 64);
	struct pd_buf one[1] = { { d, 8, true } };
	for (uint16_t k = 0; k < 20; k++) {
		pd_add(&pd, one, 1, (uint16_t)(k % 8));
		r = pop_from(&b);
		CHECK_EQ(r.r, 1);
		CHECK_EQ(r.id, k % 8);
		push_id(&b, r.id);
		CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
		CHECK_EQ(id, k % 8);
	}
	CHECK_EQ(pop_from(&b).r, 0);
	successor_free(&b);
	pd_fini(&pd);
	free(rec);
}

TEST(packed_death_with_wrapped_and_indirect_chains) { packed_restart(false); }
TEST(packed_death_inside_a_push) { packed_restart(true); }

/* Dying again before anything was resubmitted changes nothing. */
TEST(packed_second_death_before_resubmission)
{
	void *rec = packed_life(false);
	CHECK(rec != NULL);
	struct vhu_vq b, c;
	successor(&b, &pd.vq, rec);
	CHECK_EQ(vhu__inflight_vq_start(&b), 0);
	struct got r = pop_from(&b);
	CHECK(same_buffers(&r, &pg[0]));
	successor(&c, &b, rec);
	CHECK_EQ(vhu__inflight_vq_start(&c), 0);
	CHECK_EQ(c.inf_n, 3);
	int order[3] = { 0, 3, 4 };
	for (int i = 0; i < 3; i++) {
		r = pop_from(&c);
		CHECK(same_buffers(&r, &pg[order[i]]));
	}
	CHECK_EQ(pop_from(&c).r, 0);
	successor_free(&b);
	successor_free(&c);
	pd_fini(&pd);
	free(rec);
}

/*
 * Three lives.  The first dies with buffers 0 and 1 in flight (record
 * entries 0 and 1).  The second rebuilds the free list from what is left
 * (entries 2-7), resubmits 0 and 1, pops 2 and 3 (entries 2 and 3, the
 * front of that list), completes 0 and 1 and dies with 2 and 3 in
 * flight.  The third must resubmit exactly 2 and 3.  A rebuilt free list
 * whose last entry linked back to its first (entry 2, in flight by then)
 * read entries 2 and 3 as free: nothing resubmitted, the ring position
 * count short, and the next pop met a buffer id already in flight (vhu-blk
 * under QEMU 10.0 after a second restart: "buffer id already in flight").
 */
TEST(packed_third_life_after_a_rebuilt_free_list)
{
	struct pd_opts o = { .size = 8 };
	CHECK_EQ(pd_init(&pd, &o), 0);
	struct vhu_vq *a = &pd.vq;
	void *rec = region(vhu__inflight_queue_bytes_packed(8));
	a->infp = rec;
	CHECK_EQ(vhu__inflight_vq_start(a), 0);
	uint64_t d = gmem_buf(&pd.g, 4096);
	struct pd_buf one[4] = { { d, 8, true }, { d + 64, 8, true },
				 { d + 128, 8, true }, { d + 192, 8, true } };
	struct got g[4];
	pd_add(&pd, &one[0], 1, 0);
	pd_add(&pd, &one[1], 1, 1);
	g[0] = pop_from(a);
	g[1] = pop_from(a);
	CHECK_EQ(g[0].id, 0);
	CHECK_EQ(g[1].id, 1);

	struct vhu_vq b, c;
	successor(&b, a, rec);
	CHECK_EQ(vhu__inflight_vq_start(&b), 0);
	CHECK_EQ(b.inf_n, 2);
	struct got r = pop_from(&b);
	CHECK(same_buffers(&r, &g[0]));
	r = pop_from(&b);
	CHECK(same_buffers(&r, &g[1]));
	pd_add(&pd, &one[2], 1, 2);
	pd_add(&pd, &one[3], 1, 3);
	g[2] = pop_from(&b);
	g[3] = pop_from(&b);
	CHECK_EQ(g[2].id, 2);
	CHECK_EQ(g[3].id, 3);
	push_id(&b, 0);
	push_id(&b, 1);

	successor(&c, &b, rec);
	CHECK_EQ(vhu__inflight_vq_start(&c), 0);
	CHECK(!c.broken);
	CHECK_EQ(c.inf_n, 2);
	CHECK_EQ(c.used_idx, 2);
	CHECK_EQ(c.last_avail_idx, 4);
	r = pop_from(&c);
	CHECK(same_buffers(&r, &g[2]));
	r = pop_from(&c);
	CHECK(same_buffers(&r, &g[3]));
	CHECK_EQ(pop_from(&c).r, 0);
	/* And the free list still serves a full ring afterwards. */
	push_id(&c, 2);
	push_id(&c, 3);
	for (uint16_t k = 0; k < 8; k++)
		pd_add(&pd, &one[k % 4], 1, k);
	for (uint16_t k = 0; k < 8; k++) {
		r = pop_from(&c);
		CHECK_EQ(r.r, 1);
		CHECK_EQ(r.id, k);
	}
	CHECK_EQ(pop_from(&c).r, 0);
	successor_free(&b);
	successor_free(&c);
	pd_fini(&pd);
	free(rec);
}

/* A record the front-end (or anyone with the fd) scribbled on costs that
 * queue and nothing else. */
TEST(packed_hostile_record_breaks_only_the_queue)
{
	for (int kind = 0; kind < 5; kind++) {
		void *rec = packed_life(false);
		CHECK(rec != NULL);
		struct vhu__inflight_packed *q = rec;
		switch (kind) {
		case 0: q->desc[0].num = 9; break;           /* > ring */
		case 1: q->desc[0].last = 7; break;          /* wrong end */
		case 2: q->desc[6].inflight = 1;             /* overlap */
			q->desc[6].num = 3; q->desc[6].last = 2; break;
		case 3: q->old_used_idx = 40; q->used_idx = 1; break;
		case 4: q->free_head = q->old_free_head = 300; break;
		}
		struct vhu_vq b;
		successor(&b, &pd.vq, rec);
		CHECK_EQ(vhu__inflight_vq_start(&b), 0);
		CHECK(b.broken);
		CHECK_EQ(pop_from(&b).r, -EIO);
		successor_free(&b);
		pd_fini(&pd);
		free(rec);
	}
}

int main(void) { return tap_run(); }
