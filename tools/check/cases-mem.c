/* SPDX-License-Identifier: MIT */
/*
 * Hostile memory tables (vhost-user.rst SET_MEM_TABLE, ADD_MEM_REG,
 * REM_MEM_REG): region counts against fds, empty and overflowing regions,
 * offsets beyond the backing file, overlaps, descriptors that cannot be
 * mapped.  A table the back-end accepts although it reaches past the end
 * of its memfd is then used for a ring, so that a back-end that mapped it
 * blindly touches the missing pages (SIGBUS) where the check can see it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "check.h"

enum mem_id {
	M_NREG0, M_NREG9, M_FDS_FEWER, M_FDS_MORE, M_SIZE0, M_GPA_OVF,
	M_UVA_OVF, M_OFF_OVF, M_BEYOND_FILE, M_OFF_BEYOND_FILE, M_OVERLAP,
	M_OFF_UNALIGNED, M_NOT_MEMFD, M_TABLE_SHORT, M_ADD_NOFD, M_ADD_TWO_FDS,
	M_ADD_SIZE0, M_ADD_OVERLAP, M_REM_UNKNOWN, M_REM_NOFD, M_ADD_SHORT,
	M_NONE, /* no further change */
};

static void region(struct chk_sess *s, struct vhu_mem_region *r,
		   uint64_t gpa_off, uint64_t size, uint64_t mmap_off)
{
	r->guest_phys_addr = CHK_GPA_BASE + gpa_off;
	r->memory_size = size;
	r->userspace_addr = chk_uva(s, 0) + gpa_off;
	r->mmap_offset = mmap_off;
}

/*
 * After a table reaching past the memfd's end was accepted: put a ring
 * there and kick it.  The back-end must refuse the ring, stop it, or
 * drop the connection; it must not die touching the missing pages.
 */
static int use_beyond(struct chk_sess *s, const char *first, char *why)
{
	char w[CHK_WHY];
	struct vhu_vring_state st = { 0, CHK_QSIZE };
	if (chk_set(s, VHU_REQ_SET_VRING_NUM, &st, 8, NULL, 0, w) < 0)
		return s->dropped ? chk_pass(why, "%s; dropped", first) :
				    chk_fail(why, "%s; %s", first, w);
	uint64_t far = chk_uva(s, 0) + 2 * CHK_MEM_SIZE;
	struct vhu_vring_addr a = { 0, 0, far, far + 0x2000, far + 0x1000, 0 };
	int r = chk_set(s, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, w);
	if (r == -EREMOTEIO)
		return chk_pass(why, "%s; ring in the missing part refused",
				first);
	if (r < 0)
		return s->dropped ? chk_pass(why, "%s; dropped", first) :
				    chk_fail(why, "%s; %s", first, w);
	int kick = eventfd(0, EFD_CLOEXEC);
	uint64_t idx = 0, one = 1;
	r = chk_set(s, VHU_REQ_SET_VRING_KICK, &idx, 8, &kick, 1, w);
	if (r == 0 && write(kick, &one, 8) != 8)
		r = -errno;
	close(kick);
	if (r == -EREMOTEIO)
		return chk_pass(why, "%s; ring refused at kick", first);
	if (r < 0 && !s->dropped)
		return chk_fail(why, "%s; %s", first, w);
	r = chk_probe_alive(s, w);
	if (r < 0)
		return chk_fail(why, "%s; ring kicked, then %s", first, w);
	return chk_pass(why, "%s; ring kicked, %s", first,
			r ? "connection dropped" : "still serving");
}

/* The message a case sends, with its fds and what its answer may be. */
struct mem_msg {
	uint32_t req, size;
	struct vhu_mem_table t;
	struct vhu_mem_single one;
	int fds[VHU_MAX_FDS];
	unsigned nfds;
	enum chk_expect exp;
	bool beyond;      /* reaches past the memfd: judged by judge_beyond */
	int pfd[2];       /* a pipe, closed after sending */
};

/* SET_MEM_TABLE cases: a one-region table over the memfd, then changed. */
/* The cases that change only fields of region 0: their values (KEEP:
 * as region() set it), the answer they allow, and whether the table
 * reaches past the memfd. */
