/* SPDX-License-Identifier: MIT */
/*
 * Checks on the device side of a queue that the split and packed ring
 * tests share.  Header-only: CHECK (tap.h) belongs to the test program
 * that includes it.
 */
#ifndef VHU_TEST_RING_CHECK_H
#define VHU_TEST_RING_CHECK_H

#include <errno.h>

#include "internal.h"
#include "tap.h"

/* A broken queue: every pop (into el and iov[cap]) fails with -EIO, it
 * says so, and it claims no work. */
static inline void ring_expect_broken(struct vhu_vq *vq, struct vhu_vq_elem *el,
				      struct iovec *iov, unsigned cap)
{
	CHECK_EQ(vhu_vq_pop(vq, el, iov, cap), -EIO);
	CHECK(vhu_vq_is_broken(vq));
	CHECK_EQ(vhu_vq_pop(vq, el, iov, cap), -EIO);
	CHECK(!vhu_vq_has_work(vq));
}

#endif
