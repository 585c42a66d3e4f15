/* SPDX-License-Identifier: MIT */
/* Helpers over iovec arrays: sizes and bounded copies at an offset. */
#ifndef VHU_IOV_H
#define VHU_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Total bytes described by iov[0..n); saturates at SIZE_MAX. */
size_t vhu_iov_size(const struct iovec *iov, unsigned n);

/* Copy up to len bytes starting at byte offset off of the iovec list into
 * buf.  Returns the number of bytes copied (short when the list ends). */
size_t vhu_iov_to_buf(const struct iovec *iov, unsigned n, size_t off,
		      void *buf, size_t len);

/* Copy up to len bytes from buf into the iovec list at byte offset off.
 * Returns the number of bytes copied. */
size_t vhu_iov_from_buf(const struct iovec *iov, unsigned n, size_t off,
			const void *buf, size_t len);

/* Fill up to len bytes of the iovec list at offset off with byte c. */
size_t vhu_iov_memset(const struct iovec *iov, unsigned n, size_t off,
		      int c, size_t len);

/*
 * Describe the byte range [off, off + len) of src as a new iovec list in
 * dst (capacity dst_cap).  Returns the number of dst entries used, or
 * -EINVAL when the range lies beyond src, -E2BIG when dst is too small.
 */
int vhu_iov_slice(const struct iovec *src, unsigned n, size_t off, size_t len,
		  struct iovec *dst, unsigned dst_cap);

#ifdef __cplusplus
}
#endif
#endif