#define KEEP UINT64_MAX
#define MEM_SZ ((uint64_t)CHK_MEM_SIZE)
static const struct region0_case {
	enum mem_id id;
	uint64_t gpa, uva, off, size;
	enum chk_expect exp;
	bool beyond;
} region0_cases[] = {
	{ M_SIZE0, KEEP, KEEP, KEEP, 0, CHK_EXPECT_REJECT, false },
	{ M_GPA_OVF, 0xfffffffffff00000ull, KEEP, KEEP, 0x200000,
	  CHK_EXPECT_REJECT, false },
	{ M_UVA_OVF, KEEP, 0xfffffffffff80000ull, KEEP, KEEP,
	  CHK_EXPECT_REJECT, false },
	{ M_OFF_OVF, KEEP, KEEP, 0xfffffffffffff000ull, 0x2000,
	  CHK_EXPECT_REJECT, false },
	{ M_BEYOND_FILE, KEEP, KEEP, KEEP, 4 * MEM_SZ, CHK_EXPECT_ANY, true },
	{ M_OFF_BEYOND_FILE, KEEP, KEEP, 2 * MEM_SZ, 4 * MEM_SZ,
	  CHK_EXPECT_ANY, true },
	{ M_OFF_UNALIGNED, KEEP, KEEP, 1, MEM_SZ - 4096, CHK_EXPECT_ANY,
	  false },
};

static uint64_t field(uint64_t v, uint64_t as_set_up)
{
	return v == KEEP ? as_set_up : v;
}

/* A region-0 case: true when id is one. */
static bool region0(enum mem_id id, struct mem_msg *m)
{
	struct vhu_mem_region *r0 = &m->t.regions[0];
	for (size_t i = 0; i < VHU__ARRAY_SIZE(region0_cases); i++) {
		const struct region0_case *k = &region0_cases[i];
		if (k->id != id)
			continue;
		r0->guest_phys_addr = field(k->gpa, r0->guest_phys_addr);
		r0->userspace_addr = field(k->uva, r0->userspace_addr);
		r0->mmap_offset = field(k->off, r0->mmap_offset);
		r0->memory_size = field(k->size, r0->memory_size);
		m->exp = k->exp;
		m->beyond = k->beyond;
		return true;
	}
	return false;
}

static int mem_table(struct chk_sess *s, enum mem_id id, struct mem_msg *m,
		     char *why)
{
	if (region0(id, m))
		id = M_NONE;
	switch (id) {
	case M_NREG0:
		m->t.nregions = 0;
		m->nfds = 0;
		m->exp = CHK_EXPECT_ANY;
		break;
	case M_NREG9:
		m->t.nregions = 9;
		for (unsigned i = 0; i < 8; i++)
			region(s, &m->t.regions[i], (uint64_t)i * CHK_MEM_SIZE,
			       CHK_MEM_SIZE, 0);
		m->size = sizeof(m->t);
		m->nfds = 8;
		break;
	case M_FDS_FEWER:
		m->t.nregions = 2;
		region(s, &m->t.regions[1], CHK_MEM_SIZE, CHK_MEM_SIZE, 0);
		break;
	case M_FDS_MORE:
		m->nfds = 2;
		break;
	case M_OVERLAP:
		m->t.nregions = 2;
		region(s, &m->t.regions[1], CHK_MEM_SIZE / 2, CHK_MEM_SIZE, 0);
		m->t.regions[1].userspace_addr += 8 * (uint64_t)CHK_MEM_SIZE;
		m->nfds = 2;
		break;
	case M_NOT_MEMFD:
		if (pipe2(m->pfd, O_CLOEXEC) < 0)
			return chk_fail(why, "pipe: %s", strerror(errno));
		m->fds[0] = m->pfd[0];
		break;
	case M_TABLE_SHORT:
		m->t.nregions = 2;
		m->nfds = 2;
		m->size = 8 + 32;
		break;
	default:
		break;
	}
	if (!m->size)
		m->size = 8 + 32 * (m->t.nregions > 8 ? 8 : m->t.nregions);
	return 0;
}

/* ADD_MEM_REG and REM_MEM_REG cases: one region. */
static void mem_single(struct chk_sess *s, enum mem_id id, struct mem_msg *m)
{
	m->size = sizeof(m->one);
	if (id == M_REM_UNKNOWN || id == M_REM_NOFD) {
		m->req = VHU_REQ_REM_MEM_REG;
		region(s, &m->one.region, 16 * (uint64_t)CHK_MEM_SIZE,
		       CHK_MEM_SIZE, 0);
		if (id == M_REM_NOFD) {
			/* QEMU sends the region's fd with REM_MEM_REG;
			 * a real region removed without one must work. */
			region(s, &m->one.region, 0, CHK_MEM_SIZE, 0);
			m->exp = CHK_EXPECT_ANY;
		}
		m->nfds = id == M_REM_UNKNOWN ? 1 : 0;
		return;
	}
	m->req = VHU_REQ_ADD_MEM_REG;
	region(s, &m->one.region, 0, CHK_MEM_SIZE, 0);
	m->nfds = id == M_ADD_NOFD ? 0 : id == M_ADD_TWO_FDS ? 2 : 1;
	if (id == M_ADD_SIZE0)
		m->one.region.memory_size = 0;
	if (id == M_ADD_OVERLAP)
		region(s, &m->one.region, CHK_MEM_SIZE / 2, CHK_MEM_SIZE, 0);
	if (id == M_ADD_SHORT)
		m->size = 32;
}

