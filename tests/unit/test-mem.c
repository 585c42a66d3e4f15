/* SPDX-License-Identifier: MIT */
/* Guest memory table: insertion checks, removal and translation. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "tap.h"

static struct vhu__mem mem;

static int make_memfd(size_t size)
{
	int fd = memfd_create("vhu-test-mem", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static struct vhu_mem_region reg(uint64_t gpa, uint64_t size, uint64_t uva,
				 uint64_t off)
{
	struct vhu_mem_region r = {
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = uva,
		.mmap_offset = off,
	};
	return r;
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

TEST(add_remove_fd_region)
{
	vhu__mem_init(&mem);
	int fd = make_memfd(0x3000);
	CHECK(fd >= 0);
	struct vhu_mem_region r = reg(0x100000, 0x2000, 0x7f0000000000, 0x1000);
	CHECK_EQ(vhu__mem_add(&mem, &r, fd), 0);
	CHECK_EQ(mem.n, 1);

	/* Write through our mapping, read it back through the fd at
	 * mmap_offset: the mapping starts at the right file offset. */
	uint8_t *p = vhu__mem_gpa_to_va(&mem, 0x100010, 4);
	CHECK(p != NULL);
	memcpy(p, "abcd", 4);
	char buf[4];
	CHECK_EQ(pread(fd, buf, 4, 0x1010), 4);
	CHECK_MEM(buf, "abcd", 4);
	CHECK(vhu__mem_uva_to_va(&mem, 0x7f0000000010, 4) == p);

	CHECK_EQ(vhu__mem_remove(&mem, &r), 0);
	CHECK_EQ(mem.n, 0);
	CHECK(!fd_is_open(fd));
	CHECK_EQ(vhu__mem_remove(&mem, &r), -ENOENT);
}

TEST(unaligned_mmap_offset)
{
	vhu__mem_init(&mem);
	int fd = make_memfd(0x2000);
	CHECK(fd >= 0);
	CHECK_EQ(pwrite(fd, "xyz", 3, 0x123), 3);
	struct vhu_mem_region r = reg(0, 0x1000, 0x1000, 0x123);
	CHECK_EQ(vhu__mem_add(&mem, &r, fd), 0);
	uint8_t *p = vhu__mem_gpa_to_va(&mem, 0, 3);
	CHECK(p != NULL);
	CHECK_MEM(p, "xyz", 3);
	vhu__mem_clear(&mem);
	CHECK(!fd_is_open(fd));
}

TEST(file_too_small_rejected)
{
	vhu__mem_init(&mem);
	int fd = make_memfd(0x1000);
	CHECK(fd >= 0);
	struct vhu_mem_region r = reg(0, 0x1000, 0, 0x10);
	CHECK_EQ(vhu__mem_add(&mem, &r, fd), -EINVAL);
	CHECK(fd_is_open(fd)); /* the caller keeps it on failure */
	CHECK_EQ(mem.n, 0);
	close(fd);
}

TEST(unmappable_fd_rejected)
{
	vhu__mem_init(&mem);
	struct vhu_mem_region r = reg(0, 0x1000, 0, 0);
	CHECK_EQ(vhu__mem_add(&mem, &r, -1), -EBADF);
	int p[2];
	CHECK_EQ(pipe(p), 0);
	int e = vhu__mem_add(&mem, &r, p[0]);
	CHECK(e < 0);
	CHECK(fd_is_open(p[0])); /* still the caller's */
	CHECK_EQ(mem.n, 0);
	close(p[0]);
	close(p[1]);
}

