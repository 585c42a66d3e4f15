/* SPDX-License-Identifier: MIT */
/*
 * Hostile descriptor chains on a running split ring (virtio 1.2 2.7.5,
 * 2.7.5.3 indirect descriptors; notes section 6): loops, next out of the
 * table, nested or empty indirect tables, buffers that overflow or lie
 * outside guest memory, avail index jumps and heads past the ring.  The
 * device may fail the request, stop the ring or drop the connection; it
 * must not complete such a chain with OK, hang, or die.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "check.h"

#define NEXT VHU_VRING_DESC_F_NEXT
#define WR VHU_VRING_DESC_F_WRITE
#define IND VHU_VRING_DESC_F_INDIRECT
#define G(off) (CHK_GPA_BASE + (off))
#define FAR (CHK_GPA_BASE + 64ull * CHK_MEM_SIZE)
#define ST_OFF (CHK_OFF_HDR + 16)

enum chain_id {
	C_LOOP2, C_SELF, C_NEXT_OOR, C_NEXT_FFFF, C_IND_NESTED, C_IND_EMPTY,
	C_IND_ODD, C_IND_UNMAPPED, C_IND_LOOP, C_IND_NEXT_OOR, C_IND_HUGE,
	C_IND_WITH_NEXT, C_ADDR_OVF, C_UNMAPPED, C_PARTIAL, C_LEN_HUGE,
	C_AVAIL_JUMP, C_HEAD_OOR, C_HEAD_FFFF, C_WRITE_HDR, C_NO_STATUS,
	C_RW_ORDER, C_ZERO_LEN, C_FULL_CHAIN, C_IND_GOOD,
};

static void hdr(struct chk_sess *s, uint32_t type, uint64_t sector)
{
	struct { uint32_t type, ioprio; uint64_t sector; } h = {
		type, 0, sector };
	memcpy(s->mem + CHK_OFF_HDR, &h, sizeof(h));
	s->mem[ST_OFF] = 0xff;
}

/* hdr -> 512-byte IN buffer -> status, in table at off from entry i. */
static void good3(struct chk_sess *s, uint32_t off, unsigned i)
{
	chk_set_desc(s, off, i, G(CHK_OFF_HDR), 16, NEXT, (uint16_t)(i + 1));
	chk_set_desc(s, off, i + 1, G(CHK_OFF_DATA), 512, WR | NEXT,
		     (uint16_t)(i + 2));
	chk_set_desc(s, off, i + 2, G(ST_OFF), 1, WR, 0);
}

/* What c_chain publishes and how it judges the answer. */
struct chain_plan {
	uint16_t head, adv;
	bool ok_allowed;        /* an OK completion is no failure */
	bool must_ok;           /* a valid chain: it must complete with OK */
};

/* The cases that go through an indirect table at CHK_OFF_INDIRECT; false
 * for the others. */
static bool chain_indirect(struct chk_sess *s, enum chain_id id,
			   struct chain_plan *p)
{
	const uint32_t D = CHK_OFF_DESC, T = CHK_OFF_INDIRECT;
	switch (id) {
	case C_IND_NESTED:
		chk_set_desc(s, D, 0, G(T), 32, IND, 0);
		chk_set_desc(s, T, 0, G(CHK_OFF_HDR), 16, NEXT, 1);
		chk_set_desc(s, T, 1, G(T + 0x800), 48, IND, 0);
		good3(s, T + 0x800, 0);
		break;
	case C_IND_EMPTY:
		chk_set_desc(s, D, 0, G(T), 0, IND, 0);
		break;
	case C_IND_ODD:
		good3(s, T, 0);
		chk_set_desc(s, D, 0, G(T), 24, IND, 0);
		break;
	case C_IND_UNMAPPED:
		chk_set_desc(s, D, 0, FAR, 48, IND, 0);
		break;
	case C_IND_LOOP:
		chk_set_desc(s, D, 0, G(T), 32, IND, 0);
		chk_set_desc(s, T, 0, G(CHK_OFF_HDR), 16, NEXT, 1);
		chk_set_desc(s, T, 1, G(CHK_OFF_DATA), 512, WR | NEXT, 0);
		break;
	case C_IND_NEXT_OOR:
		good3(s, T, 0);
		chk_set_desc(s, T, 1, G(CHK_OFF_DATA), 512, WR | NEXT, 7);
		chk_set_desc(s, D, 0, G(T), 48, IND, 0);
		break;
	case C_IND_HUGE:
		good3(s, T, 0);
		chk_set_desc(s, D, 0, G(T), 0xfffffff0u, IND, 0);
		break;
	case C_IND_WITH_NEXT:
		/* virtio 1.2 2.7.5.3.1: INDIRECT and NEXT must not both be
		 * set; what the device does with it is not specified. */
		good3(s, T, 0);
		chk_set_desc(s, D, 0, G(T), 48, IND | NEXT, 1);
		chk_set_desc(s, D, 1, G(ST_OFF), 1, WR, 0);
		p->ok_allowed = true;
		break;
	case C_IND_GOOD:
		good3(s, T, 0);
		chk_set_desc(s, D, 0, G(T), 48, IND, 0);
		p->must_ok = (s->acked & VHU_BIT(VHU_F_INDIRECT_DESC)) != 0;
		p->ok_allowed = true;
		break;
	default:
		return false;
	}
	return true;
}

