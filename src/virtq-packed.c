/* SPDX-License-Identifier: MIT */
/*
 * Packed virtqueue, device side (virtio 1.2, section 2.8).
 *
 * One ring of 16-byte descriptors {le64 addr; le32 len; le16 id; le16
 * flags} is shared both ways: the driver makes a descriptor available by
 * setting AVAIL to its wrap counter and USED to the inverse; the device
 * marks a buffer used by writing one descriptor, with the buffer id, at
 * its own used position, both flags equal to its used wrap counter, and
 * then skips as many positions as the buffer's chain took (2.8.6).  Both
 * wrap counters start at 1 and flip each time a position wraps to 0.
 *
 * The same guarantees as the split ring: each descriptor's flags are read
 * once with acquire ordering (the driver writes the head's flags last,
 * 2.8.6), then the rest is copied once into a local, checked and used;
 * chain walks are bounded by the ring size, one level of indirection; a
 * malformed ring marks the queue broken.  Buffer ids are the driver's:
 * each one is checked against the ring size and against the ids in
 * flight, and the number of positions its chain took is kept here, not
 * read back from the ring, when the buffer is pushed.
 *
 * Event suppression (2.8.10, 2.8.14), {le16 off_wrap; le16 flags}: the
 * driver area (vq->avail) decides used-buffer notifications
 * (ENABLE/DISABLE, or DESC: notify once the used position passes
 * off_wrap); the device area (vq->used) is ours and only ever says
 * ENABLE or DISABLE.  With EVENT_IDX a pop that finds the ring empty
 * re-enables kicks that vhu_vq_disable_notify() turned off, so a device
 * that pops until empty and then sleeps never misses a request, as with
 * the split ring.
 *
 * Data path: no allocation, no system call but the eventfd writes.
 */
#include <endian.h>
#include <stddef.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define OFF_MASK 0x7fffu
#define WRAP_BIT 15

size_t vhu__packed_ring_bytes(unsigned size)
{
	return sizeof(struct vhu__pdesc) * (size_t)size;
}

static inline struct vhu__pdesc *ring(const struct vhu_vq *vq)
{
	return (struct vhu__pdesc *)(void *)vq->desc;
}

/* ------------------------------------------------------- life cycle */

/*
 * SET_VRING_ADDR for a packed ring (vhost-user.rst): desc is the
 * descriptor ring, avail the driver event suppression area, used the
 * device event suppression area.  Alignment per 2.8.10.1: 16, 4, 4.
 */
int vhu__packed_map(struct vhu_vq *vq)
{
	unsigned size = vq->size;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	/* 2.8: up to 2^15 entries, any number (not only powers of 2). */
	if (size == 0 || size > VHU_MAX_QUEUE_SIZE)
		return -EINVAL;
	if (!vq->mem)
		return -EFAULT;
	if ((vq->desc_uva & 15) || (vq->avail_uva & 3) || (vq->used_uva & 3))
		return -EINVAL;
	if (vq->last_avail_idx >= size || vq->used_idx >= size)
		return -EINVAL;
	/* With an IOTLB: the device reads and writes the descriptor ring,
	 * reads the driver's event area and writes its own. */
	void *d = vhu__vq_ring_va(vq, vq->desc_uva, vhu__packed_ring_bytes(size),
				  VHU_IOTLB_PERM_RW);
	void *a = vhu__vq_ring_va(vq, vq->avail_uva, VHU__PEVENT_BYTES,
				  VHU_IOTLB_PERM_RO);
	void *u = vhu__vq_ring_va(vq, vq->used_uva, VHU__PEVENT_BYTES,
				  VHU_IOTLB_PERM_WO);
	if (!d || !a || !u)
		return -EFAULT;
	if (((uintptr_t)d & 15) || ((uintptr_t)a & 3) || ((uintptr_t)u & 3))
		return -EINVAL;
	/* Sized for the largest ring, so a new SET_VRING_NUM needs none. */
	if (!vq->pk_chain) {
		vq->pk_chain = calloc(VHU_MAX_QUEUE_SIZE, sizeof(*vq->pk_chain));
		if (!vq->pk_chain)
			return -ENOMEM;
	}
	vq->desc = d;
	vq->avail = a;
	vq->used = u;
	return 0;
}

