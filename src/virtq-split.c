/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue, device side (virtio 1.2, section 2.7).
 *
 * The rings live in guest memory the driver can change at any moment, so
 * every guest field is read exactly once into a local, checked, then used;
 * every loop over guest data is bounded (chain walks by the table size,
 * one level of indirection).  A malformed ring marks the queue broken: it
 * then does nothing but return -EIO until reset.
 *
 * Layout (2.7.6, 2.7.8), all little-endian:
 *   avail: u16 flags, u16 idx, u16 ring[size], u16 used_event
 *   used:  u16 flags, u16 idx, {u32 id, u32 len} ring[size], u16 avail_event
 *
 * Kick suppression (2.7.10): without EVENT_IDX, used->flags NO_NOTIFY is
 * set by vhu_vq_disable_notify() and cleared by vhu_vq_enable_notify().
 * With EVENT_IDX, avail_event is written by vhu_vq_enable_notify() and by
 * every pop that finds the ring empty, each followed by a full barrier and
 * a second look at avail->idx, so a device that simply pops until empty
 * and then sleeps on its kick fd never misses a request.  Disabling is a
 * no-op there: avail_event stays behind while the device is busy, which
 * already suppresses kicks.  A polling device pops with
 * VHU_VQ_POP_NO_REARM, so an empty pop leaves avail_event where it is (the
 * driver stops kicking once it ran past it), and calls
 * vhu_vq_enable_notify() before it sleeps.  Rings inherited from an earlier connection
 * may hold stale suppression fields: a device should pop once, or call
 * vhu_vq_enable_notify(), when its queue starts.
 *
 * This is the data path: no allocation and no system call except the
 * eventfd writes that notify the driver.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------- layout */

size_t vhu__vring_desc_bytes(unsigned size)
{
	return 16 * (size_t)size;
}

size_t vhu__vring_avail_bytes(unsigned size)
{
	return 6 + 2 * (size_t)size;
}

size_t vhu__vring_used_bytes(unsigned size)
{
	return 6 + 8 * (size_t)size;
}

static inline uint16_t avail_idx_acquire(const struct vhu_vq *vq)
{
	return le16toh(__atomic_load_n(&vq->avail[1], __ATOMIC_ACQUIRE));
}

static inline uint16_t avail_flags(const struct vhu_vq *vq)
{
	return le16toh(vq->avail[0]);
}

static inline uint16_t used_event(const struct vhu_vq *vq)
{
	return le16toh(vq->avail[2 + vq->size]);
}


#define LOGGING(vq) __builtin_expect((vq)->log != NULL, 0)

/* Dirty logging (virtq-log.c) of a used-ring field we just wrote. */
static void log_used_field(struct vhu_vq *vq, uint64_t off, uint64_t len)
{
	if (vhu__log_used(vq, off, len) < 0) {
		vhu__vq_break(vq, "used ring outside the dirty log");
		return;
	}
	vhu__log_flush(vq);
}

static inline void set_avail_event(struct vhu_vq *vq, uint16_t v)
{
	/* after the used ring's 4 + 8 * size bytes */
	vq->used[2 + 4 * (size_t)vq->size] = htole16(v);
	if (LOGGING(vq))
		log_used_field(vq, 4 + 8 * (uint64_t)vq->size, 2);
}

static inline void set_used_flags(struct vhu_vq *vq, uint16_t v)
{
	vq->used[0] = htole16(v);
	if (LOGGING(vq))
		log_used_field(vq, 0, 2);
}

/* ------------------------------------------------------- life cycle */

void vhu__split_init(struct vhu_vq *vq, unsigned index,
		     const struct vhu__mem *mem)
{
	memset(vq, 0, sizeof(*vq));
	vq->index = index;
	vq->mem = mem;
	vq->kick_fd = -1;
	vq->call_fd = -1;
	vq->err_fd = -1;
	vq->iotlb_miss_fd = -1;
}

