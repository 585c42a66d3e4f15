/* SPDX-License-Identifier: MIT */
/*
 * Hostile ring set-up (vhost-user.rst SET_VRING_*; notes section 6): ring
 * indices past the queues (including ones that truncate to a valid u16 or
 * u8), sizes that are 0, not a power of two or too large, ring addresses
 * that are unmapped, misaligned or overflow, kick/call/err descriptors that
 * are missing, of the wrong kind, or sent with the "no fd" bit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "check.h"

#define ACK UINT32_MAX

enum ring_id {
	R_NUM_IDX_10000, R_NUM_IDX_256, R_NUM_IDX_NQ, R_SIZE_0, R_SIZE_3,
	R_SIZE_65536, R_SIZE_32769, R_BASE_IDX, R_ADDR_IDX, R_ENABLE_IDX,
	R_GET_BASE_IDX, R_GET_BASE_UNSET, R_ADDR_UNMAPPED, R_ADDR_USED_UNMAPPED,
	R_ADDR_MISALIGNED, R_ADDR_OVERFLOW, R_ADDR_PARTIAL, R_ADDR_LOG_FLAG,
	R_KICK_NOFD, R_CALL_NOFD, R_KICK_MEMFD, R_KICK_NOFD_BIT_WITH_FD,
	R_KICK_IDX, R_ERR_IDX, R_KICK_BEFORE_ADDR, R_CALL_MEMFD_IO,
	R_VRING_ADDR_SHORT,
};

static const uint8_t ring_ids[] = {
	R_NUM_IDX_10000, R_NUM_IDX_256, R_NUM_IDX_NQ, R_SIZE_0, R_SIZE_3,
	R_SIZE_65536, R_SIZE_32769, R_BASE_IDX, R_ADDR_IDX, R_ENABLE_IDX,
	R_GET_BASE_IDX, R_GET_BASE_UNSET, R_ADDR_UNMAPPED, R_ADDR_USED_UNMAPPED,
	R_ADDR_MISALIGNED, R_ADDR_OVERFLOW, R_ADDR_PARTIAL, R_ADDR_LOG_FLAG,
	R_KICK_NOFD, R_CALL_NOFD, R_KICK_MEMFD, R_KICK_NOFD_BIT_WITH_FD,
	R_KICK_IDX, R_ERR_IDX, R_KICK_BEFORE_ADDR, R_CALL_MEMFD_IO,
	R_VRING_ADDR_SHORT,
};

static int send_ack(struct chk_sess *s, uint32_t req, const void *p,
		    uint32_t size, const int *fds, unsigned nfds, char *why)
{
	int r = chk_send(s, req, VHU_MSG_VERSION | VHU_MSG_NEED_REPLY, p, size,
			 fds, nfds);
	if (r < 0 && !s->dropped)
		return chk_fail(why, "send: %s", strerror(-r));
	return 0;
}

static int c_state(struct chk_ctx *c, struct chk_sess *s, uint32_t req,
		   uint32_t idx, uint32_t num, char *why)
{
	struct vhu_vring_state st = { idx, num };
	if (send_ack(s, req, &st, 8, NULL, 0, why) < 0)
		return -1;
	return chk_judge(s, req, ACK, CHK_EXPECT_REJECT, why);
}

/* Ring addresses: refused at SET_VRING_ADDR or at the kick, a ring that
 * stays stopped, or a drop. */
