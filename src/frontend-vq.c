/* SPDX-License-Identifier: MIT */
/*
 * Front-end guest memory (memfd regions, a bump allocator) and virtqueue
 * setup (vhost-user.rst "Starting and stopping rings").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "frontend-priv.h"

/* Regions sit in guest-physical space at 1 GiB boundaries, leaving gaps
 * so that a device walking past a region's end faults. */
#define GPA_STEP (1ull << 30)

void vhu__fe_mem_free(struct vhu_fe *fe)
{
	for (unsigned i = 0; i < fe->nregions; i++) {
		struct vhu__fe_region *g = &fe->regions[i];
		vhu__shm_release(g->host, g->size, g->fd);
	}
	fe->nregions = 0;
	free(fe->holes);
	fe->holes = NULL;
	fe->nholes = fe->holes_cap = 0;
}

static void fill_region(const struct vhu__fe_region *g, struct vhu_mem_region *w)
{
	w->guest_phys_addr = g->gpa;
	w->memory_size = g->size;
	w->userspace_addr = (uint64_t)(uintptr_t)g->host;
	w->mmap_offset = 0;
}

static int register_region(struct vhu_fe *fe, unsigned idx)
{
	bool add = (fe->protocol & VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS)) &&
		   !fe->opts.no_add_mem_reg;
	if (add) {
		struct vhu_mem_single s;
		memset(&s, 0, sizeof(s));
		fill_region(&fe->regions[idx], &s.region);
		return vhu__fe_cmd(fe, VHU_REQ_ADD_MEM_REG, &s, sizeof(s),
				   &fe->regions[idx].fd, 1);
	}
	/* SET_MEM_TABLE replaces the whole table: send every region. */
	struct vhu_mem_table t;
	int fds[VHU_MAX_REGIONS];
	memset(&t, 0, sizeof(t));
	t.nregions = idx + 1;
	for (unsigned i = 0; i <= idx; i++) {
		fill_region(&fe->regions[i], &t.regions[i]);
		fds[i] = fe->regions[i].fd;
	}
	return vhu__fe_cmd(fe, VHU_REQ_SET_MEM_TABLE, &t,
			   8 + 32 * (idx + 1), fds, idx + 1);
}

int vhu_fe_add_memory(struct vhu_fe *fe, size_t size)
{
	long pg = sysconf(_SC_PAGESIZE);
	if (size == 0 || pg <= 0 || size > GPA_STEP * 64)
		return -EINVAL;
	size = (size + (size_t)pg - 1) & ~((size_t)pg - 1);
	unsigned limit = fe->max_mem_slots ? fe->max_mem_slots : VHU_MAX_REGIONS;
	if (limit > VHU__FE_MAX_REGIONS)
		limit = VHU__FE_MAX_REGIONS;
	if (fe->nregions >= limit)
		return -ENOSPC;

	/* Sealed: the back-end cannot shrink it under our mapping. */
	void *p;
	int fd = vhu__memfd_mapped("vhu-guest", size, &p);
	if (fd < 0)
		return fd;
	uint64_t gpa = 0;
	if (fe->nregions) {
		const struct vhu__fe_region *last = &fe->regions[fe->nregions - 1];
		gpa = (last->gpa + last->size + GPA_STEP) & ~(GPA_STEP - 1);
	}
	unsigned idx = fe->nregions;
	fe->regions[idx] = (struct vhu__fe_region){
		.host = p, .size = size, .used = 0, .gpa = gpa, .fd = fd,
	};
	fe->nregions++;
	int r = register_region(fe, idx);
	if (r < 0) {
		fe->nregions--;
		vhu__shm_release(p, size, fd);
		return r;
	}
	return 0;
}

void *vhu_fe_alloc(struct vhu_fe *fe, size_t len, size_t align, uint64_t *gpa)
{
	if (align == 0)
		align = 1;
	if (len == 0 || (align & (align - 1)))
		return NULL;
	/* A freed block first (first fit); what is left of it around the
	 * allocation stays free. */
	for (unsigned i = 0; i < fe->nholes; i++) {
		struct vhu__fe_hole h = fe->holes[i];
		uintptr_t a = ((uintptr_t)h.p + align - 1) & ~(uintptr_t)(align - 1);
		size_t pre = a - (uintptr_t)h.p;
		if (a < (uintptr_t)h.p || pre > h.len || h.len - pre < len)
			continue;
		uint8_t *p = (uint8_t *)a;
		fe->holes[i] = fe->holes[--fe->nholes];
		/* The pieces left around it stay free while there are slots
		 * (a piece without one is only lost until vhu_fe_close()). */
		if (pre && fe->nholes < fe->holes_cap)
			fe->holes[fe->nholes++] = (struct vhu__fe_hole){ h.p, pre };
		if (h.len - pre > len && fe->nholes < fe->holes_cap)
			fe->holes[fe->nholes++] =
				(struct vhu__fe_hole){ p + len, h.len - pre - len };
		if (gpa)
			*gpa = vhu_fe_gpa(fe, p);
		memset(p, 0, len);
		return p;
	}
	for (unsigned i = 0; i < fe->nregions; i++) {
		struct vhu__fe_region *g = &fe->regions[i];
		size_t start = (g->used + align - 1) & ~(align - 1);
		if (start < g->used || start > g->size || g->size - start < len)
			continue;
		g->used = start + len;
		if (gpa)
			*gpa = g->gpa + start;
		memset(g->host + start, 0, len);
		return g->host + start;
	}
	return NULL;
}