/* The cases laid out in the descriptor table itself. */
static void chain_direct(struct chk_sess *s, enum chain_id id,
			 struct chain_plan *p)
{
	const uint32_t D = CHK_OFF_DESC;
	unsigned q = s->qsize;
	switch (id) {
	case C_LOOP2:
	case C_NEXT_OOR:
		/* The second descriptor goes back to the first, or past
		 * the table. */
		chk_set_desc(s, D, 0, G(CHK_OFF_HDR), 16, NEXT, 1);
		chk_set_desc(s, D, 1, G(CHK_OFF_DATA), 512, WR | NEXT,
			     id == C_LOOP2 ? 0 : (uint16_t)(q + 5));
		break;
	case C_SELF:
		chk_set_desc(s, D, 0, G(CHK_OFF_HDR), 16, NEXT, 0);
		break;
	case C_NEXT_FFFF:
		chk_set_desc(s, D, 0, G(CHK_OFF_HDR), 16, NEXT, 0xffff);
		break;
	case C_ADDR_OVF:
	case C_UNMAPPED:
	case C_PARTIAL:
	case C_LEN_HUGE:
		good3(s, D, 0);
		if (id == C_ADDR_OVF)
			chk_set_desc(s, D, 1, 0xfffffffffffff000ull, 0x2000,
				     WR | NEXT, 2);
		else if (id == C_UNMAPPED)
			chk_set_desc(s, D, 1, FAR, 4096, WR | NEXT, 2);
		else if (id == C_PARTIAL)
			chk_set_desc(s, D, 1, G(CHK_MEM_SIZE - 512), 4096,
				     WR | NEXT, 2);
		else
			chk_set_desc(s, D, 1, G(CHK_OFF_DATA), 0xfffffe00u,
				     WR | NEXT, 2);
		break;
	case C_AVAIL_JUMP:
		good3(s, D, 0);
		p->adv = (uint16_t)(q + 1);
		break;
	case C_HEAD_OOR:
		good3(s, D, 0);
		p->head = (uint16_t)(q + 3);
		break;
	case C_HEAD_FFFF:
		good3(s, D, 0);
		p->head = 0xffff;
		break;
	case C_WRITE_HDR:
		good3(s, D, 0);
		chk_set_desc(s, D, 0, G(CHK_OFF_HDR), 16, WR | NEXT, 1);
		break;
	case C_NO_STATUS:
		chk_set_desc(s, D, 0, G(CHK_OFF_HDR), 16, 0, 0);
		break;
	case C_RW_ORDER:
		/* A readable buffer after a writable one (2.7.4.2). */
		chk_set_desc(s, D, 0, G(CHK_OFF_HDR), 16, NEXT, 1);
		chk_set_desc(s, D, 1, G(CHK_OFF_DATA), 512, WR | NEXT, 2);
		chk_set_desc(s, D, 2, G(CHK_OFF_SPARE), 16, NEXT, 3);
		chk_set_desc(s, D, 3, G(ST_OFF), 1, WR, 0);
		p->ok_allowed = true;
		break;
	case C_ZERO_LEN:
		chk_set_desc(s, D, 0, G(CHK_OFF_HDR), 16, NEXT, 1);
		chk_set_desc(s, D, 1, G(CHK_OFF_DATA), 0, WR | NEXT, 2);
		chk_set_desc(s, D, 2, G(CHK_OFF_DATA), 512, WR | NEXT, 3);
		chk_set_desc(s, D, 3, G(ST_OFF), 1, WR, 0);
		p->ok_allowed = true;
		break;
	case C_FULL_CHAIN:
		/* The longest legal chain: every descriptor of the ring. */
		chk_set_desc(s, D, 0, G(CHK_OFF_HDR), 16, NEXT, 1);
		for (unsigned i = 1; i < q - 1; i++)
			chk_set_desc(s, D, i, G(CHK_OFF_DATA + (i - 1) * 512u),
				     512, WR | NEXT, (uint16_t)(i + 1));
		chk_set_desc(s, D, q - 1, G(ST_OFF), 1, WR, 0);
		p->must_ok = p->ok_allowed = true;
		break;
	default:
		break;
	}
}