static int c_addr(struct chk_sess *s, uint64_t desc, uint64_t used,
		  uint64_t avail, uint32_t flags, char *why)
{
	char w[CHK_WHY];
	struct vhu_vring_state st = { 0, CHK_QSIZE };
	if (chk_set(s, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0, why) < 0)
		return -1;
	struct vhu_vring_addr a = { 0, flags, desc, used, avail, 0 };
	int r = chk_set(s, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, w);
	if (r == -EREMOTEIO)
		return chk_pass(why, "error reply at SET_VRING_ADDR");
	if (r < 0)
		return s->dropped ? chk_pass(why, "connection dropped") :
				    chk_fail(why, "%s", w);
	s->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint64_t idx = 0, one = 1;
	r = chk_set(s, VHU_REQ_SET_VRING_KICK, &idx, 8, &s->kick_fd, 1, w);
	if (r == -EREMOTEIO)
		return chk_pass(why, "error reply at SET_VRING_KICK");
	if (r < 0)
		return s->dropped ? chk_pass(why, "connection dropped") :
				    chk_fail(why, "%s", w);
	st.num = 1;
	if (s->acked & VHU_BIT(VHU_F_PROTOCOL_FEATURES))
		chk_set(s, VHU_REQ_SET_VRING_ENABLE, &st, 8, NULL, 0, w);
	if (write(s->kick_fd, &one, 8) != 8)
		return chk_fail(why, "kick: %s", strerror(errno));
	r = chk_probe_alive(s, w);
	if (r < 0)
		return chk_fail(why, "accepted and kicked, then %s", w);
	return chk_pass(why, "accepted, ring kicked, %s",
			r ? "connection dropped" : "connection still serving");
}

static int c_vring_fd(struct chk_sess *s, uint32_t req, uint64_t val,
		      int fd, enum chk_expect exp, char *why)
{
	if (send_ack(s, req, &val, 8, &fd, fd >= 0, why) < 0)
		return -1;
	return chk_judge(s, req, ACK, exp, why);
}