/* Which region holds [p, p + len), or NULL. */
static struct vhu__fe_region *region_of(struct vhu_fe *fe, const uint8_t *p,
					size_t len)
{
	for (unsigned i = 0; i < fe->nregions; i++) {
		struct vhu__fe_region *g = &fe->regions[i];
		if (p >= g->host && p < g->host + g->used &&
		    len <= (size_t)(g->host + g->used - p))
			return g;
	}
	return NULL;
}

void vhu_fe_free(struct vhu_fe *fe, void *ptr, size_t len)
{
	uint8_t *p = ptr;
	if (!fe || !p || len == 0)
		return;
	struct vhu__fe_region *g = region_of(fe, p, len);
	if (!g)
		return;
	if (p + len == g->host + g->used) {
		/* The top of the region: lower the bump pointer, and again
		 * over free blocks that now end there. */
		g->used = (size_t)(p - g->host);
		for (unsigned i = 0; i < fe->nholes;) {
			struct vhu__fe_hole *h = &fe->holes[i];
			if (h->p + h->len == g->host + g->used) {
				g->used = (size_t)(h->p - g->host);
				fe->holes[i] = fe->holes[--fe->nholes];
				i = 0;
			} else {
				i++;
			}
		}
		return;
	}
	if (fe->nholes == fe->holes_cap) {
		unsigned cap = fe->holes_cap ? 2 * fe->holes_cap : 16;
		struct vhu__fe_hole *n = realloc(fe->holes, cap * sizeof(*n));
		if (!n)
			return; /* the block stays taken: memory, not correctness */
		fe->holes = n;
		fe->holes_cap = cap;
	}
	fe->holes[fe->nholes++] = (struct vhu__fe_hole){ p, len };
}

uint64_t vhu_fe_gpa(const struct vhu_fe *fe, const void *p)
{
	const uint8_t *b = p;
	for (unsigned i = 0; i < fe->nregions; i++) {
		const struct vhu__fe_region *g = &fe->regions[i];
		if (b >= g->host && b < g->host + g->size)
			return g->gpa + (uint64_t)(b - g->host);
	}
	return UINT64_MAX;
}

/* ---------------------------------------------------------- queues */

/* Split ring areas (virtio 1.2, 2.7): descriptor table, available ring
 * (flags, idx, ring[size], used_event), used ring (flags, idx,
 * elem[size], avail_event). */
static size_t desc_bytes(unsigned size) { return 16u * size; }
static size_t avail_bytes(unsigned size) { return 6u + 2u * size; }
static size_t used_bytes(unsigned size) { return 6u + 8u * size; }

static void vq_free(struct vhu_fe_vq *vq)
{
	if (vq->kick_fd >= 0)
		close(vq->kick_fd);
	if (vq->call_fd >= 0)
		close(vq->call_fd);
	vhu__drv_free(vq);
	free(vq);
}

void vhu__fe_vqs_free(struct vhu_fe *fe)
{
	for (unsigned i = 0; i < VHU_MAX_QUEUES; i++) {
		if (fe->vqs[i]) {
			vq_free(fe->vqs[i]);
			fe->vqs[i] = NULL;
		}
	}
}

