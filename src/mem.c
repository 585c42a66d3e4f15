/* SPDX-License-Identifier: MIT */
/*
 * Guest memory: the regions the front-end shared (SET_MEM_TABLE,
 * ADD_MEM_REG), kept sorted by guest-physical address, and translation of
 * guest-physical and front-end virtual addresses into our own pointers.
 *
 * Every region is validated before it is inserted (vhost-user.rst "Memory
 * region description"): non-empty, no wrap-around of gpa/uva/offset ends,
 * and no overlap with a region already present, in either address space,
 * so that any address resolves to at most one region.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

void vhu__mem_init(struct vhu__mem *m)
{
	m->n = 0;
	m->max = VHU_MAX_MEM_SLOTS;
}

static void region_release(struct vhu__mem_region *r)
{
	vhu__guard_del(r->guard);
	r->guard = -1;
	vhu__shm_release(r->mmap_addr, r->mmap_size, r->fd);
	r->mmap_addr = NULL;
	r->fd = -1;
}

void vhu__mem_clear(struct vhu__mem *m)
{
	for (unsigned i = 0; i < m->n; i++)
		region_release(&m->r[i]);
	m->n = 0;
}

/* True when [a, a + alen) and [b, b + blen) intersect (ends checked not to
 * wrap by the caller). */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b,
			   uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Index of the first region whose gpa is greater than gpa (0..n). */
static unsigned upper_bound(const struct vhu__mem *m, uint64_t gpa)
{
	unsigned lo = 0, hi = m->n;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (m->r[mid].gpa <= gpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The region containing gpa, or NULL. */
static const struct vhu__mem_region *find_gpa(const struct vhu__mem *m,
					      uint64_t gpa)
{
	unsigned i = upper_bound(m, gpa);
	if (i == 0)
		return NULL;
	const struct vhu__mem_region *r = &m->r[i - 1];
	return gpa - r->gpa < r->size ? r : NULL;
}

/* Shape checks shared by both ways of adding a region. */
static int check_new(const struct vhu__mem *m, uint64_t gpa, uint64_t size,
		     uint64_t uva, uint64_t mmap_offset)
{
	if (size == 0 || size > SIZE_MAX)
		return -EINVAL;
	if (gpa > UINT64_MAX - size || uva > UINT64_MAX - size ||
	    mmap_offset > UINT64_MAX - size || mmap_offset + size > SIZE_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < m->n; i++) {
		const struct vhu__mem_region *r = &m->r[i];
		if (ranges_overlap(gpa, size, r->gpa, r->size) ||
		    ranges_overlap(uva, size, r->uva, r->size))
			return -EEXIST;
	}
	if (m->n >= m->max || m->n >= VHU_MAX_MEM_SLOTS)
		return -ENOSPC;
	return 0;
}

static void insert(struct vhu__mem *m, const struct vhu__mem_region *nr)
{
	unsigned i = upper_bound(m, nr->gpa);
	memmove(&m->r[i + 1], &m->r[i], (m->n - i) * sizeof(m->r[0]));
	m->r[i] = *nr;
	m->n++;
}

/*
 * Mapping granule for fd: hugetlbfs reports its huge page size as the
 * block size, and munmap() of a huge-page mapping needs a length that is
 * a multiple of it; everything else uses the base page size.
 */
static size_t map_granule(const struct stat *st)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t g = page > 0 ? (size_t)page : 4096;
	size_t bs = st->st_blksize > 0 ? (size_t)st->st_blksize : 0;
	if (bs > g && (bs & (bs - 1)) == 0)
		g = bs;
	return g;
}

int vhu__mem_add(struct vhu__mem *m, const struct vhu_mem_region *wr, int fd)
{
	struct vhu_mem_region w;
	memcpy(&w, wr, sizeof(w)); /* one read of the peer's fields */

	if (fd < 0)
		return -EBADF;
	int rc = check_new(m, w.guest_phys_addr, w.memory_size,
			   w.userspace_addr, w.mmap_offset);
	if (rc < 0)
		return rc;

	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	uint64_t need = w.mmap_offset + w.memory_size;
	/* Touching a page past the end of a file raises SIGBUS: refuse a
	 * region that claims more than the file holds. */
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < need)
		return -EINVAL;

	/* Map from file offset 0: mmap_offset need not be page aligned
	 * (vhost-user.rst leaves it free), so the offset is applied to the
	 * returned base instead of being passed to mmap(). */
	size_t g = map_granule(&st);
	if (need > SIZE_MAX - (g - 1))
		return -EINVAL;
	size_t len = ((size_t)need + g - 1) & ~(g - 1);
	void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	/* The front-end keeps the file and may shrink it later: a mapping
	 * the SIGBUS guard does not cover is not kept. */
	int guard = vhu__guard_add(base, len, g);
	if (guard < 0) {
		munmap(base, len);
		return guard;
	}

	struct vhu__mem_region nr = {
		.gpa = w.guest_phys_addr,
		.size = w.memory_size,
		.uva = w.userspace_addr,
		.mmap_offset = w.mmap_offset,
		.host = (uint8_t *)base + w.mmap_offset,
		.mmap_addr = base,
		.mmap_size = len,
		.fd = fd,
		.guard = guard,
	};
	insert(m, &nr);
	return 0;
}

