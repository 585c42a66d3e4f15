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
};

static const uint8_t mem_ids[] = {
	M_NREG0, M_NREG9, M_FDS_FEWER, M_FDS_MORE, M_SIZE0, M_GPA_OVF,
	M_UVA_OVF, M_OFF_OVF, M_BEYOND_FILE, M_OFF_BEYOND_FILE, M_OVERLAP,
	M_OFF_UNALIGNED, M_NOT_MEMFD, M_TABLE_SHORT, M_ADD_NOFD, M_ADD_TWO_FDS,
	M_ADD_SIZE0, M_ADD_OVERLAP, M_REM_UNKNOWN, M_REM_NOFD, M_ADD_SHORT,
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

static int c_mem(struct chk_ctx *c, const void *arg, char *why)
{
	enum mem_id id = *(const uint8_t *)arg;
	struct chk_sess s;
	enum chk_level lvl = id == M_ADD_OVERLAP || id == M_REM_UNKNOWN ||
			     id == M_REM_NOFD ? CHK_MAPPED : CHK_MEMFD;
	if (chk_fresh(c, &s, lvl, why) < 0)
		return chk_done(&s, -1);

	struct vhu_mem_table t;
	struct vhu_mem_single one;
	memset(&t, 0, sizeof(t));
	memset(&one, 0, sizeof(one));
	int fds[VHU_MAX_FDS];
	for (unsigned i = 0; i < VHU_MAX_FDS; i++)
		fds[i] = s.memfd;
	unsigned nfds = 1;
	uint32_t req = VHU_REQ_SET_MEM_TABLE, size = 0;
	enum chk_expect exp = CHK_EXPECT_REJECT;
	bool beyond = false;
	int pfd[2] = { -1, -1 };

	t.nregions = 1;
	region(&s, &t.regions[0], 0, CHK_MEM_SIZE, 0);
	switch (id) {
	case M_NREG0:
		t.nregions = 0;
		nfds = 0;
		exp = CHK_EXPECT_ANY;
		break;
	case M_NREG9:
		t.nregions = 9;
		for (unsigned i = 0; i < 8; i++)
			region(&s, &t.regions[i], (uint64_t)i * CHK_MEM_SIZE,
			       CHK_MEM_SIZE, 0);
		size = sizeof(t);
		nfds = 8;
		break;
	case M_FDS_FEWER:
		t.nregions = 2;
		region(&s, &t.regions[1], CHK_MEM_SIZE, CHK_MEM_SIZE, 0);
		break;
	case M_FDS_MORE:
		nfds = 2;
		break;
	case M_SIZE0:
		t.regions[0].memory_size = 0;
		break;
	case M_GPA_OVF:
		t.regions[0].guest_phys_addr = 0xfffffffffff00000ull;
		t.regions[0].memory_size = 0x200000;
		break;
	case M_UVA_OVF:
		t.regions[0].userspace_addr = 0xfffffffffff80000ull;
		break;
	case M_OFF_OVF:
		t.regions[0].mmap_offset = 0xfffffffffffff000ull;
		t.regions[0].memory_size = 0x2000;
		break;
	case M_BEYOND_FILE:
		t.regions[0].memory_size = 4 * (uint64_t)CHK_MEM_SIZE;
		exp = CHK_EXPECT_ANY;
		beyond = true;
		break;
	case M_OFF_BEYOND_FILE:
		t.regions[0].mmap_offset = 2 * (uint64_t)CHK_MEM_SIZE;
		t.regions[0].memory_size = 4 * (uint64_t)CHK_MEM_SIZE;
		exp = CHK_EXPECT_ANY;
		beyond = true;
		break;
	case M_OVERLAP:
		t.nregions = 2;
		region(&s, &t.regions[1], CHK_MEM_SIZE / 2, CHK_MEM_SIZE, 0);
		t.regions[1].userspace_addr += 8 * (uint64_t)CHK_MEM_SIZE;
		nfds = 2;
		break;
	case M_OFF_UNALIGNED:
		t.regions[0].mmap_offset = 1;
		t.regions[0].memory_size = CHK_MEM_SIZE - 4096;
		exp = CHK_EXPECT_ANY;
		break;
	case M_NOT_MEMFD:
		if (pipe2(pfd, O_CLOEXEC) < 0)
			return chk_done(&s, chk_fail(why, "pipe: %s",
						     strerror(errno)));
		fds[0] = pfd[0];
		break;
	case M_TABLE_SHORT:
		t.nregions = 2;
		nfds = 2;
		size = 8 + 32;
		break;
	case M_ADD_NOFD:
	case M_ADD_TWO_FDS:
	case M_ADD_SIZE0:
	case M_ADD_OVERLAP:
	case M_ADD_SHORT:
		req = VHU_REQ_ADD_MEM_REG;
		region(&s, &one.region, 0, CHK_MEM_SIZE, 0);
		nfds = id == M_ADD_NOFD ? 0 : id == M_ADD_TWO_FDS ? 2 : 1;
		if (id == M_ADD_SIZE0)
			one.region.memory_size = 0;
		if (id == M_ADD_OVERLAP)
			region(&s, &one.region, CHK_MEM_SIZE / 2,
			       CHK_MEM_SIZE, 0);
		size = id == M_ADD_SHORT ? 32 : sizeof(one);
		break;
	case M_REM_UNKNOWN:
	case M_REM_NOFD:
		req = VHU_REQ_REM_MEM_REG;
		region(&s, &one.region, 16 * (uint64_t)CHK_MEM_SIZE,
		       CHK_MEM_SIZE, 0);
		if (id == M_REM_NOFD) {
			/* QEMU sends the region's fd with REM_MEM_REG;
			 * a real region removed without one must work. */
			region(&s, &one.region, 0, CHK_MEM_SIZE, 0);
			exp = CHK_EXPECT_ANY;
		}
		nfds = id == M_REM_UNKNOWN ? 1 : 0;
		size = sizeof(one);
		break;
	}
	if (req == VHU_REQ_SET_MEM_TABLE && !size)
		size = 8 + 32 * (t.nregions > 8 ? 8 : t.nregions);
	const void *payload = req == VHU_REQ_SET_MEM_TABLE ? (void *)&t :
			      (void *)&one;
	int r = chk_send(&s, req, VHU_MSG_VERSION | VHU_MSG_NEED_REPLY,
			 payload, size, fds, nfds);
	if (pfd[0] >= 0) {
		close(pfd[0]);
		close(pfd[1]);
	}
	if (r < 0)
		return chk_done(&s, s.dropped ?
				chk_pass(why, "connection dropped") :
				chk_fail(why, "send: %s", strerror(-r)));
	if (!beyond)
		return chk_done(&s, chk_judge(&s, req, UINT32_MAX, exp, why));

	/* Judge the table by hand: its acceptance is followed up. */
	struct vhu_msg m;
	unsigned n = 0;
	r = chk_recv(&s, &m, s.timeout_ms, &n);
	if (r == 0)
		return chk_done(&s, chk_pass(why, "connection dropped"));
	if (r < 0 && r != -ETIMEDOUT)
		return chk_done(&s, chk_fail(why, "bad reply: %s",
					     strerror(-r)));
	if (r == 1) {
		if (chk_check_reply(&m, req, 8, n, why) < 0)
			return chk_done(&s, -1);
		if (m.p.u64 != 0)
			return chk_done(&s, chk_pass(why, "error reply (ack "
						     "%llu)",
						     (unsigned long long)m.p.u64));
	}
	return chk_done(&s, use_beyond(&s, "table accepted", why));
}

#define MEM(name, i) { name, c_mem, &mem_ids[i], CHK_PROBE_IO }

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
	{ NULL, NULL, NULL, CHK_PROBE_NONE },
};