void vhu__split_reset(struct vhu_vq *vq)
{
	unsigned index = vq->index;
	const struct vhu__mem *mem = vq->mem;
	void *priv = vq->priv; /* the device's, set once for the queue */
	int fds[3] = { vq->kick_fd, vq->call_fd, vq->err_fd };
	vhu__close_fds(fds, 3);
	vhu__inflight_vq_release(vq);
	vhu__split_init(vq, index, mem);
	vq->priv = priv;
}

/*
 * Rings are found by front-end virtual address (vhost-user.rst
 * SET_VRING_ADDR).  Each must lie whole inside one region and be aligned
 * as virtio 1.2, 2.7 requires (descriptor table 16, available ring 2,
 * used ring 4); our own mapping must be aligned the same way, since the
 * index fields are accessed atomically.  Only pointers change here: the
 * indices belong to SET_VRING_BASE, and a remap after a memory-table
 * change must not disturb a queue's position.
 */
int vhu__split_map(struct vhu_vq *vq)
{
	unsigned size = vq->size;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	if (size == 0 || size > VHU_MAX_QUEUE_SIZE || (size & (size - 1)))
		return -EINVAL;
	if (!vq->mem)
		return -EFAULT;
	if ((vq->desc_uva & 15) || (vq->avail_uva & 1) || (vq->used_uva & 3))
		return -EINVAL;

	/* With an IOTLB the device needs read access to the driver's areas
	 * and write access to its own. */
	void *d = vhu__vq_ring_va(vq, vq->desc_uva, vhu__vring_desc_bytes(size),
				  VHU_IOTLB_PERM_RO);
	void *a = vhu__vq_ring_va(vq, vq->avail_uva,
				  vhu__vring_avail_bytes(size),
				  VHU_IOTLB_PERM_RO);
	void *u = vhu__vq_ring_va(vq, vq->used_uva,
				  vhu__vring_used_bytes(size),
				  VHU_IOTLB_PERM_WO);
	if (!d || !a || !u)
		return -EFAULT;
	if (((uintptr_t)d & 15) || ((uintptr_t)a & 1) || ((uintptr_t)u & 3))
		return -EINVAL;
	vq->desc = d;
	vq->avail = a;
	vq->used = u;
	return 0;
}

/* ----------------------------------------------------------- popping */

/* Read avail->idx (acquire: the ring entries it covers are read after
 * it) and check it against last_avail_idx.  Returns the number of new
 * entries, or -EIO.  virtio 1.2, 2.7.13: the driver can be at most a
 * ring's worth ahead. */
static int refresh_avail(struct vhu_vq *vq)
{
	uint16_t idx = avail_idx_acquire(vq);
	uint16_t pending = (uint16_t)(idx - vq->last_avail_idx);
	if (pending > vq->size) {
		vhu__vq_break(vq, "available index ran more than a ring ahead");
		return -EIO;
	}
	vq->shadow_avail_idx = idx;
	return pending;
}

/*
 * Walk the chain starting at head (< size).  Each descriptor is copied
 * before it is looked at.  The walk over the descriptor table is bounded by
 * the queue size and the walk over an indirect table by its entry count;
 * more hops than that means a loop (2.7.5.2: no chain is longer than the
 * queue).
 */