int vhu__mem_add_host(struct vhu__mem *m, uint64_t gpa, uint64_t size,
		      uint64_t uva, void *host)
{
	if (!host)
		return -EINVAL;
	int rc = check_new(m, gpa, size, uva, 0);
	if (rc < 0)
		return rc;
	struct vhu__mem_region nr = {
		.gpa = gpa,
		.size = size,
		.uva = uva,
		.mmap_offset = 0,
		.host = host,
		.mmap_addr = NULL,
		.mmap_size = 0,
		.fd = -1,
		.guard = -1,
	};
	insert(m, &nr);
	return 0;
}

int vhu__mem_remove(struct vhu__mem *m, const struct vhu_mem_region *wr)
{
	struct vhu_mem_region w;
	memcpy(&w, wr, sizeof(w));
	for (unsigned i = 0; i < m->n; i++) {
		struct vhu__mem_region *r = &m->r[i];
		if (r->gpa != w.guest_phys_addr || r->size != w.memory_size ||
		    r->uva != w.userspace_addr)
			continue;
		region_release(r);
		memmove(&m->r[i], &m->r[i + 1],
			(m->n - i - 1) * sizeof(m->r[0]));
		m->n--;
		return 0;
	}
	return -ENOENT;
}

int vhu__mem_gpa_to_iov(const struct vhu__mem *m, uint64_t gpa, uint64_t len,
			struct iovec *iov, unsigned cap)
{
	if (len == 0)
		return 0;
	if (gpa > UINT64_MAX - len)
		return -EFAULT;

	unsigned i = upper_bound(m, gpa);
	if (i == 0)
		return -EFAULT;
	i--; /* candidate region: the last one starting at or below gpa */

	unsigned n = 0;
	while (len > 0) {
		/* Regions are sorted and disjoint, so the continuation of a
		 * range can only be the next region, starting exactly here. */
		if (i >= m->n)
			return -EFAULT;
		const struct vhu__mem_region *r = &m->r[i];
		uint64_t off = gpa - r->gpa;
		if (gpa < r->gpa || off >= r->size)
			return -EFAULT;
		uint64_t chunk = r->size - off;
		if (chunk > len)
			chunk = len;
		if (n >= cap)
			return -E2BIG;
		iov[n].iov_base = r->host + off;
		iov[n].iov_len = (size_t)chunk;
		n++;
		gpa += chunk;
		len -= chunk;
		i++;
	}
	return (int)n;
}

void *vhu__mem_gpa_to_va(const struct vhu__mem *m, uint64_t gpa, uint64_t len)
{
	const struct vhu__mem_region *r = find_gpa(m, gpa);
	if (!r)
		return NULL;
	uint64_t off = gpa - r->gpa;
	if (len > r->size - off)
		return NULL;
	return r->host + off;
}

void *vhu__mem_uva_to_va(const struct vhu__mem *m, uint64_t uva, uint64_t len)
{
	/* Control-path lookups (ring and log addresses): the whole range in
	 * one region, or nothing. */
	uint8_t *host;
	uint64_t got;
	if (vhu__mem_uva_span(m, uva, len, &host, &got) < 0 || got < len)
		return NULL;
	return host;
}

int vhu__mem_va_to_gpa(const struct vhu__mem *m, const void *p, uint64_t len,
		       uint64_t *gpa)
{
	/* Dirty logging only (the data path with logging on): a linear scan
	 * over the few regions a guest has. */
	uintptr_t a = (uintptr_t)p;
	for (unsigned i = 0; i < m->n; i++) {
		const struct vhu__mem_region *r = &m->r[i];
		uintptr_t h = (uintptr_t)r->host;
		if (a < h || a - h >= r->size)
			continue;
		uint64_t off = a - h;
		if (len > r->size - off)
			return -EFAULT;
		*gpa = r->gpa + off;
		return 0;
	}
	return -EFAULT;
}

int vhu__mem_uva_span(const struct vhu__mem *m, uint64_t uva, uint64_t len,
		      uint8_t **host, uint64_t *got)
{
	/* Not sorted by uva: a linear scan over the few regions a guest has
	 * (ring and log addresses, IOTLB translations in iotlb.c). */
	for (unsigned i = 0; i < m->n; i++) {
		const struct vhu__mem_region *r = &m->r[i];
		if (uva < r->uva || uva - r->uva >= r->size)
			continue;
		uint64_t off = uva - r->uva;
		*host = r->host + off;
		*got = len < r->size - off ? len : r->size - off;
		return 0;
	}
	return -EFAULT;
}
