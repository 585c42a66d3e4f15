/* SPDX-License-Identifier: MIT */
/* iovec helpers: sizes, copies at offsets spanning entries, slices. */
#include <errno.h>
#include <stdint.h>

#include <vhu/iov.h>

#include "tap.h"

static char a[4], b[1], c[6];
static struct iovec v[4];

/* a: 4 bytes, an empty entry, b: 1 byte, c: 6 bytes -> 11 bytes */
static void fill(void)
{
	memcpy(a, "0123", 4);
	b[0] = '4';
	memcpy(c, "56789A", 6);
	v[0] = (struct iovec){ a, 4 };
	v[1] = (struct iovec){ NULL, 0 };
	v[2] = (struct iovec){ b, 1 };
	v[3] = (struct iovec){ c, 6 };
}

TEST(size)
{
	fill();
	CHECK_EQ(vhu_iov_size(v, 4), 11);
	CHECK_EQ(vhu_iov_size(v, 0), 0);
	struct iovec huge[2] = { { a, SIZE_MAX - 1 }, { b, 5 } };
	CHECK(vhu_iov_size(huge, 2) == SIZE_MAX);
}

TEST(to_buf_offsets)
{
	fill();
	char out[16];
	memset(out, 0, sizeof(out));
	CHECK_EQ(vhu_iov_to_buf(v, 4, 0, out, 16), 11);
	CHECK_MEM(out, "0123456789A", 11);
	CHECK_EQ(vhu_iov_to_buf(v, 4, 3, out, 4), 4); /* spans a, b, c */
	CHECK_MEM(out, "3456", 4);
	CHECK_EQ(vhu_iov_to_buf(v, 4, 4, out, 2), 2); /* starts at b */
	CHECK_MEM(out, "45", 2);
	CHECK_EQ(vhu_iov_to_buf(v, 4, 10, out, 5), 1);
	CHECK_MEM(out, "A", 1);
	CHECK_EQ(vhu_iov_to_buf(v, 4, 11, out, 5), 0);
	CHECK_EQ(vhu_iov_to_buf(v, 4, 1000, out, 5), 0);
	CHECK_EQ(vhu_iov_to_buf(v, 4, 2, out, 0), 0);
}

TEST(from_buf_and_memset)
{
	fill();
	CHECK_EQ(vhu_iov_from_buf(v, 4, 2, "abcdef", 6), 6);
	CHECK_MEM(a, "01ab", 4);
	CHECK_MEM(b, "c", 1);
	CHECK_MEM(c, "def89A", 6);
	CHECK_EQ(vhu_iov_from_buf(v, 4, 9, "xyz", 3), 2);
	CHECK_MEM(c, "def8xy", 6);
	CHECK_EQ(vhu_iov_memset(v, 4, 3, '-', 100), 8);
	CHECK_MEM(a, "01a-", 4);
	CHECK_MEM(b, "-", 1);
	CHECK_MEM(c, "------", 6);
	CHECK_EQ(vhu_iov_memset(v, 4, 11, 'x', 1), 0);
}

TEST(slice)
{
	fill();
	struct iovec d[4];
	int n = vhu_iov_slice(v, 4, 3, 4, d, 4);
	CHECK_EQ(n, 3); /* empty entry skipped */
	CHECK(d[0].iov_base == a + 3 && d[0].iov_len == 1);
	CHECK(d[1].iov_base == b && d[1].iov_len == 1);
	CHECK(d[2].iov_base == c && d[2].iov_len == 2);
	CHECK_EQ(vhu_iov_slice(v, 4, 5, 6, d, 4), 1);
	CHECK(d[0].iov_base == c && d[0].iov_len == 6);
	CHECK_EQ(vhu_iov_slice(v, 4, 0, 11, d, 4), 3);
	CHECK_EQ(vhu_iov_slice(v, 4, 0, 11, d, 2), -E2BIG);
	CHECK_EQ(vhu_iov_slice(v, 4, 0, 12, d, 4), -EINVAL);
	CHECK_EQ(vhu_iov_slice(v, 4, 12, 0, d, 4), -EINVAL);
	CHECK_EQ(vhu_iov_slice(v, 4, 11, 0, d, 4), 0);
	CHECK_EQ(vhu_iov_slice(v, 4, SIZE_MAX, 2, d, 4), -EINVAL);
	CHECK_EQ(vhu_iov_slice(v, 4, 10, 1, d, 4), 1);
	CHECK(d[0].iov_base == c + 5 && d[0].iov_len == 1);
}

int main(void)
{
	return tap_run();
}