static int send_ring(struct vhu_fe *fe, struct vhu_fe_vq *vq)
{
	struct vhu_vring_state st = { .index = vq->index, .num = vq->size };
	int r = vhu__fe_cmd(fe, VHU_REQ_SET_VRING_NUM, &st, sizeof(st), NULL, 0);
	if (r < 0)
		return r;
	/* vhost-user.rst: a packed ring's base carries both positions and
	 * wrap counters (bits 15 and 31), which start at 1 (virtio 2.8.1). */
	st.num = vq->packed ? (1u << 15 | 1u << 31) : 0;
	r = vhu__fe_cmd(fe, VHU_REQ_SET_VRING_BASE, &st, sizeof(st), NULL, 0);
	if (r < 0)
		return r;
	struct vhu_vring_addr a;
	vhu__fe_vring_addr(fe, vq, fe->logging, &a);
	r = vhu__fe_cmd(fe, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
	if (r < 0)
		return r;
	uint64_t u = vq->index;
	r = vhu__fe_cmd(fe, VHU_REQ_SET_VRING_CALL, &u, sizeof(u), &vq->call_fd, 1);
	if (r < 0)
		return r;
	r = vhu__fe_cmd(fe, VHU_REQ_SET_VRING_KICK, &u, sizeof(u), &vq->kick_fd, 1);
	if (r < 0)
		return r;
	/* Without protocol features rings start enabled; with them they wait
	 * for SET_VRING_ENABLE (vhost-user.rst "Ring states"). */
	if (fe->features & VHU_BIT(VHU_F_PROTOCOL_FEATURES)) {
		st.num = 1;
		r = vhu__fe_cmd(fe, VHU_REQ_SET_VRING_ENABLE, &st, sizeof(st),
				NULL, 0);
	}
	return r;
}

void vhu__fe_vring_addr(struct vhu_fe *fe, const struct vhu_fe_vq *vq,
			bool log, struct vhu_vring_addr *a)
{
	/* Addresses are in the front-end's virtual space (userspace_addr of
	 * the memory table), as vhost-user.rst SET_VRING_ADDR specifies. */
	memset(a, 0, sizeof(*a));
	a->index = vq->index;
	a->desc_user_addr = (uint64_t)(uintptr_t)vq->desc;
	a->used_user_addr = (uint64_t)(uintptr_t)vq->used;
	a->avail_user_addr = (uint64_t)(uintptr_t)vq->avail;
	/* Packed: descriptor ring, driver area, device area. */
	if (vq->packed) {
		a->desc_user_addr = (uint64_t)(uintptr_t)vq->pring;
		a->avail_user_addr = (uint64_t)(uintptr_t)vq->drv_area;
		a->used_user_addr = (uint64_t)(uintptr_t)vq->dev_area;
	}
	/* vhost-user.rst "Migration": used-ring writes are logged at
	 * log_guest_addr, the guest-physical address of the used ring (as
	 * QEMU does: the device area for a packed ring). */
	if (log) {
		a->flags = VHU_VRING_F_LOG;
		a->log_guest_addr = vq->packed ? vq->dev_area_gpa : vq->used_gpa;
	}
}

int vhu_fe_vq_setup(struct vhu_fe *fe, unsigned index, unsigned size,
		    struct vhu_fe_vq **out)
{
	*out = NULL;
	/* A packed ring may have any size (virtio 1.2, 2.8). */
	bool packed = fe->features & VHU_BIT(VHU_F_RING_PACKED);
	if (index >= VHU_MAX_QUEUES || size == 0 || size > VHU_MAX_QUEUE_SIZE ||
	    (!packed && (size & (size - 1))))
		return -EINVAL;
	if (fe->vqs[index])
		return -EBUSY;
	/* Ring behaviour (EVENT_IDX, enable state) follows SET_FEATURES. */
	if (!fe->features_set)
		return -EINVAL;
	struct vhu_fe_vq *vq = calloc(1, sizeof(*vq));
	if (!vq)
		return -ENOMEM;
	vq->fe = fe;
	vq->index = index;
	vq->size = (uint16_t)size;
	vq->kick_fd = vq->call_fd = -1;
	vq->event_idx = fe->features & VHU_BIT(VHU_F_EVENT_IDX);

	int r = -ENOMEM;
	if (packed) {
		vq->packed = true;
		vq->pring = vhu_fe_alloc(fe, vhu__packed_ring_bytes(size), 16,
					 &vq->pring_gpa);
		vq->drv_area = vhu_fe_alloc(fe, VHU__PEVENT_BYTES, 4,
					    &vq->drv_area_gpa);
		vq->dev_area = vhu_fe_alloc(fe, VHU__PEVENT_BYTES, 4,
					    &vq->dev_area_gpa);
		if (!vq->pring || !vq->drv_area || !vq->dev_area)
			goto err;
		r = vhu__drv_init(vq, size);
		if (r < 0)
			goto err;
	} else {
		vq->desc = vhu_fe_alloc(fe, desc_bytes(size), 16, &vq->desc_gpa);
		vq->avail = vhu_fe_alloc(fe, avail_bytes(size), 2, &vq->avail_gpa);
		vq->used = vhu_fe_alloc(fe, used_bytes(size), 4096, &vq->used_gpa);
		if (!vq->desc || !vq->avail || !vq->used)
			goto err;
		r = vhu__drv_init(vq, size);
		if (r < 0)
			goto err;
	}
	vq->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vq->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vq->kick_fd < 0 || vq->call_fd < 0) {
		r = -errno;
		goto err;
	}
	r = send_ring(fe, vq);
	if (r < 0)
		goto err;
	fe->vqs[index] = vq;
	*out = vq;
	return 0;
err:
	vq_free(vq);
	return r;
}

int vhu_fe_vq_stop(struct vhu_fe *fe, unsigned index, uint32_t *base)
{
	if (index >= VHU_MAX_QUEUES || !fe->vqs[index])
		return -EINVAL;
	struct vhu_vring_state st = { .index = index, .num = 0 }, rep;
	int r = vhu__fe_call(fe, VHU_REQ_GET_VRING_BASE, &st, sizeof(st), &rep,
			     sizeof(rep));
	if (r < 0)
		return r;
	if (rep.index != index)
		return -EPROTO;
	if (base)
		*base = rep.num;
	return 0;
}
