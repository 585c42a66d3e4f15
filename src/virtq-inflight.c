/* SPDX-License-Identifier: MIT */
/*
 * Inflight I/O tracking, the queue's side (vhost-user.rst "Inflight I/O
 * tracking"): a split queue's record in the shared region, recovered when
 * the queue starts, and the list of heads to resubmit.  Ring state: this
 * file knows the queue and its record, never the session that mapped the
 * region (backend-inflight.c does that, and serves GET/SET_INFLIGHT_FD).
 *
 * Split rings, per queue at a stride of VHU__INFLIGHT_ALIGN:
 *   u64 features; u16 version; u16 desc_num; u16 last_batch_head;
 *   u16 used_idx; then desc_num entries
 *   { u8 inflight; u8 padding[5]; u16 next; u64 counter }.
 * Packed rings (struct vhu__inflight_packed): the second half of this
 * file.
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
	vq->inf_resumed = true;

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

static void packed_forget(struct vhu_vq *vq)
{
	free(vq->pk_next);
	vq->pk_next = vq->pk_num = vq->pk_head = vq->pk_last = NULL;
	vq->pk_free = 0;
}

int vhu__inflight_vq_start(struct vhu_vq *vq)
{
	free(vq->inf_resubmit);
	vq->inf_resubmit = NULL;
	vq->inf_n = vq->inf_pos = 0;
	vq->inf_resumed = false;
	packed_forget(vq);
	if (vq->infp)
		return vhu__inflight_packed_start(vq);
	if (!vq->inf)
		return 0;
	return split_start(vq);
}

void vhu__inflight_vq_release(struct vhu_vq *vq)
{
	free(vq->inf_resubmit);
	vq->inf_resubmit = NULL;
	vq->inf_n = vq->inf_pos = 0;
	vq->inf_resumed = false;
	vq->inf = NULL;
	vq->infp = NULL;
	packed_forget(vq);
}

/* ================================================ packed ring layout */

size_t vhu__inflight_queue_bytes_packed(unsigned queue_size)
{
	size_t n = sizeof(struct vhu__inflight_packed) +
		   (size_t)queue_size * sizeof(struct vhu__inflight_pentry);
	return (n + VHU__INFLIGHT_ALIGN - 1) & ~(size_t)(VHU__INFLIGHT_ALIGN - 1);
}

/* Order the region's stores as a later process will find them after
 * this one died at any point (it never sees a torn sequence). */
#define STEP() __asm__ volatile("" ::: "memory")

/* A record that cannot be made sense of: the queue stops serving (the
 * front-end hears of it on the error fd); nothing else is touched. */
static void packed_refuse(struct vhu_vq *vq, const char *why)
{
	vhu__err("queue %u: packed inflight record unusable (%s): queue "
		 "stopped", vq->index, why);
	vq->broken = true;
	vq->infp = NULL;
	(void)vhu__eventfd_signal(vq->err_fd);
}

static void packed_init(struct vhu_vq *vq)
{
	struct vhu__inflight_packed *q = vq->infp;
	unsigned size = vq->size;

	q->version = 0;
	STEP();
	for (unsigned i = 0; i < size; i++) {
		memset(&q->desc[i], 0, sizeof(q->desc[i]));
		/* The list ends out of range (size): "no free entry". */
		uint16_t next = (uint16_t)(i + 1);
		q->desc[i].next = next;
		vq->pk_next[i] = next;
	}
	q->features = 0;
	q->desc_num = (uint16_t)size;
	q->free_head = q->old_free_head = 0;
	q->used_idx = q->old_used_idx = vq->used_idx;
	q->used_wrap_counter = q->old_used_wrap_counter = vq->pk_used_wrap;
	STEP();
	q->version = VHU__INFLIGHT_VERSION;
	vq->pk_free = 0;
	vq->inf_counter = 1;
}

enum { E_UNSEEN = 0, E_FREE, E_MEMBER };

/* What recovery copies out of the region, each field read once. */
struct pk_view {
	uint16_t free_head, used_idx;
	bool used_wrap;
	uint8_t *state;     /* E_* per entry */
	struct resub *heads;
	unsigned n;         /* heads in flight */
	unsigned positions; /* ring positions they took */
};

/*
 * vhost-user.rst "When reconnecting" for packed rings: an update the
 * previous process was making is committed when its used descriptor
 * reached the ring (the descriptor at old_used_idx no longer shows the
 * driver's available flags for old_used_wrap_counter), and otherwise
 * rolled back to the "old" copies.
 */