void vhu__packed_release(struct vhu_vq *vq)
{
	free(vq->pk_chain);
	vq->pk_chain = NULL;
}

void vhu__packed_set_base(struct vhu_vq *vq, uint32_t num)
{
	vq->last_avail_idx = (uint16_t)(num & OFF_MASK);
	vq->shadow_avail_idx = vq->last_avail_idx;
	vq->pk_avail_wrap = (num >> WRAP_BIT) & 1;
	vq->used_idx = (uint16_t)((num >> 16) & OFF_MASK);
	vq->pk_used_wrap = (num >> (16 + WRAP_BIT)) & 1;
	vq->pk_used_since = 0;
	vq->pk_kicks_off = false;
	vq->inflight = 0;
	if (vq->pk_chain)
		memset(vq->pk_chain, 0,
		       VHU_MAX_QUEUE_SIZE * sizeof(*vq->pk_chain));
}

uint32_t vhu__packed_get_base(const struct vhu_vq *vq)
{
	return (uint32_t)(vq->last_avail_idx & OFF_MASK) |
	       (uint32_t)vq->pk_avail_wrap << WRAP_BIT |
	       (uint32_t)(vq->used_idx & OFF_MASK) << 16 |
	       (uint32_t)vq->pk_used_wrap << (16 + WRAP_BIT);
}

/* ----------------------------------------------------------- popping */

static inline uint16_t desc_flags_acquire(const struct vhu_vq *vq, unsigned pos)
{
	return le16toh(__atomic_load_n(&ring(vq)[pos].flags, __ATOMIC_ACQUIRE));
}

/* 2.8.1: available means AVAIL == the wrap counter and USED != it.
 * AVAIL == USED == the wrap counter at a position the device has not
 * reached in this lap cannot be: the driver wrote nonsense. */
enum { D_NONE = 0, D_AVAIL = 1, D_BAD = -1 };
static inline int classify(uint16_t flags, bool wrap)
{
	bool a = (flags & VHU__PDESC_F_AVAIL) != 0;
	bool u = (flags & VHU__PDESC_F_USED) != 0;
	if (a != wrap)
		return D_NONE;
	return u != wrap ? D_AVAIL : D_BAD;
}

/* An indirect table (2.8.7): len / 16 descriptors, of whose flags only
 * WRITE counts; INDIRECT inside it is a nested table, which we refuse. */