static int c_ring(struct chk_ctx *c, const void *arg, char *why)
{
	enum ring_id id = *(const uint8_t *)arg;
	struct chk_sess s;
	enum chk_level lvl = CHK_MAPPED;
	if (id == R_KICK_BEFORE_ADDR)
		lvl = CHK_NEGOTIATED;
	if (id == R_CALL_MEMFD_IO)
		lvl = CHK_RUNNING;
	if (chk_fresh(c, &s, lvl, why) < 0)
		return chk_done(&s, -1);
	uint64_t u = chk_uva(&s, 0);
	int fd = -1, r = -1;
	uint64_t one = 1;

	switch (id) {
	case R_NUM_IDX_10000:
		r = c_state(c, &s, VHU_REQ_SET_VRING_NUM, 0x10000, CHK_QSIZE, why);
		break;
	case R_NUM_IDX_256:
		r = c_state(c, &s, VHU_REQ_SET_VRING_NUM, 256, CHK_QSIZE, why);
		break;
	case R_NUM_IDX_NQ: {
		unsigned nq = s.queue_num > c->num_queues ? s.queue_num :
							    c->num_queues;
		r = c_state(c, &s, VHU_REQ_SET_VRING_NUM, nq, CHK_QSIZE, why);
		break;
	}
	case R_SIZE_0:
		r = c_state(c, &s, VHU_REQ_SET_VRING_NUM, 0, 0, why);
		break;
	case R_SIZE_3:
		r = c_state(c, &s, VHU_REQ_SET_VRING_NUM, 0, 3, why);
		break;
	case R_SIZE_65536:
		r = c_state(c, &s, VHU_REQ_SET_VRING_NUM, 0, 65536, why);
		break;
	case R_SIZE_32769:
		r = c_state(c, &s, VHU_REQ_SET_VRING_NUM, 0, 32769, why);
		break;
	case R_BASE_IDX:
		r = c_state(c, &s, VHU_REQ_SET_VRING_BASE, 0x10000, 0, why);
		break;
	case R_ENABLE_IDX:
		r = c_state(c, &s, VHU_REQ_SET_VRING_ENABLE, 300, 1, why);
		break;
	case R_ADDR_IDX: {
		struct vhu_vring_addr a = { 256, 0, u, u + CHK_OFF_USED,
					    u + CHK_OFF_AVAIL, 0 };
		if (send_ack(&s, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0,
			     why) == 0)
			r = chk_judge(&s, VHU_REQ_SET_VRING_ADDR, ACK,
				      CHK_EXPECT_REJECT, why);
		break;
	}
	case R_VRING_ADDR_SHORT: {
		struct vhu_vring_addr a = { 0, 0, u, u + CHK_OFF_USED,
					    u + CHK_OFF_AVAIL, 0 };
		if (send_ack(&s, VHU_REQ_SET_VRING_ADDR, &a, 24, NULL, 0,
			     why) == 0)
			r = chk_judge(&s, VHU_REQ_SET_VRING_ADDR, ACK,
				      CHK_EXPECT_REJECT, why);
		break;
	}
	case R_GET_BASE_IDX:
	case R_GET_BASE_UNSET: {
		/* No error convention exists for GET_VRING_BASE: any
		 * answer or a drop is fine, a hang or a crash is not. */
		struct vhu_vring_state st = {
			id == R_GET_BASE_IDX ? 0x10000 : 0, 0 };
		chk_send(&s, VHU_REQ_GET_VRING_BASE, VHU_MSG_VERSION, &st, 8,
			 NULL, 0);
		r = chk_judge(&s, VHU_REQ_GET_VRING_BASE, 8, CHK_EXPECT_ANY,
			      why);
		break;
	}
	case R_ADDR_UNMAPPED:
		r = c_addr(&s, u + 64 * CHK_MEM_SIZE, u + CHK_OFF_USED,
			   u + CHK_OFF_AVAIL, 0, why);
		break;
	case R_ADDR_USED_UNMAPPED:
		r = c_addr(&s, u, u - 0x100000, u + CHK_OFF_AVAIL, 0, why);
		break;
	case R_ADDR_MISALIGNED:
		r = c_addr(&s, u + 1, u + CHK_OFF_USED + 1,
			   u + CHK_OFF_AVAIL + 1, 0, why);
		break;
	case R_ADDR_OVERFLOW:
		r = c_addr(&s, 0xfffffffffffffff0ull, u + CHK_OFF_USED,
			   0xfffffffffffffffeull, 0, why);
		break;
	case R_ADDR_PARTIAL:
		r = c_addr(&s, u + CHK_MEM_SIZE - 16, u + CHK_OFF_USED,
			   u + CHK_OFF_AVAIL, 0, why);
		break;
	case R_ADDR_LOG_FLAG:
		r = c_addr(&s, u, u + CHK_OFF_USED, u + CHK_OFF_AVAIL,
			   VHU_VRING_F_LOG, why);
		break;
	case R_KICK_NOFD:
		r = c_vring_fd(&s, VHU_REQ_SET_VRING_KICK, 0, -1,
			       CHK_EXPECT_REJECT, why);
		break;
	case R_CALL_NOFD:
		r = c_vring_fd(&s, VHU_REQ_SET_VRING_CALL, 0, -1,
			       CHK_EXPECT_REJECT, why);
		break;
	case R_KICK_MEMFD:
		r = c_vring_fd(&s, VHU_REQ_SET_VRING_KICK, 0, s.memfd,
			       CHK_EXPECT_ANY, why);
		break;
	case R_KICK_NOFD_BIT_WITH_FD:
		fd = eventfd(0, EFD_CLOEXEC);
		r = c_vring_fd(&s, VHU_REQ_SET_VRING_KICK, VHU_VRING_NOFD, fd,
			       CHK_EXPECT_ANY, why);
		break;
	case R_KICK_IDX:
		fd = eventfd(0, EFD_CLOEXEC);
		r = c_vring_fd(&s, VHU_REQ_SET_VRING_KICK, 200, fd,
			       CHK_EXPECT_REJECT, why);
		break;
	case R_ERR_IDX:
		fd = eventfd(0, EFD_CLOEXEC);
		r = c_vring_fd(&s, VHU_REQ_SET_VRING_ERR, 255, fd,
			       CHK_EXPECT_REJECT, why);
		break;
	case R_KICK_BEFORE_ADDR:
		fd = eventfd(0, EFD_CLOEXEC);
		r = c_vring_fd(&s, VHU_REQ_SET_VRING_KICK, 0, fd,
			       CHK_EXPECT_ANY, why);
		if (r == 0 && !s.dropped && write(fd, &one, 8) == 8) {
			char w[CHK_WHY];
			int a = chk_probe_alive(&s, w);
			r = a < 0 ? chk_fail(why, "kicked, then %s", w) :
				    chk_pass(why, "accepted, kicked, %s",
					     a ? "dropped" : "still serving");
		}
		break;
	case R_CALL_MEMFD_IO: {
		/* A call "eventfd" that is a regular file: the back-end's
		 * notification write must not hurt it. */
		int mfd = memfd_create("vhu-check-call", MFD_CLOEXEC);
		uint64_t idx = 0;
		char w[CHK_WHY];
		int a = chk_set(&s, VHU_REQ_SET_VRING_CALL, &idx, 8, &mfd, 1, w);
		close(mfd);
		if (a == -EREMOTEIO) {
			r = chk_pass(why, "error reply");
			break;
		}
		if (a < 0) {
			r = s.dropped ? chk_pass(why, "connection dropped") :
					chk_fail(why, "%s", w);
			break;
		}
		uint8_t st;
		a = chk_blk_req(&s, CHK_BLK_T_IN, 0, 512, &st, w);
		if (a == -ETIMEDOUT || a == -EPIPE) {
			int p = chk_probe_alive(&s, w);
			r = p < 0 ? chk_fail(why, "request lost, then %s", w) :
				    chk_pass(why, "request not completed, %s",
					     p ? "dropped" : "still serving");
		} else if (a < 0) {
			r = chk_fail(why, "%s", w);
		} else {
			r = chk_pass(why, "accepted, request status %u", st);
		}
		break;
	}
	}
	if (fd >= 0)
		close(fd);
	return chk_done(&s, r);
}