static int walk_chain(const struct vhu_vq *vq, uint16_t head, struct vhu__chain *c)
{
	const struct vhu_vring_desc *table = vq->desc;
	unsigned entries = vq->size, hops = 0, i = head;
	bool indirect = false;

	for (;;) {
		if (i >= entries) {
			c->why = "descriptor index out of its table";
			return -EIO;
		}
		if (++hops > entries) {
			c->why = "descriptor chain loops";
			return -EIO;
		}
		struct vhu_vring_desc d;
		memcpy(&d, &table[i], sizeof(d));
		VHU__GUEST_COPIED();
		uint64_t addr = le64toh(d.addr);
		uint32_t len = le32toh(d.len);
		uint16_t flags = le16toh(d.flags);
		uint16_t next = le16toh(d.next);

		if (flags & VHU_VRING_DESC_F_INDIRECT) {
			/* 2.7.5.3.1: only with the feature, never inside an
			 * indirect table, never together with NEXT; the
			 * table is whole descriptors. */
			if (!vq->indirect) {
				c->why = "indirect descriptor not negotiated";
				return -EIO;
			}
			if (indirect) {
				c->why = "nested indirect table";
				return -EIO;
			}
			if (flags & VHU_VRING_DESC_F_NEXT) {
				c->why = "indirect descriptor with NEXT";
				return -EIO;
			}
			if (len == 0 || len % sizeof(struct vhu_vring_desc) ||
			    len / sizeof(struct vhu_vring_desc) >
				    VHU__INDIRECT_MAX_ENTRIES) {
				c->why = "bad indirect table length";
				return -EIO;
			}
			const void *tv;
			int r = vhu__chain_table(vq, c, addr, len, &tv);
			if (r < 0)
				return r;
			table = tv;
			indirect = true;
			entries = len / sizeof(struct vhu_vring_desc);
			hops = 0;
			i = 0;
			continue;
		}

		/* Zero-length buffers carry nothing: no iovec for them. */
		int r = vhu__chain_add(vq, c, addr, len,
				       (flags & VHU_VRING_DESC_F_WRITE) != 0);
		if (r < 0)
			return r;
		if (!(flags & VHU_VRING_DESC_F_NEXT))
			return 0;
		i = next;
	}
}

int vhu__split_pop(struct vhu_vq *vq, struct vhu_vq_elem *elem,
		   struct iovec *iov, unsigned iov_cap, unsigned flags)
{
	if (vq->broken)
		return -EIO;
	if (!vq->desc || !vq->avail || !vq->used)
		return 0;

	uint16_t head;
	bool resubmit = false;
	/* vhost-user.rst "Inflight I/O tracking": heads a previous back-end
	 * popped and never completed come first, in their original order;
	 * they are still marked, and their chains still in the table. */
	if (vq->inf_pos < vq->inf_n) {
		head = vq->inf_resubmit[vq->inf_pos];
		resubmit = true;
		goto walk;
	}

	if (vq->last_avail_idx == vq->shadow_avail_idx) {
		int r = refresh_avail(vq);
		if (r < 0)
			return r;
		if (r == 0) {
			if (!vq->event_idx || (flags & VHU_VQ_POP_NO_REARM))
				return 0;
			/*
			 * 2.7.10: ask for a kick when the next entry is
			 * added, then look again: the full barrier orders
			 * our avail_event store before the idx load, so a
			 * request the driver added without kicking (it saw
			 * the old avail_event) is found here.
			 */
			set_avail_event(vq, vq->last_avail_idx);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			r = refresh_avail(vq);
			if (r <= 0)
				return r;
		}
	}

