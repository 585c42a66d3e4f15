/* SPDX-License-Identifier: MIT */
/* Fake guest memory: see guest-mem.h. */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest-mem.h"

/* Hand the device one region [off, off + len) of the memfd, through its
 * own fd and mapping. */
static int give_region(struct gmem *g, uint64_t off, uint64_t len)
{
	int fd = dup(g->fd);
	if (fd < 0)
		return -errno;
	struct vhu_mem_region r = {
		.guest_phys_addr = GMEM_GPA_BASE + off,
		.memory_size = len,
		.userspace_addr = GMEM_UVA_BASE + off,
		.mmap_offset = off,
	};
	int e = vhu__mem_add(&g->mem, &r, fd);
	if (e < 0)
		close(fd);
	return e;
}

int gmem_init(struct gmem *g, uint64_t size, uint64_t split_at,
	      const char *name)
{
	memset(g, 0, sizeof(*g));
	vhu__mem_init(&g->mem);
	g->size = size ? size : (4u << 20);
	g->next = GMEM_GPA_BASE;
	g->fd = memfd_create(name, MFD_CLOEXEC);
	if (g->fd < 0)
		return -errno;
	if (ftruncate(g->fd, (off_t)g->size) < 0)
		return -errno;
	void *p = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_SHARED,
		       g->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	g->host = p;
	if (!split_at)
		return give_region(g, 0, g->size);
	int e = give_region(g, 0, split_at);
	return e < 0 ? e : give_region(g, split_at, g->size - split_at);
}

void gmem_fini(struct gmem *g)
{
	vhu__mem_clear(&g->mem);
	if (g->host)
		munmap(g->host, g->size);
	vhu__close_fds(&g->fd, 1);
	g->host = NULL;
	g->fd = -1;
}

uint64_t gmem_alloc(struct gmem *g, uint64_t len, uint64_t align)
{
	uint64_t gpa = (g->next + align - 1) & ~(align - 1);
	g->next = gpa + len;
	return gpa;
}

uint64_t gmem_buf(struct gmem *g, uint64_t len)
{
	return gmem_alloc(g, len, 16);
}

void *gmem_ptr(struct gmem *g, uint64_t gpa)
{
	return g->host + (gpa - GMEM_GPA_BASE);
}

uint64_t gmem_uva(uint64_t gpa)
{
	return gpa - GMEM_GPA_BASE + GMEM_UVA_BASE;
}

void gmem_vq_rings(struct vhu_vq *vq, uint16_t size, uint64_t desc_gpa,
		   uint64_t avail_gpa, uint64_t used_gpa, bool event_idx,
		   bool indirect)
{
	vq->size = size;
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	vq->desc_uva = gmem_uva(desc_gpa);
	vq->avail_uva = gmem_uva(avail_gpa);
	vq->used_uva = gmem_uva(used_gpa);
	vq->addr_set = true;
}

int gmem_vq_map(struct vhu_vq *vq, bool with_call_fd)
{
	if (with_call_fd) {
		vq->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (vq->call_fd < 0)
			return -errno;
	}
	return vhu__vq_map(vq);
}

uint64_t gmem_vq_calls(struct vhu_vq *vq)
{
	uint64_t v = 0;
	if (vq->call_fd < 0)
		return 0;
	if (read(vq->call_fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return 0;
	return v;
}

uint64_t gmem_buf_with(struct gmem *g, const char *s, uint32_t len)
{
	uint64_t gpa = gmem_buf(g, len);
	memset(gmem_ptr(g, gpa), 0, len);
	memcpy(gmem_ptr(g, gpa), s, strlen(s) < len ? strlen(s) : len);
	return gpa;
}