/* A table reaching past the memfd: judged by hand, since its acceptance
 * is followed up (use_beyond). */
static int judge_beyond(struct chk_sess *s, uint32_t req, char *why)
{
	struct vhu_msg m;
	unsigned n = 0;
	int r = chk_recv(s, &m, s->timeout_ms, &n);
	if (r == 0)
		return chk_pass(why, "connection dropped");
	if (r < 0 && r != -ETIMEDOUT)
		return chk_fail(why, "bad reply: %s", strerror(-r));
	if (r == 1) {
		if (chk_check_reply(&m, req, 8, n, why) < 0)
			return -1;
		if (m.p.u64 != 0)
			return chk_pass(why, "error reply (ack %llu)",
					(unsigned long long)m.p.u64);
	}
	return use_beyond(s, "table accepted", why);
}

static int c_mem(struct chk_ctx *c, const void *arg, char *why)
{
	enum mem_id id = chk_case_id(arg);
	bool single = id >= M_ADD_NOFD;
	struct chk_sess s;
	enum chk_level lvl = id == M_ADD_OVERLAP || id == M_REM_UNKNOWN ||
			     id == M_REM_NOFD ? CHK_MAPPED : CHK_MEMFD;
	CHK_FRESH(c, &s, lvl, why);

	struct mem_msg m;
	memset(&m, 0, sizeof(m));
	for (unsigned i = 0; i < VHU_MAX_FDS; i++)
		m.fds[i] = s.memfd;
	m.nfds = 1;
	m.req = VHU_REQ_SET_MEM_TABLE;
	m.exp = CHK_EXPECT_REJECT;
	m.pfd[0] = m.pfd[1] = -1;
	m.t.nregions = 1;
	region(&s, &m.t.regions[0], 0, CHK_MEM_SIZE, 0);
	if (single)
		mem_single(&s, id, &m);
	else if (mem_table(&s, id, &m, why) < 0)
		return chk_done(&s, -1);

	const void *payload = single ? (void *)&m.one : (void *)&m.t;
	int r;
	if (m.beyond) {
		r = chk_send(&s, m.req, VHU_MSG_VERSION | VHU_MSG_NEED_REPLY,
			     payload, m.size, m.fds, m.nfds);
		if (r < 0)
			r = s.dropped ? chk_pass(why, "connection dropped") :
					chk_fail(why, "send: %s", strerror(-r));
		else
			r = judge_beyond(&s, m.req, why);
	} else {
		r = chk_send_judge(&s, m.req, payload, m.size, m.fds, m.nfds,
				   m.exp, why);
	}
	if (m.pfd[0] >= 0) {
		close(m.pfd[0]);
		close(m.pfd[1]);
	}
	return chk_done(&s, r);
}

#define MEM(name, i) CHK_CASE(name, c_mem, i)

const struct chk_case chk_cases_mem[] = {
	MEM("mem/nregions-0", M_NREG0),
	MEM("mem/nregions-9", M_NREG9),
	MEM("mem/fewer-fds-than-regions", M_FDS_FEWER),
	MEM("mem/more-fds-than-regions", M_FDS_MORE),
	MEM("mem/region-size-0", M_SIZE0),
	MEM("mem/gpa-size-overflow", M_GPA_OVF),
	MEM("mem/uva-size-overflow", M_UVA_OVF),
	MEM("mem/mmap-offset-size-overflow", M_OFF_OVF),
	MEM("mem/size-beyond-memfd", M_BEYOND_FILE),
	MEM("mem/mmap-offset-beyond-memfd", M_OFF_BEYOND_FILE),
	MEM("mem/overlapping-regions", M_OVERLAP),
	MEM("mem/mmap-offset-unaligned", M_OFF_UNALIGNED),
	MEM("mem/fd-not-mappable", M_NOT_MEMFD),
	MEM("mem/table-shorter-than-nregions", M_TABLE_SHORT),
	MEM("mem/add-mem-reg-without-fd", M_ADD_NOFD),
	MEM("mem/add-mem-reg-two-fds", M_ADD_TWO_FDS),
	MEM("mem/add-mem-reg-size-0", M_ADD_SIZE0),
	MEM("mem/add-mem-reg-overlap", M_ADD_OVERLAP),
	MEM("mem/add-mem-reg-short-payload", M_ADD_SHORT),
	MEM("mem/rem-mem-reg-unknown", M_REM_UNKNOWN),
	MEM("mem/rem-mem-reg-without-fd", M_REM_NOFD),
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};