	uint16_t slot = vq->last_avail_idx & (uint16_t)(vq->size - 1);
	head = le16toh(vq->avail[2 + slot]);
	VHU__GUEST_COPIED();
	if (head >= vq->size) {
		vhu__vq_break(vq, "head descriptor index out of range");
		return -EIO;
	}

walk:;
	/* n_out and n_in are 16-bit */
	struct vhu__chain c = {
		.iov = iov,
		.cap = iov_cap > UINT16_MAX ? UINT16_MAX : iov_cap,
		.walk_on = true,
	};
	int r = walk_chain(vq, head, &c);
	if (r == -EAGAIN) {
		/* A translation is missing: nothing is taken, the same head
		 * is walked again once the front-end answers. */
		vhu__vq_iotlb_wait(vq, c.miss_iova, c.miss_perm);
		return 0;
	}
	/* The walk read only guest memory: the request is taken now. */
	if (resubmit) {
		vq->inf_pos++;
	} else {
		vq->last_avail_idx++;
		if (vq->inf) {
			/* Counter first, then the flag that makes it count. */
			vq->inf->desc[head].counter = vq->inf_counter++;
			__asm__ volatile("" ::: "memory");
			vq->inf->desc[head].inflight = 1;
		}
	}
	if (r < 0) {
		vhu__vq_break(vq, c.why ? c.why : "bad descriptor chain");
		return -EIO;
	}
	if (c.overflow && (flags & VHU_VQ_POP_PARTIAL)) {
		vhu__vq_partial(vq, elem, head, &c);
		vq->inflight++;
		return 1;
	}
	if (c.overflow && (flags & VHU_VQ_POP_TRUNCATED)) {
		vhu__vq_truncated(vq, elem, head, iov, iov_cap, c.wr_addr,
				  c.wr_len);
		vq->inflight++;
		return 1;
	}
	if (c.overflow) {
		/* The request is valid but too big for the caller: complete
		 * it empty so the driver gets its descriptors back. */
		vhu__log_rl(VHU_LOG_WARN, "queue %u: request %u needs more "
			    "than %u buffers; completed empty", vq->index,
			    head, iov_cap);
		struct vhu_vq_elem e = { .id = head };
		vq->inflight++;
		vhu__split_push(vq, &e, 0);
		return -E2BIG;
	}

	elem->id = head;
	elem->n_out = (uint16_t)c.n_out;
	elem->n_in = (uint16_t)(c.n - c.n_out);
	elem->flags = 0;
	elem->iov = iov;
	vq->inflight++;
	return 1;
}

/* ----------------------------------------------------------- pushing */

void vhu__split_push(struct vhu_vq *vq, const struct vhu_vq_elem *elem,
		     uint32_t written)
{
	if (vq->broken || !vq->used)
		return;
	if (elem->id >= vq->size) {
		vhu__log_rl(VHU_LOG_ERROR, "queue %u: push of unknown "
			    "request %u", vq->index, elem->id);
		return;
	}
	/* First push since a reset: what was signalled so far is "all". */
	if (!vq->signalled_used_valid) {
		vq->signalled_used = vq->used_idx;
		vq->signalled_used_valid = true;
	}

	struct vhu__inflight_split *inf = vq->inf;
	if (inf) {
		/* A batch of one: recorded before the used entry appears, so
		 * a restart in between finds and clears it. */
		inf->desc[elem->id].next = inf->last_batch_head;
		inf->last_batch_head = (uint16_t)elem->id;
		__asm__ volatile("" ::: "memory");
	}

	/* vhost-user.rst "Migration": what the device wrote is marked
	 * before the used element that hands it back. */
	if (LOGGING(vq)) {
		if (vhu__log_writable(vq, elem) < 0) {
			vhu__vq_break(vq, "written buffer outside the dirty log");
			return;
		}
		vhu__log_flush(vq);
	}

	uint16_t slot = vq->used_idx & (uint16_t)(vq->size - 1);
	volatile uint32_t *ue = (volatile uint32_t *)(vq->used + 2) + 2 * slot;
	ue[0] = htole32(elem->id);
	ue[1] = htole32(written);
	vq->used_idx++;
	/* 2.7.8.2: the element is visible before the index that covers it. */
	__atomic_store_n(&vq->used[1], htole16(vq->used_idx), __ATOMIC_RELEASE);
	/* Used element and index: marked after they are written. */
	if (LOGGING(vq) && vq->log_used) {
		if (vhu__log_used(vq, 4 + 8 * (uint64_t)slot, 8) < 0 ||
		    vhu__log_used(vq, 2, 2) < 0)
			vhu__vq_break(vq, "used ring outside the dirty log");
		vhu__log_flush(vq);
	}
	if (inf) {
		inf->desc[elem->id].inflight = 0;
		__asm__ volatile("" ::: "memory");
		inf->used_idx = vq->used_idx;
	}

	/* 65536 pushes without a notification bring used_idx back to the
	 * last signalled value; keep "something pushed" true and make the
	 * event check pass for (almost) any used_event. */
	if (vq->used_idx == vq->signalled_used)
		vq->signalled_used = (uint16_t)(vq->used_idx + 1);
	if (vq->inflight)
		vq->inflight--;
}