/* A valid chain: it must complete, with OK and its own head. */
static int judge_valid(struct chk_sess *s, uint16_t head, char *why)
{
	uint32_t uid, ulen;
	int r = chk_wait_used(s, s->timeout_ms, &uid, &ulen);
	if (r <= 0)
		return chk_fail(why, "valid chain %s",
				r ? "dropped the connection" : "not completed");
	if (s->mem[ST_OFF] != CHK_BLK_S_OK || uid != head)
		return chk_fail(why, "valid chain: id %u status %u", uid,
				s->mem[ST_OFF]);
	return chk_pass(why, "completed with OK, used len %u", ulen);
}

static int c_chain(struct chk_ctx *c, const void *arg, char *why)
{
	enum chain_id id = chk_case_id(arg);
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_RUNNING, why);
	struct chain_plan p = { .head = 0, .adv = 1 };

	hdr(&s, CHK_BLK_T_IN, 0);
	if (!chain_indirect(&s, id, &p))
		chain_direct(&s, id, &p);
	int r = chk_publish(&s, p.head, p.adv);
	if (r < 0)
		return chk_done(&s, chk_fail(why, "kick: %s", strerror(-r)));
	if (p.must_ok)
		return chk_done(&s, judge_valid(&s, p.head, why));
	return chk_done(&s, chk_judge_ring(&s, s.mem + ST_OFF, p.ok_allowed,
					   why));
}

/* The chains carry virtio-blk requests (their status byte is the verdict). */
#define CHAIN(name, i) CHK_CASE_BLK(name, c_chain, i)

const struct chk_case chk_cases_chain[] = {
	CHAIN("chain/loop-of-two", C_LOOP2),
	CHAIN("chain/self-loop", C_SELF),
	CHAIN("chain/next-out-of-table", C_NEXT_OOR),
	CHAIN("chain/next-0xffff", C_NEXT_FFFF),
	CHAIN("chain/indirect-nested", C_IND_NESTED),
	CHAIN("chain/indirect-empty", C_IND_EMPTY),
	CHAIN("chain/indirect-len-not-multiple-of-16", C_IND_ODD),
	CHAIN("chain/indirect-unmapped", C_IND_UNMAPPED),
	CHAIN("chain/indirect-loop", C_IND_LOOP),
	CHAIN("chain/indirect-next-out-of-table", C_IND_NEXT_OOR),
	CHAIN("chain/indirect-len-huge", C_IND_HUGE),
	CHAIN("chain/indirect-with-next", C_IND_WITH_NEXT),
	CHAIN("chain/indirect-valid", C_IND_GOOD),
	CHAIN("chain/addr-len-overflow", C_ADDR_OVF),
	CHAIN("chain/buffer-unmapped", C_UNMAPPED),
	CHAIN("chain/buffer-partly-unmapped", C_PARTIAL),
	CHAIN("chain/buffer-len-huge", C_LEN_HUGE),
	CHAIN("chain/avail-index-jump", C_AVAIL_JUMP),
	CHAIN("chain/head-out-of-range", C_HEAD_OOR),
	CHAIN("chain/head-0xffff", C_HEAD_FFFF),
	CHAIN("chain/header-device-writable", C_WRITE_HDR),
	CHAIN("chain/no-writable-status", C_NO_STATUS),
	CHAIN("chain/readable-after-writable", C_RW_ORDER),
	CHAIN("chain/zero-length-buffer", C_ZERO_LEN),
	CHAIN("chain/full-ring-chain", C_FULL_CHAIN),
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};