static const char *pk_header(struct vhu_vq *vq, struct pk_view *v)
{
	const struct vhu__inflight_packed *q = vq->infp;
	unsigned size = vq->size;
	uint16_t fh = q->free_head, ofh = q->old_free_head;
	uint16_t ui = q->used_idx, oui = q->old_used_idx;
	bool uw = q->used_wrap_counter != 0, ouw = q->old_used_wrap_counter != 0;

	if (ui != oui || uw != ouw) {
		if (oui >= size)
			return "old used index beyond the ring";
		const struct vhu__pdesc *ring = (const void *)vq->desc;
		uint16_t f = le16toh(__atomic_load_n(&ring[oui].flags,
						     __ATOMIC_ACQUIRE));
		uint16_t avail = ouw ? VHU__PDESC_F_AVAIL : VHU__PDESC_F_USED;
		if ((f & (VHU__PDESC_F_AVAIL | VHU__PDESC_F_USED)) != avail) {
			ofh = fh;
			oui = ui;
			ouw = uw;
		}
	}
	/* free head == size: every entry in flight (a full ring). */
	if (ofh > size || oui >= size)
		return "free head or used index beyond the ring";
	v->free_head = ofh;
	v->used_idx = oui;
	v->used_wrap = ouw;
	return NULL;
}

/* The free list, then every marked entry outside it as the head of a
 * chain of num entries: in range, disjoint, ending at its last. */
static const char *pk_entries(struct vhu_vq *vq, struct pk_view *v)
{
	struct vhu__inflight_packed *q = vq->infp;
	unsigned size = vq->size;
	uint16_t *last = vq->pk_last; /* per entry, scratch until done */

	for (unsigned i = 0; i < size; i++) {
		vq->pk_next[i] = q->desc[i].next;
		vq->pk_num[i] = q->desc[i].num;
		last[i] = q->desc[i].last;
		v->heads[i].counter = q->desc[i].counter;
		v->heads[i].head = q->desc[i].inflight != 0;
	}
	uint16_t slot = v->free_head;
	for (unsigned k = 0; k < size && slot < size; k++) {
		if (v->state[slot] != E_UNSEEN)
			break;
		v->state[slot] = E_FREE;
		slot = vq->pk_next[slot];
	}
	v->n = 0;
	v->positions = 0;
	for (unsigned i = 0; i < size; i++) {
		if (!v->heads[i].head || v->state[i] == E_FREE)
			continue;
		unsigned num = vq->pk_num[i], e = i;
		if (num == 0 || num > size)
			return "chain length out of range";
		for (unsigned hop = 1;; hop++) {
			if (e >= size || v->state[e] != E_UNSEEN)
				return "chains overlap or leave the ring";
			v->state[e] = E_MEMBER;
			if (hop == num)
				break;
			e = vq->pk_next[e];
		}
		if (e != last[i])
			return "chain does not end at its last entry";
		v->heads[v->n].counter = v->heads[i].counter;
		v->heads[v->n].head = (uint16_t)i;
		v->n++;
		v->positions += num;
	}
	return NULL;
}

/* Everything outside the chains in flight is free again, linked in
 * index order and ended out of range (size), as packed_init ends it, in
 * our view and in the region (whose old free list only ever reaches free
 * entries, so a death half-way through is harmless).  Never back to its
 * first entry: that one is handed out next, and a later recovery walking
 * the list would read it - in flight by then - as free. */
static void pk_rebuild_free(struct vhu_vq *vq, const struct pk_view *v)
{
	struct vhu__inflight_packed *q = vq->infp;
	unsigned size = vq->size, first = size, prev = size;

	for (unsigned i = 0; i < size; i++) {
		if (v->state[i] == E_MEMBER)
			continue;
		q->desc[i].inflight = 0;
		if (prev < size) {
			vq->pk_next[prev] = (uint16_t)i;
			q->desc[prev].next = (uint16_t)i;
		} else {
			first = i;
		}
		prev = i;
	}
	vq->pk_free = (uint16_t)first;
	if (prev < size) {
		vq->pk_next[prev] = (uint16_t)size;
		q->desc[prev].next = (uint16_t)size;
	}
	STEP();
	q->used_idx = q->old_used_idx = v->used_idx;
	q->used_wrap_counter = q->old_used_wrap_counter = v->used_wrap;
	STEP();
	q->free_head = q->old_free_head = vq->pk_free;
}