/* virtio 1.2, 2.7.10: notify when used_event lies in [old, new). */
static inline bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool vhu__split_should_notify(struct vhu_vq *vq)
{
	if (!vq->signalled_used_valid || vq->signalled_used == vq->used_idx)
		return false; /* nothing pushed since the last notification */

	/* 2.7.8.2 / 2.7.10: the used idx store must be visible before we
	 * read the driver's suppression fields. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t old = vq->signalled_used;
	vq->signalled_used = vq->used_idx;
	if (vq->event_idx)
		return need_event(used_event(vq), vq->used_idx, old);
	return !(avail_flags(vq) & VHU_VRING_AVAIL_F_NO_INTERRUPT);
}

/* ------------------------------------------------ kick suppression */

void vhu__split_disable_notify(struct vhu_vq *vq)
{
	if (!vq->used)
		return;
	/*
	 * 2.7.10: with EVENT_IDX the driver ignores used->flags (which
	 * must stay 0) and only avail_event matters; it is left where it
	 * is, so kicks stop once the driver runs past it.  An empty pop
	 * re-arms it.
	 */
	if (!vq->event_idx)
		set_used_flags(vq, VHU_VRING_USED_F_NO_NOTIFY);
}

bool vhu__split_enable_notify(struct vhu_vq *vq)
{
	if (vq->broken || !vq->used || !vq->avail)
		return false;
	if (vq->event_idx) {
		set_avail_event(vq, vq->shadow_avail_idx);
	} else {
		set_used_flags(vq, 0);
	}
	/* Order the store above before the re-read of avail->idx, or a
	 * request added meanwhile could go unnoticed and unkicked. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx_acquire(vq) != vq->last_avail_idx;
}

bool vhu__split_has_work(struct vhu_vq *vq)
{
	if (vq->broken || !vq->avail)
		return false;
	if (vq->shadow_avail_idx != vq->last_avail_idx)
		return true;
	return avail_idx_acquire(vq) != vq->last_avail_idx;
}

/* ------------------------------------------------------- accessors */

unsigned vhu_vq_index(const struct vhu_vq *vq)
{
	return vq->index;
}

unsigned vhu_vq_size(const struct vhu_vq *vq)
{
	return vq->size;
}

int vhu_vq_kick_fd(const struct vhu_vq *vq)
{
	return vq->kick_fd;
}

int vhu_vq_drain_kick(struct vhu_vq *vq)
{
	if (vq->kick_fd < 0)
		return 0;
	/* The fd's blocking mode is the front-end's choice: poll first so
	 * the read never blocks (this thread is the only reader). */
	struct pollfd p = { .fd = vq->kick_fd, .events = POLLIN };
	int pr = poll(&p, 1, 0);
	if (pr < 0)
		return errno == EINTR ? 0 : -errno;
	if (pr == 0 || !(p.revents & POLLIN))
		return 0;
	uint64_t v;
	ssize_t n = read(vq->kick_fd, &v, sizeof(v));
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
	if (n != (ssize_t)sizeof(v))
		return -EIO;
	return v > INT32_MAX ? INT32_MAX : (int)v;
}

bool vhu_vq_is_broken(const struct vhu_vq *vq)
{
	return vq->broken;
}

void vhu_vq_set_priv(struct vhu_vq *vq, void *priv)
{
	vq->priv = priv;
}

void *vhu_vq_get_priv(const struct vhu_vq *vq)
{
	return vq->priv;
}
