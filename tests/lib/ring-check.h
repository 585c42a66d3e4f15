/* SPDX-License-Identifier: MIT */
/*
 * The device side of the queue under test, as the split and packed ring
 * tests share it: the queue, an element and iovec storage for pops, and
 * checks.  Header-only, included once per test program: the state is
 * that program's, and CHECK (tap.h) belongs to it too.
 */
#ifndef VHU_TEST_RING_CHECK_H
#define VHU_TEST_RING_CHECK_H

#include <errno.h>

#include "internal.h"
#include "tap.h"

static struct vhu_vq *vq;          /* set by the test's setup */
static struct vhu_vq_elem el;
static struct iovec iov[64];

/* Pop into el and iov. */
static inline int pop(void)
{
	return vhu_vq_pop(vq, &el, iov, VHU__ARRAY_SIZE(iov));
}

/* One request pops: its id and how many iovecs each way. */
static inline void expect_pop(unsigned id, unsigned n_out, unsigned n_in)
{
	CHECK_EQ(pop(), 1);
	CHECK_EQ(el.id, id);
	CHECK_EQ(el.n_out, n_out);
	CHECK_EQ(el.n_in, n_in);
}

/* A chain too long for n iovecs pops truncated (VHU_VQ_POP_TRUNCATED)
 * as request id: one writable byte, its last, which gets status 1. */
static inline void expect_pop_truncated(unsigned n, unsigned id)
{
	CHECK_EQ(vhu_vq_pop_flags(vq, &el, iov, n, VHU_VQ_POP_TRUNCATED), 1);
	CHECK(!vhu_vq_is_broken(vq));
	CHECK_EQ(el.id, id);
	CHECK_EQ(el.flags, VHU_VQ_ELEM_F_TRUNCATED);
	CHECK_EQ(el.n_out, 0);
	CHECK_EQ(el.n_in, 1);
	CHECK_EQ(el.iov[0].iov_len, 1);
	*(uint8_t *)el.iov[0].iov_base = 1;
}

/* A broken queue: every pop fails with -EIO, it says so, and it claims
 * no work. */
static inline void expect_broken(void)
{
	CHECK_EQ(pop(), -EIO);
	CHECK(vhu_vq_is_broken(vq));
	CHECK_EQ(pop(), -EIO);
	CHECK(!vhu_vq_has_work(vq));
}

#endif
