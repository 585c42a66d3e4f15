/* SPDX-License-Identifier: MIT */
/*
 * Bounded walks over iovec lists.  Every function stops at the end of the
 * list; none trusts a length to stay inside it.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <vhu/iov.h>

size_t vhu_iov_size(const struct iovec *iov, unsigned n)
{
	size_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].iov_len > SIZE_MAX - total)
			return SIZE_MAX;
		total += iov[i].iov_len;
	}
	return total;
}

/* Find the entry holding byte off: *idx and the offset inside it.  Returns
 * false when the list ends first. */
static bool seek(const struct iovec *iov, unsigned n, size_t off,
		 unsigned *idx, size_t *in)
{
	unsigned i = 0;
	while (i < n && off >= iov[i].iov_len) {
		off -= iov[i].iov_len;
		i++;
	}
	*idx = i;
	*in = off;
	return i < n;
}

enum op { TO_BUF, FROM_BUF, FILL };

static size_t walk(const struct iovec *iov, unsigned n, size_t off,
		   uint8_t *buf, int c, size_t len, enum op op)
{
	unsigned i;
	size_t in, done = 0;
	if (len == 0 || !seek(iov, n, off, &i, &in))
		return 0;
	for (; i < n && done < len; i++, in = 0) {
		size_t chunk = iov[i].iov_len - in;
		if (chunk == 0)
			continue; /* empty entry: base may be NULL */
		if (chunk > len - done)
			chunk = len - done;
		uint8_t *p = (uint8_t *)iov[i].iov_base + in;
		switch (op) {
		case TO_BUF:
			memcpy(buf + done, p, chunk);
			break;
		case FROM_BUF:
			memcpy(p, buf + done, chunk);
			break;
		case FILL:
			memset(p, c, chunk);
			break;
		}
		done += chunk;
	}
	return done;
}

size_t vhu_iov_to_buf(const struct iovec *iov, unsigned n, size_t off,
		      void *buf, size_t len)
{
	return walk(iov, n, off, buf, 0, len, TO_BUF);
}

size_t vhu_iov_from_buf(const struct iovec *iov, unsigned n, size_t off,
			const void *buf, size_t len)
{
	/* walk() only reads buf in FROM_BUF mode. */
	return walk(iov, n, off, (uint8_t *)(uintptr_t)buf, 0, len, FROM_BUF);
}

size_t vhu_iov_memset(const struct iovec *iov, unsigned n, size_t off, int c,
		      size_t len)
{
	return walk(iov, n, off, NULL, c, len, FILL);
}

int vhu_iov_slice(const struct iovec *src, unsigned n, size_t off, size_t len,
		  struct iovec *dst, unsigned dst_cap)
{
	if (off > SIZE_MAX - len || off + len > vhu_iov_size(src, n))
		return -EINVAL;
	if (len == 0)
		return 0;

	unsigned i, used = 0;
	size_t in, done = 0;
	seek(src, n, off, &i, &in); /* succeeds: off < total here */
	for (; i < n && done < len; i++, in = 0) {
		size_t chunk = src[i].iov_len - in;
		if (chunk == 0)
			continue;
		if (chunk > len - done)
			chunk = len - done;
		if (used >= dst_cap)
			return -E2BIG;
		dst[used].iov_base = (uint8_t *)src[i].iov_base + in;
		dst[used].iov_len = chunk;
		used++;
		done += chunk;
	}
	return (int)used;
}