#define RING(name, i) { name, c_ring, &ring_ids[i], CHK_PROBE_IO }

const struct chk_case chk_cases_ring[] = {
	RING("ring/num-index-0x10000", R_NUM_IDX_10000),
	RING("ring/num-index-256", R_NUM_IDX_256),
	RING("ring/num-index-num-queues", R_NUM_IDX_NQ),
	RING("ring/size-0", R_SIZE_0),
	RING("ring/size-3", R_SIZE_3),
	RING("ring/size-65536", R_SIZE_65536),
	RING("ring/size-32769", R_SIZE_32769),
	RING("ring/base-index-0x10000", R_BASE_IDX),
	RING("ring/addr-index-256", R_ADDR_IDX),
	RING("ring/addr-payload-short", R_VRING_ADDR_SHORT),
	RING("ring/enable-index-300", R_ENABLE_IDX),
	RING("ring/get-base-index-0x10000", R_GET_BASE_IDX),
	RING("ring/get-base-unconfigured", R_GET_BASE_UNSET),
	RING("ring/addr-desc-unmapped", R_ADDR_UNMAPPED),
	RING("ring/addr-used-unmapped", R_ADDR_USED_UNMAPPED),
	RING("ring/addr-misaligned", R_ADDR_MISALIGNED),
	RING("ring/addr-overflow", R_ADDR_OVERFLOW),
	RING("ring/addr-desc-partly-mapped", R_ADDR_PARTIAL),
	RING("ring/addr-log-flag-without-log", R_ADDR_LOG_FLAG),
	RING("ring/kick-no-fd-without-bit-8", R_KICK_NOFD),
	RING("ring/call-no-fd-without-bit-8", R_CALL_NOFD),
	RING("ring/kick-fd-not-eventfd", R_KICK_MEMFD),
	RING("ring/kick-fd-with-bit-8", R_KICK_NOFD_BIT_WITH_FD),
	RING("ring/kick-index-200", R_KICK_IDX),
	RING("ring/err-index-255", R_ERR_IDX),
	RING("ring/kick-before-addr", R_KICK_BEFORE_ADDR),
	RING("ring/call-fd-not-eventfd", R_CALL_MEMFD_IO),
	{ NULL, NULL, NULL, CHK_PROBE_NONE },
};
