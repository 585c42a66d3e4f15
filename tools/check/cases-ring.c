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

/* A vring_state message that must be refused.  RING_IDX_NQ stands for the
 * first index past the queues. */
#define RING_IDX_NQ UINT32_MAX
struct ring_state {
	uint32_t req, idx, num;
};

static int c_state(struct chk_ctx *c, const void *arg, char *why)
{
	const struct ring_state *a = arg;
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_MAPPED, why);
	struct vhu_vring_state st = { a->idx, a->num };
	if (a->idx == RING_IDX_NQ)
		st.index = s.queue_num > c->num_queues ? s.queue_num :
							 c->num_queues;
	return chk_done(&s, chk_send_judge(&s, a->req, &st, 8, NULL, 0,
					   CHK_EXPECT_REJECT, why));
}

/* SET_VRING_ADDR for ring index, of size bytes: must be refused. */
struct ring_addr_msg {
	uint32_t index, size;
};

static int c_addr_msg(struct chk_ctx *c, const void *arg, char *why)
{
	const struct ring_addr_msg *m = arg;
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_MAPPED, why);
	uint64_t u = chk_uva(&s, 0);
	struct vhu_vring_addr a = { m->index, 0, u, u + CHK_OFF_USED,
				    u + CHK_OFF_AVAIL, 0 };
	return chk_done(&s, chk_send_judge(&s, VHU_REQ_SET_VRING_ADDR, &a,
					   m->size, NULL, 0, CHK_EXPECT_REJECT,
					   why));
}

/* GET_VRING_BASE of index *arg.  No error convention exists for it: any
 * answer or a drop is fine, a hang or a crash is not. */
static int c_get_base(struct chk_ctx *c, const void *arg, char *why)
{
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_MAPPED, why);
	struct vhu_vring_state st = { *(const uint32_t *)arg, 0 };
	chk_send(&s, VHU_REQ_GET_VRING_BASE, VHU_MSG_VERSION, &st, 8, NULL, 0);
	return chk_done(&s, chk_judge(&s, VHU_REQ_GET_VRING_BASE, 8,
				      CHK_EXPECT_ANY, why));
}

/* Ring addresses: offsets from the start of the session's memory, or
 * (absolute) desc and avail as they are. */
struct ring_addr {
	uint64_t desc, used, avail;
	uint32_t flags;
	bool absolute;
};

/* A step of c_addr refused (pass) or failed; 1 when it was accepted. */
static int addr_step(struct chk_sess *s, int r, const char *msg,
		     const char *w, char *why)
{
	if (r == -EREMOTEIO)
		return chk_pass(why, "error reply at %s", msg);
	if (r < 0)
		return s->dropped ? chk_pass(why, "connection dropped") :
				    chk_fail(why, "%s", w);
	return 1;
}

/* Refused at SET_VRING_ADDR or at the kick, a ring that stays stopped, or
 * a drop. */
static int c_addr(struct chk_ctx *c, const void *arg, char *why)
{
	const struct ring_addr *ra = arg;
	char w[CHK_WHY];
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_MAPPED, why);
	uint64_t u = chk_uva(&s, 0), base = ra->absolute ? 0 : u;
	struct vhu_vring_state st = { 0, CHK_QSIZE };
	if (chk_set(&s, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0, why) < 0)
		return chk_done(&s, -1);
	struct vhu_vring_addr a = { 0, ra->flags, base + ra->desc,
				    u + ra->used, base + ra->avail, 0 };
	int r = chk_set(&s, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, w);
	if ((r = addr_step(&s, r, "SET_VRING_ADDR", w, why)) != 1)
		return chk_done(&s, r);
	s.kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint64_t idx = 0, one = 1;
	r = chk_set(&s, VHU_REQ_SET_VRING_KICK, &idx, 8, &s.kick_fd, 1, w);
	if ((r = addr_step(&s, r, "SET_VRING_KICK", w, why)) != 1)
		return chk_done(&s, r);
	st.num = 1;
	if (s.acked & VHU_BIT(VHU_F_PROTOCOL_FEATURES))
		chk_set(&s, VHU_REQ_SET_VRING_ENABLE, &st, 8, NULL, 0, w);
	if (write(s.kick_fd, &one, 8) != 8)
		return chk_done(&s, chk_fail(why, "kick: %s", strerror(errno)));
	r = chk_probe_alive(&s, w);
	if (r < 0)
		return chk_done(&s, chk_fail(why, "accepted and kicked, then %s",
					     w));
	return chk_done(&s, chk_pass(why, "accepted, ring kicked, %s",
				     r ? "connection dropped" :
					 "connection still serving"));
}

/* A kick/call/err message: payload val, with the session's memfd, a new
 * eventfd or no descriptor; then, for kick, one kick when asked. */
enum ring_fd_kind { FD_NONE, FD_MEMFD, FD_EVENTFD };
struct ring_fd {
	uint32_t req;
	uint64_t val;
	enum ring_fd_kind kind;
	enum chk_expect exp;
	enum chk_level level;
	bool kick;
};

static int c_vring_fd(struct chk_ctx *c, const void *arg, char *why)
{
	const struct ring_fd *a = arg;
	struct chk_sess s;
	CHK_FRESH(c, &s, a->level, why);
	int fd = a->kind == FD_MEMFD ? s.memfd :
		 a->kind == FD_EVENTFD ? eventfd(0, EFD_CLOEXEC) : -1;
	uint64_t val = a->val, one = 1;
	int r = chk_send_judge(&s, a->req, &val, 8, &fd, fd >= 0, a->exp, why);
	if (a->kick && r == 0 && !s.dropped && write(fd, &one, 8) == 8) {
		char w[CHK_WHY];
		int p = chk_probe_alive(&s, w);
		r = p < 0 ? chk_fail(why, "kicked, then %s", w) :
			    chk_pass(why, "accepted, kicked, %s",
				     p ? "dropped" : "still serving");
	}
	if (a->kind == FD_EVENTFD && fd >= 0)
		close(fd);
	return chk_done(&s, r);
}