static int walk_table(const struct vhu_vq *vq, uint64_t addr, uint32_t len,
		      struct vhu__chain *c)
{
	if (len == 0 || len % sizeof(struct vhu__pdesc) ||
	    len / sizeof(struct vhu__pdesc) > VHU__INDIRECT_MAX_ENTRIES) {
		c->why = "bad indirect table length";
		return -EIO;
	}
	const void *tv;
	int r = vhu__chain_table(vq, c, addr, len, &tv);
	if (r < 0)
		return r;
	const struct vhu__pdesc *t = tv;
	unsigned entries = len / sizeof(struct vhu__pdesc);
	for (unsigned i = 0; i < entries; i++) {
		struct vhu__pdesc d;
		memcpy(&d, &t[i], sizeof(d));
		VHU__GUEST_COPIED();
		uint16_t f = le16toh(d.flags);
		uint32_t l = le32toh(d.len);
		if (f & VHU_VRING_DESC_F_INDIRECT) {
			c->why = "nested indirect table";
			return -EIO;
		}
		r = vhu__chain_add(vq, c, le64toh(d.addr), l,
				   (f & VHU_VRING_DESC_F_WRITE) != 0);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Walk the buffer whose head sits at last_avail_idx (head_flags already
 * read).  A chain occupies consecutive positions, wrapping at the ring's
 * end (2.8.6); every member must be available in its lap and the buffer
 * id is the last descriptor's.  Returns 0 with *id and *count (positions
 * taken), or -EIO with c->why.
 */
static int walk(struct vhu_vq *vq, uint16_t head_flags, struct vhu__chain *c,
		uint16_t *id, uint16_t *count, uint16_t rec[3])
{
	unsigned size = vq->size, pos = vq->last_avail_idx;
	bool wrap = vq->pk_avail_wrap;
	uint16_t flags = head_flags;
	/* Tracked: each descriptor is noted in the next free entry. */
	uint16_t cursor = vq->pk_free, last = cursor, noted = 0;

	for (unsigned hops = 1;; hops++) {
		if (hops > 1) {
			if (hops > size) {
				c->why = "descriptor chain longer than the ring";
				return -EIO;
			}
			flags = desc_flags_acquire(vq, pos);
			if (classify(flags, wrap) != D_AVAIL) {
				c->why = "chain runs into a descriptor that is "
					 "not available";
				return -EIO;
			}
		}
		/* The flags were read above: copy the rest, once. */
		struct vhu__pdesc d;
		memcpy(&d, &ring(vq)[pos], offsetof(struct vhu__pdesc, flags));
		VHU__GUEST_COPIED();
		uint64_t addr = le64toh(d.addr);
		uint32_t len = le32toh(d.len);
		if (vq->infp) {
			last = cursor;
			noted += vhu__inflight_pk_note(vq, &cursor, addr, len,
						       le16toh(d.id), flags);
		}

		if (flags & VHU_VRING_DESC_F_INDIRECT) {
			/* 2.8.7: only with the feature, a whole buffer by
			 * itself (no NEXT, not inside a chain). */
			if (!vq->indirect) {
				c->why = "indirect descriptor not negotiated";
				return -EIO;
			}
			if (hops > 1 || (flags & VHU_VRING_DESC_F_NEXT)) {
				c->why = "indirect descriptor inside a chain";
				return -EIO;
			}
			int r = walk_table(vq, addr, len, c);
			if (r < 0)
				return r;
			*id = le16toh(d.id);
			*count = 1;
			break;
		}
		int r = vhu__chain_add(vq, c, addr, len,
				       (flags & VHU_VRING_DESC_F_WRITE) != 0);
		if (r < 0)
			return r;
		if (!(flags & VHU_VRING_DESC_F_NEXT)) {
			*id = le16toh(d.id);
			*count = (uint16_t)hops;
			break;
		}
		if (++pos == size) {
			pos = 0;
			wrap = !wrap;
		}
	}
	/* Tracked: where the free entries resume, and the buffer's last
	 * entry, for vhu__inflight_pk_popped once the caller accepts it. */
	rec[0] = cursor;
	rec[1] = last;
	rec[2] = noted;
	return 0;
}

/*
 * A buffer a previous back-end popped and never completed, rebuilt from
 * its record (vhost-user.rst "Inflight I/O tracking"): the ring positions
 * it came from may hold used descriptors by now.  Entry by entry from
 * the head, each copied once; the same rules as a chain in the ring.
 */
static int walk_record(struct vhu_vq *vq, uint16_t head, struct vhu__chain *c,
		       uint16_t *id, uint16_t *count, uint16_t *last)
{
	unsigned n = vq->pk_num[head], slot = head;

	for (unsigned hop = 1; hop <= n; hop++) {
		struct vhu__pk_rec d;
		vhu__inflight_pk_read(vq, (uint16_t)slot, &d);
		bool more = (d.flags & VHU_VRING_DESC_F_NEXT) != 0;
		*last = (uint16_t)slot;
		*id = d.id;
		if (d.flags & VHU_VRING_DESC_F_INDIRECT) {
			if (!vq->indirect || n != 1 || more) {
				c->why = "recorded indirect descriptor not "
					 "alone";
				return -EIO;
			}
			*count = 1;
			return walk_table(vq, d.addr, d.len, c);
		}
		int r = vhu__chain_add(vq, c, d.addr, d.len,
				       (d.flags & VHU_VRING_DESC_F_WRITE) != 0);
		if (r < 0)
			return r;
		if (more != (hop < n)) {
			c->why = "recorded chain disagrees with its length";
			return -EIO;
		}
		slot = vq->pk_next[slot];
	}
	*count = (uint16_t)n;
	return 0;
}

static inline void set_device_flags(struct vhu_vq *vq, uint16_t f)
{
	/* device area: off_wrap, flags */
	__atomic_store_n(&vq->used[1], htole16(f), __ATOMIC_RELAXED);
	/* QEMU's log_gpa for a packed ring is this area (vhost-user.rst
	 * "Migration", marked when the ring's LOG flag is set). */
	if (__builtin_expect(vq->log != NULL, 0)) {
		if (vhu__log_used(vq, 2, 2) < 0)
			vhu__vq_break(vq, "device area outside the dirty log");
		vhu__log_flush(vq);
	}
}

static int head_state(const struct vhu_vq *vq)
{
	return classify(desc_flags_acquire(vq, vq->last_avail_idx),
			vq->pk_avail_wrap);
}

/* The buffer is the caller's now: the element, or an empty completion
 * when it needs more iovecs than the caller has. */
static int hand_out(struct vhu_vq *vq, struct vhu_vq_elem *elem,
		    struct iovec *iov, unsigned iov_cap, const struct vhu__chain *c,
		    uint16_t id, unsigned pop_flags)
{
	if (c->overflow && (pop_flags & VHU_VQ_POP_PARTIAL)) {
		vhu__vq_partial(vq, elem, id, c);
		return 1;
	}
	if (c->overflow && (pop_flags & VHU_VQ_POP_TRUNCATED)) {
		vhu__vq_truncated(vq, elem, id, iov, iov_cap, c->wr_addr,
				  c->wr_len);
		return 1;
	}
	if (c->overflow) {
		vhu__log_rl(VHU_LOG_WARN, "queue %u: request %u needs more "
			    "than %u buffers; completed empty", vq->index, id,
			    iov_cap);
		struct vhu_vq_elem e = { .id = id };
		vhu__packed_push(vq, &e, 0);
		return -E2BIG;
	}
	elem->id = id;
	elem->n_out = (uint16_t)c->n_out;
	elem->n_in = (uint16_t)(c->n - c->n_out);
	elem->flags = 0;
	elem->iov = iov;
	return 1;
}

/* Resubmissions come first, in their original order; the ring positions
 * they took are already behind last_avail_idx (recovery put it there). */
static int pop_resubmitted(struct vhu_vq *vq, struct vhu_vq_elem *elem,
			   struct iovec *iov, unsigned iov_cap,
			   unsigned pop_flags)
{
	uint16_t head = vq->inf_resubmit[vq->inf_pos];
	struct vhu__chain c = {
		.iov = iov,
		.cap = iov_cap > UINT16_MAX ? UINT16_MAX : iov_cap,
		.walk_on = true,
	};
	uint16_t id = 0, count = 0, last = head;
	int r = walk_record(vq, head, &c, &id, &count, &last);
	if (r == -EAGAIN) {
		/* Taken again once the front-end answers the miss. */
		vhu__vq_iotlb_wait(vq, c.miss_iova, c.miss_perm);
		return 0;
	}
	vq->inf_pos++;
	if (r < 0) {
		vhu__vq_break(vq, c.why ? c.why : "bad recorded chain");
		return -EIO;
	}
	if (id >= vq->size || vq->pk_chain[id]) {
		vhu__vq_break(vq, "recorded buffer id out of range or twice");
		return -EIO;
	}
	vq->pk_chain[id] = count;
	vq->pk_head[id] = head;
	vq->pk_last[id] = last;
	vq->inflight++;
	return hand_out(vq, elem, iov, iov_cap, &c, id, pop_flags);
}

int vhu__packed_pop(struct vhu_vq *vq, struct vhu_vq_elem *elem,
		    struct iovec *iov, unsigned iov_cap, unsigned pop_flags)
{
	if (vq->broken)
		return -EIO;
	if (!vq->desc || !vq->avail || !vq->used || !vq->pk_chain)
		return 0;
	if (vq->inf_pos < vq->inf_n)
		return pop_resubmitted(vq, elem, iov, iov_cap, pop_flags);