int vhu__inflight_packed_start(struct vhu_vq *vq)
{
	struct vhu__inflight_packed *q = vq->infp;
	unsigned size = vq->size;

	if (!vq->desc || size == 0)
		return 0;
	uint16_t *arr = calloc(4 * (size_t)size, sizeof(*arr));
	if (!arr)
		return -ENOMEM;
	vq->pk_next = arr;
	vq->pk_num = arr + size;
	vq->pk_head = arr + 2 * (size_t)size;
	vq->pk_last = arr + 3 * (size_t)size;

	uint16_t version = q->version, desc_num = q->desc_num;
	if (version != VHU__INFLIGHT_VERSION || desc_num != size) {
		if (version != 0)
			vhu__warn("queue %u: inflight record version %u, %u "
				  "entries: started afresh", vq->index,
				  version, desc_num);
		packed_init(vq);
		return 0;
	}

	struct pk_view v = { 0 };
	v.state = calloc(size, 1);
	v.heads = malloc(size * sizeof(*v.heads));
	const char *why = NULL;
	int r = 0;
	if (!v.state || !v.heads)
		r = -ENOMEM;
	else if (!(why = pk_header(vq, &v)))
		why = pk_entries(vq, &v);
	if (r == 0 && why) {
		packed_refuse(vq, why);
	} else if (r == 0) {
		vq->inf_resumed = true;
		memset(vq->pk_last, 0, size * sizeof(*vq->pk_last));
		pk_rebuild_free(vq, &v);
		/* QEMU keeps no packed ring position across a back-end's
		 * death: both come from the record.  Every position from
		 * the used one on was taken by a buffer still in flight. */
		unsigned avail = v.used_idx + v.positions;
		bool avail_wrap = v.used_wrap;
		if (avail >= size) {
			avail -= size;
			avail_wrap = !avail_wrap;
		}
		vq->used_idx = v.used_idx;
		vq->pk_used_wrap = v.used_wrap;
		vq->last_avail_idx = vq->shadow_avail_idx = (uint16_t)avail;
		vq->pk_avail_wrap = avail_wrap;
		r = install_resubmit(vq, v.heads, v.n);
	}
	free(v.state);
	free(v.heads);
	return r;
}

bool vhu__inflight_pk_note(struct vhu_vq *vq, uint16_t *cursor,
			   uint64_t addr, uint32_t len, uint16_t id,
			   uint16_t flags)
{
	uint16_t slot = *cursor;
	/* No free entry: a driver that reuses positions still in flight. */
	if (slot >= vq->size)
		return false;
	struct vhu__inflight_pentry *e = &vq->infp->desc[slot];
	e->addr = addr;
	e->len = len;
	e->id = id;
	e->flags = flags;
	*cursor = vq->pk_next[slot];
	return true;
}

void vhu__inflight_pk_popped(struct vhu_vq *vq, uint16_t cursor,
			     uint16_t last, uint16_t id, uint16_t count,
			     uint16_t noted)
{
	struct vhu__inflight_packed *q = vq->infp;
	uint16_t head = vq->pk_free;

	if (noted != count || head >= vq->size) {
		/* Not recorded: served, but lost if we die before it
		 * completes.  Only a driver breaking 2.8 gets here. */
		vhu__log_rl(VHU_LOG_WARN, "queue %u: buffer %u does not fit "
			    "the inflight record", vq->index, id);
		vq->pk_head[id] = vq->size;
		return;
	}
	struct vhu__inflight_pentry *e = &q->desc[head];

	e->num = count;
	e->last = last;
	e->counter = vq->inf_counter++;
	STEP();
	e->inflight = 1;
	STEP();
	q->free_head = cursor;
	STEP();
	q->old_free_head = cursor;
	vq->pk_free = cursor;
	vq->pk_head[id] = head;
	vq->pk_last[id] = last;
}

void vhu__inflight_pk_pushing(struct vhu_vq *vq, uint16_t id,
			      uint16_t used_idx, bool used_wrap)
{
	struct vhu__inflight_packed *q = vq->infp;
	uint16_t head = vq->pk_head[id], last = vq->pk_last[id];

	if (head >= vq->size)
		return;
	vq->pk_next[last] = vq->pk_free;
	q->desc[last].next = vq->pk_free;
	STEP();
	q->free_head = head;
	vq->pk_free = head;
	STEP();
	q->used_idx = used_idx;
	q->used_wrap_counter = used_wrap;
	STEP();
}

void vhu__inflight_pk_pushed(struct vhu_vq *vq, uint16_t id)
{
	struct vhu__inflight_packed *q = vq->infp;

	uint16_t head = vq->pk_head[id];
	if (head >= vq->size)
		return;
	STEP();
	q->desc[head].inflight = 0;
	STEP();
	q->old_free_head = vq->pk_free;
	q->old_used_idx = vq->used_idx;
	q->old_used_wrap_counter = vq->pk_used_wrap;
}

void vhu__inflight_pk_read(const struct vhu_vq *vq, uint16_t entry,
			   struct vhu__pk_rec *out)
{
	const struct vhu__inflight_pentry *e = &vq->infp->desc[entry];
	out->addr = e->addr;
	out->len = e->len;
	out->id = e->id;
	out->flags = e->flags;
}