TEST(bad_regions_rejected)
{
	vhu__mem_init(&mem);
	static uint8_t buf[64];
	CHECK_EQ(vhu__mem_add_host(&mem, 0, 0, 0, buf), -EINVAL);
	CHECK_EQ(vhu__mem_add_host(&mem, UINT64_MAX - 10, 64, 0, buf), -EINVAL);
	CHECK_EQ(vhu__mem_add_host(&mem, 0, 64, UINT64_MAX - 10, buf), -EINVAL);
	CHECK_EQ(mem.n, 0);

	int fd = make_memfd(0x1000);
	CHECK(fd >= 0);
	struct vhu_mem_region r = reg(0, 0x1000, 0, UINT64_MAX - 0x10);
	CHECK_EQ(vhu__mem_add(&mem, &r, fd), -EINVAL);
	r = reg(0, 0, 0, 0);
	CHECK_EQ(vhu__mem_add(&mem, &r, fd), -EINVAL);
	r = reg(UINT64_MAX, 0x1000, 0, 0);
	CHECK_EQ(vhu__mem_add(&mem, &r, fd), -EINVAL);
	CHECK_EQ(mem.n, 0);
	close(fd);
}

TEST(overlap_rejected)
{
	vhu__mem_init(&mem);
	static uint8_t a[0x1000], b[0x1000];
	CHECK_EQ(vhu__mem_add_host(&mem, 0x1000, 0x1000, 0x10000, a), 0);
	/* gpa overlaps at either end, or contains */
	CHECK_EQ(vhu__mem_add_host(&mem, 0x1fff, 0x10, 0x50000, b), -EEXIST);
	CHECK_EQ(vhu__mem_add_host(&mem, 0x800, 0x801, 0x50000, b), -EEXIST);
	CHECK_EQ(vhu__mem_add_host(&mem, 0, 0x4000, 0x50000, b), -EEXIST);
	/* uva overlap */
	CHECK_EQ(vhu__mem_add_host(&mem, 0x8000, 0x100, 0x10fff, b), -EEXIST);
	/* adjacent in both is fine */
	CHECK_EQ(vhu__mem_add_host(&mem, 0x2000, 0x1000, 0x11000, b), 0);
	CHECK_EQ(mem.n, 2);
	vhu__mem_clear(&mem);
}

TEST(sorted_and_binary_lookup)
{
	vhu__mem_init(&mem);
	static uint8_t b[8][0x100];
	/* Insert out of order; lookups must find each region. */
	unsigned order[8] = { 5, 2, 7, 0, 3, 6, 1, 4 };
	for (unsigned i = 0; i < 8; i++) {
		unsigned k = order[i];
		CHECK_EQ(vhu__mem_add_host(&mem, 0x10000 * k, 0x100,
					   0x100000 + 0x1000 * k, b[k]),
			 0);
	}
	for (unsigned i = 1; i < mem.n; i++)
		CHECK(mem.r[i - 1].gpa < mem.r[i].gpa);
	for (unsigned k = 0; k < 8; k++) {
		CHECK(vhu__mem_gpa_to_va(&mem, 0x10000 * k + 0x80, 0x80) ==
		      &b[k][0x80]);
		CHECK(vhu__mem_gpa_to_va(&mem, 0x10000 * k + 0x80, 0x81) == NULL);
		CHECK(vhu__mem_gpa_to_va(&mem, 0x10000 * k + 0x100, 1) == NULL);
		CHECK(vhu__mem_uva_to_va(&mem, 0x100000 + 0x1000 * k + 0xff, 1) ==
		      &b[k][0xff]);
		CHECK(vhu__mem_uva_to_va(&mem, 0x100000 + 0x1000 * k + 0xff, 2) ==
		      NULL);
	}
	CHECK(vhu__mem_uva_to_va(&mem, 0x0, 1) == NULL);
	struct vhu_mem_region r = reg(0x30000, 0x100, 0x103000, 0);
	CHECK_EQ(vhu__mem_remove(&mem, &r), 0);
	CHECK(vhu__mem_gpa_to_va(&mem, 0x30000, 1) == NULL);
	CHECK(vhu__mem_gpa_to_va(&mem, 0x40000, 1) == &b[4][0]);
	/* a remove must match gpa, size and uva */
	r = reg(0x40000, 0x80, 0x104000, 0);
	CHECK_EQ(vhu__mem_remove(&mem, &r), -ENOENT);
	vhu__mem_clear(&mem);
}