/* A call "eventfd" that is a regular file: the back-end's notification
 * write must not hurt it. */
static int c_call_memfd_io(struct chk_ctx *c, const void *arg, char *why)
{
	(void)arg;
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_RUNNING, why);
	int mfd = memfd_create("vhu-check-call", MFD_CLOEXEC);
	uint64_t idx = 0;
	char w[CHK_WHY];
	int a = chk_set(&s, VHU_REQ_SET_VRING_CALL, &idx, 8, &mfd, 1, w);
	close(mfd);
	if (a == -EREMOTEIO)
		return chk_done(&s, chk_pass(why, "error reply"));
	if (a < 0)
		return chk_done(&s, s.dropped ?
					    chk_pass(why, "connection dropped") :
					    chk_fail(why, "%s", w));
	uint8_t st;
	a = chk_blk_req(&s, CHK_BLK_T_IN, 0, 512, &st, w);
	int r;
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
	return chk_done(&s, r);
}

#define CASE(name, fn, type, ...) \
	{ name, fn, &(const type){ __VA_ARGS__ }, CHK_PROBE_IO, false }
#define STATE(name, ...) CASE(name, c_state, struct ring_state, __VA_ARGS__)
#define ADDR(name, d, u, a, ...)                                     \
	CASE(name, c_addr, struct ring_addr, .desc = (d), .used = (u), \
	     .avail = (a), __VA_ARGS__)
#define VFD(name, rq, v, k, e, l, ...)                                \
	CASE(name, c_vring_fd, struct ring_fd, .req = (rq), .val = (v), \
	     .kind = (k), .exp = (e), .level = (l), __VA_ARGS__)
#define NUM VHU_REQ_SET_VRING_NUM
#define KICK VHU_REQ_SET_VRING_KICK
#define REJECT CHK_EXPECT_REJECT
#define ANY CHK_EXPECT_ANY
#define MAPPED CHK_MAPPED
#define MEM CHK_MEM_SIZE

const struct chk_case chk_cases_ring[] = {
	STATE("ring/num-index-0x10000", NUM, 0x10000, CHK_QSIZE),
	STATE("ring/num-index-256", NUM, 256, CHK_QSIZE),
	STATE("ring/num-index-num-queues", NUM, RING_IDX_NQ, CHK_QSIZE),
	STATE("ring/size-0", NUM, 0, 0),
	STATE("ring/size-3", NUM, 0, 3),
	STATE("ring/size-65536", NUM, 0, 65536),
	STATE("ring/size-32769", NUM, 0, 32769),
	STATE("ring/base-index-0x10000", VHU_REQ_SET_VRING_BASE, 0x10000, 0),
	CASE("ring/addr-index-256", c_addr_msg, struct ring_addr_msg, 256,
	     sizeof(struct vhu_vring_addr)),
	CASE("ring/addr-payload-short", c_addr_msg, struct ring_addr_msg, 0,
	     24),
	STATE("ring/enable-index-300", VHU_REQ_SET_VRING_ENABLE, 300, 1),
	CASE("ring/get-base-index-0x10000", c_get_base, uint32_t, 0x10000),
	CASE("ring/get-base-unconfigured", c_get_base, uint32_t, 0),
	ADDR("ring/addr-desc-unmapped", 64ull * MEM, CHK_OFF_USED,
	     CHK_OFF_AVAIL),
	ADDR("ring/addr-used-unmapped", 0, -0x100000ull, CHK_OFF_AVAIL),
	ADDR("ring/addr-misaligned", 1, CHK_OFF_USED + 1, CHK_OFF_AVAIL + 1),
	ADDR("ring/addr-overflow", 0xfffffffffffffff0ull, CHK_OFF_USED,
	     0xfffffffffffffffeull, .absolute = true),
	ADDR("ring/addr-desc-partly-mapped", MEM - 16, CHK_OFF_USED,
	     CHK_OFF_AVAIL),
	ADDR("ring/addr-log-flag-without-log", 0, CHK_OFF_USED, CHK_OFF_AVAIL,
	     .flags = VHU_VRING_F_LOG),
	VFD("ring/kick-no-fd-without-bit-8", KICK, 0, FD_NONE, REJECT, MAPPED),
	VFD("ring/call-no-fd-without-bit-8", VHU_REQ_SET_VRING_CALL, 0,
	    FD_NONE, REJECT, MAPPED),
	VFD("ring/kick-fd-not-eventfd", KICK, 0, FD_MEMFD, ANY, MAPPED),
	VFD("ring/kick-fd-with-bit-8", KICK, VHU_VRING_NOFD, FD_EVENTFD, ANY,
	    MAPPED),
	VFD("ring/kick-index-200", KICK, 200, FD_EVENTFD, REJECT, MAPPED),
	VFD("ring/err-index-255", VHU_REQ_SET_VRING_ERR, 255, FD_EVENTFD,
	    REJECT, MAPPED),
	VFD("ring/kick-before-addr", KICK, 0, FD_EVENTFD, ANY, CHK_NEGOTIATED,
	    .kick = true),
	{ "ring/call-fd-not-eventfd", c_call_memfd_io, NULL, CHK_PROBE_IO,
	  true },
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};