	uint16_t flags = desc_flags_acquire(vq, vq->last_avail_idx);
	int st = classify(flags, vq->pk_avail_wrap);
	if (st == D_NONE && vq->event_idx && vq->pk_kicks_off &&
	    !(pop_flags & VHU_VQ_POP_NO_REARM)) {
		/* Ask for kicks again, then look again: the full barrier
		 * orders the store before the second load. */
		set_device_flags(vq, VHU__PEVENT_ENABLE);
		vq->pk_kicks_off = false;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		flags = desc_flags_acquire(vq, vq->last_avail_idx);
		st = classify(flags, vq->pk_avail_wrap);
	}
	if (st == D_NONE)
		return 0;
	if (st == D_BAD) {
		vhu__vq_break(vq, "descriptor marked both available and used");
		return -EIO;
	}

	struct vhu__chain c = {
		.iov = iov,
		.cap = iov_cap > UINT16_MAX ? UINT16_MAX : iov_cap,
		.walk_on = true,
	};
	uint16_t id = 0, count = 0, rec[3] = { 0, 0, 0 };
	int r = walk(vq, flags, &c, &id, &count, rec);
	if (r == -EAGAIN) {
		/* A translation is missing: nothing is taken (the entries the
		 * walk noted are past the free list's head, still free). */
		vhu__vq_iotlb_wait(vq, c.miss_iova, c.miss_perm);
		return 0;
	}
	if (r < 0) {
		vhu__vq_break(vq, c.why ? c.why : "bad descriptor chain");
		return -EIO;
	}
	if (id >= vq->size) {
		vhu__vq_break(vq, "buffer id out of range");
		return -EIO;
	}
	if (vq->pk_chain[id]) {
		vhu__vq_break(vq, "buffer id already in flight");
		return -EIO;
	}
	unsigned next = vq->last_avail_idx + count;
	if (next >= vq->size) {
		next -= vq->size;
		vq->pk_avail_wrap = !vq->pk_avail_wrap;
	}
	vq->last_avail_idx = (uint16_t)next;
	vq->shadow_avail_idx = (uint16_t)next;
	if (vq->infp)
		vhu__inflight_pk_popped(vq, rec[0], rec[1], id, count,
					rec[2]);
	vq->pk_chain[id] = count;
	vq->inflight++;
	return hand_out(vq, elem, iov, iov_cap, &c, id, pop_flags);
}

/* ----------------------------------------------------------- pushing */

void vhu__packed_push(struct vhu_vq *vq, const struct vhu_vq_elem *elem,
		      uint32_t written)
{
	if (vq->broken || !vq->desc || !vq->pk_chain)
		return;
	if (elem->id >= vq->size || vq->pk_chain[elem->id] == 0) {
		vhu__log_rl(VHU_LOG_ERROR, "queue %u: push of unknown "
			    "request %u", vq->index, elem->id);
		return;
	}
	unsigned count = vq->pk_chain[elem->id];
	vq->pk_chain[elem->id] = 0;

	unsigned next = vq->used_idx + count;
	bool next_wrap = vq->pk_used_wrap;
	if (next >= vq->size) {
		next -= vq->size;
		next_wrap = !next_wrap;
	}
	if (vq->infp)
		vhu__inflight_pk_pushing(vq, elem->id, (uint16_t)next,
					 next_wrap);

	struct vhu__pdesc *d = &ring(vq)[vq->used_idx];
	/* vhost-user.rst "Migration": the buffers first, before the used
	 * descriptor that hands them back. */
	if (__builtin_expect(vq->log != NULL, 0)) {
		if (vhu__log_writable(vq, elem) < 0) {
			vhu__vq_break(vq, "written buffer outside the dirty log");
			return;
		}
		vhu__log_flush(vq);
	}
	d->id = htole16(elem->id);
	d->len = htole32(written);
	/* 2.8.1: used means AVAIL == USED == our used wrap counter; 2.8.3:
	 * WRITE says whether anything was written.  Flags go last so the
	 * driver never sees a used descriptor before its id and length. */
	uint16_t f = vq->pk_used_wrap ? (VHU__PDESC_F_AVAIL | VHU__PDESC_F_USED)
				      : 0;
	if (written)
		f |= VHU_VRING_DESC_F_WRITE;
	__atomic_store_n(&d->flags, htole16(f), __ATOMIC_RELEASE);
	/* The used descriptor lives in the descriptor ring: its own page is
	 * marked (the front-end's log_gpa names the device area instead). */
	if (__builtin_expect(vq->log != NULL, 0)) {
		if (vhu__log_va(vq, d, sizeof(*d)) < 0)
			vhu__vq_break(vq, "descriptor ring outside the dirty log");
		vhu__log_flush(vq);
	}

	vq->used_idx = (uint16_t)next;
	vq->pk_used_wrap = next_wrap;
	if (vq->infp)
		vhu__inflight_pk_pushed(vq, elem->id);
	if (vq->pk_used_since < INT32_MAX)
		vq->pk_used_since += count;
	if (vq->inflight)
		vq->inflight--;
}

/*
 * 2.8.10 / 2.8.14: the driver's event suppression.  DESC asks for a
 * notification once the used descriptor at (off, wrap) is written, i.e.
 * when that position lies in [old, new) of the positions used since the
 * last notification: the packed form of vring_need_event.
 */
bool vhu__packed_should_notify(struct vhu_vq *vq)
{
	uint32_t since = vq->pk_used_since;
	if (since == 0)
		return false;
	/* Our used flags before the driver's suppression fields. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* One 32-bit load: off_wrap and flags from the same moment. */
	uint32_t ev = le32toh(__atomic_load_n((volatile uint32_t *)vq->avail,
					      __ATOMIC_RELAXED));
	VHU__GUEST_COPIED();
	vq->pk_used_since = 0;

	unsigned flags = (ev >> 16) & 3;
	if (flags == VHU__PEVENT_DISABLE)
		return false;
	/* ENABLE, reserved 3, or DESC without EVENT_IDX: notify. */
	if (flags != VHU__PEVENT_DESC || !vq->event_idx)
		return true;
	unsigned off = ev & OFF_MASK;
	bool wrap = (ev >> WRAP_BIT) & 1;
	if (off >= vq->size)
		return true;
	long delta = (long)vq->used_idx - (long)off;
	if (wrap != vq->pk_used_wrap)
		delta += vq->size;
	return delta >= 1 && (unsigned long)delta <= since;
}

/* ------------------------------------------------ kick suppression */

void vhu__packed_disable_notify(struct vhu_vq *vq)
{
	if (!vq->used)
		return;
	set_device_flags(vq, VHU__PEVENT_DISABLE);
	vq->pk_kicks_off = true;
}

bool vhu__packed_enable_notify(struct vhu_vq *vq)
{
	if (vq->broken || !vq->used || !vq->desc)
		return false;
	set_device_flags(vq, VHU__PEVENT_ENABLE);
	vq->pk_kicks_off = false;
	/* The store before the re-read of the next descriptor's flags. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return head_state(vq) != D_NONE;
}

bool vhu__packed_has_work(struct vhu_vq *vq)
{
	if (vq->broken || !vq->desc)
		return false;
	return head_state(vq) != D_NONE;
}