TEST(full_table)
{
	vhu__mem_init(&mem);
	static uint8_t page[16];
	for (unsigned i = 0; i < VHU_MAX_MEM_SLOTS; i++)
		CHECK_EQ(vhu__mem_add_host(&mem, 0x1000ull * i, 16,
					   0x1000ull * i, page),
			 0);
	CHECK_EQ(mem.n, 509);
	CHECK_EQ(vhu__mem_add_host(&mem, 0x10000000, 16, 0x10000000, page),
		 -ENOSPC);
	int fd = make_memfd(0x1000);
	CHECK(fd >= 0);
	struct vhu_mem_region r = reg(0x10000000, 0x1000, 0x10000000, 0);
	CHECK_EQ(vhu__mem_add(&mem, &r, fd), -ENOSPC);
	CHECK(fd_is_open(fd));
	close(fd);
	CHECK(vhu__mem_gpa_to_va(&mem, 0x1000ull * 508 + 15, 1) == page + 15);
	vhu__mem_clear(&mem);
	CHECK_EQ(mem.n, 0);
}

TEST(iov_across_two_memfd_regions)
{
	vhu__mem_init(&mem);
	int fd1 = make_memfd(0x1000), fd2 = make_memfd(0x1000);
	CHECK(fd1 >= 0 && fd2 >= 0);
	struct vhu_mem_region r1 = reg(0x10000, 0x1000, 0x500000, 0);
	struct vhu_mem_region r2 = reg(0x11000, 0x1000, 0x900000, 0);
	CHECK_EQ(vhu__mem_add(&mem, &r2, fd2), 0);
	CHECK_EQ(vhu__mem_add(&mem, &r1, fd1), 0);

	struct iovec iov[4];
	int n = vhu__mem_gpa_to_iov(&mem, 0x10ff0, 0x20, iov, 4);
	CHECK_EQ(n, 2);
	CHECK_EQ(iov[0].iov_len, 0x10);
	CHECK_EQ(iov[1].iov_len, 0x10);
	memset(iov[0].iov_base, 'A', 0x10);
	memset(iov[1].iov_base, 'B', 0x10);
	char buf[0x10];
	CHECK_EQ(pread(fd1, buf, 0x10, 0xff0), 0x10);
	CHECK(buf[0] == 'A' && buf[15] == 'A');
	CHECK_EQ(pread(fd2, buf, 0x10, 0), 0x10);
	CHECK(buf[0] == 'B' && buf[15] == 'B');

	/* Not in one region: no single pointer. */
	CHECK(vhu__mem_gpa_to_va(&mem, 0x10ff0, 0x20) == NULL);
	/* Out of room */
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x10ff0, 0x20, iov, 1), -E2BIG);
	/* Whole span, exactly */
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x10000, 0x2000, iov, 4), 2);
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x10000, 0x2001, iov, 4), -EFAULT);
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x10000, 0, iov, 0), 0);
	vhu__mem_clear(&mem);
	CHECK(!fd_is_open(fd1) && !fd_is_open(fd2));
}

TEST(iov_gap_is_fault)
{
	vhu__mem_init(&mem);
	static uint8_t a[0x100], b[0x100];
	CHECK_EQ(vhu__mem_add_host(&mem, 0x1000, 0x100, 0x1000, a), 0);
	CHECK_EQ(vhu__mem_add_host(&mem, 0x1101, 0x100, 0x2000, b), 0);
	struct iovec iov[4];
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x10f0, 0x20, iov, 4), -EFAULT);
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x10f0, 0x10, iov, 4), 1);
	CHECK(iov[0].iov_base == a + 0xf0);
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x0, 0x10, iov, 4), -EFAULT);
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x1100, 1, iov, 4), -EFAULT);
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x1200, 1, iov, 4), 1);
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, 0x1201, 1, iov, 4), -EFAULT);
	CHECK_EQ(vhu__mem_gpa_to_iov(&mem, UINT64_MAX, 2, iov, 4), -EFAULT);
	vhu__mem_clear(&mem);
}

int main(void)
{
	return tap_run();
}
