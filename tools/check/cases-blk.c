/* SPDX-License-Identifier: MIT */
/*
 * Hostile virtio-blk requests on well-formed chains (virtio 1.2 5.2.6):
 * short headers, sectors past the end or wrapping, unknown types (must be
 * UNSUPP), discard/write-zeroes out of range or with too many segments,
 * GET_ID into a short buffer, writes into device-readable buffers.  Also
 * two legal but unusual framings that must work: a header split over
 * several descriptors and the status byte sharing the data descriptor.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "check.h"

#define NEXT VHU_VRING_DESC_F_NEXT
#define WR VHU_VRING_DESC_F_WRITE
#define G(off) (CHK_GPA_BASE + (off))
#define ST_OFF (CHK_OFF_HDR + 16)
#define CANARY 0xa5

enum blk_id {
	B_SHORT_HDR, B_HDR_SPLIT, B_SECTOR_OOR, B_WRITE_OOR, B_SECTOR_OVF,
	B_UNKNOWN_TYPE, B_DISCARD_SEGS, B_DISCARD_OOR, B_WZ_OOR, B_GET_ID_SHORT,
	B_IN_READONLY, B_ODD_LEN, B_FLUSH_SECTOR, B_STATUS_ONLY,
	B_STATUS_LEN_0, B_STATUS_IN_DATA, B_GET_ID,
};

static void hdr(struct chk_sess *s, uint32_t type, uint64_t sector)
{
	struct { uint32_t type, ioprio; uint64_t sector; } h = {
		type, 0, sector };
	memcpy(s->mem + CHK_OFF_HDR, &h, sizeof(h));
	s->mem[ST_OFF] = 0xff;
}

/* hdr -> data (len, flags) -> status */
static void req3(struct chk_sess *s, uint32_t type, uint64_t sector,
		 uint32_t data_off, uint32_t len, uint16_t dflags)
{
	hdr(s, type, sector);
	chk_set_desc(s, CHK_OFF_DESC, 0, G(CHK_OFF_HDR), 16, NEXT, 1);
	chk_set_desc(s, CHK_OFF_DESC, 1, G(data_off), len, dflags | NEXT, 2);
	chk_set_desc(s, CHK_OFF_DESC, 2, G(ST_OFF), 1, WR, 0);
}

static void segments(struct chk_sess *s, unsigned n, uint64_t sector)
{
	for (unsigned i = 0; i < n; i++) {
		struct { uint64_t sector; uint32_t num, flags; } seg = {
			sector + 8ull * i, 8, 0 };
		memcpy(s->mem + CHK_OFF_DATA + 16 * i, &seg, 16);
	}
}

static bool canary_ok(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != CANARY)
			return false;
	return true;
}

/* Make the chain at descriptor 0 available and wait for it: 0 when it
 * completed (*len: the used length), or -1 with why saying what failed
 * (what: the request, for the message). */
static int complete(struct chk_sess *s, const char *what, uint32_t *len,
		    char *why)
{
	uint32_t id;
	if (chk_publish(s, 0, 1) < 0)
		return chk_fail(why, "kick failed");
	int r = chk_wait_used(s, s->timeout_ms, &id, len);
	if (r <= 0)
		return chk_fail(why, "%s %s", what,
				r ? "dropped the connection" : "not completed");
	return 0;
}

/* The header split 4 + 4 + 8 over three descriptors: legal framing
 * (virtio 1.2 2.7.4 "no framing assumptions"); OUT then IN, compared. */
static int split_hdr(struct chk_sess *s, char *why)
{
	static const uint32_t types[2] = { CHK_BLK_T_OUT, CHK_BLK_T_IN };
	for (unsigned k = 0; k < 2; k++) {
		uint16_t df = k ? WR : 0;
		hdr(s, types[k], 0);
		if (k == 0)
			for (unsigned i = 0; i < 1024; i++)
				s->mem[CHK_OFF_DATA + i] = (uint8_t)(i * 7 + 3);
		else
			memset(s->mem + CHK_OFF_DATA, chk_null_disk ? 0xa5 : 0, 1024);
		chk_set_desc(s, CHK_OFF_DESC, 0, G(CHK_OFF_HDR), 4, NEXT, 1);
		chk_set_desc(s, CHK_OFF_DESC, 1, G(CHK_OFF_HDR + 4), 4, NEXT, 2);
		chk_set_desc(s, CHK_OFF_DESC, 2, G(CHK_OFF_HDR + 8), 8, NEXT, 3);
		chk_set_desc(s, CHK_OFF_DESC, 3, G(CHK_OFF_DATA), 1024,
			     df | NEXT, 4);
		chk_set_desc(s, CHK_OFF_DESC, 4, G(ST_OFF), 1, WR, 0);
		uint32_t len;
		if (complete(s, "split-header request", &len, why) < 0)
			return -1;
		if (s->mem[ST_OFF] != CHK_BLK_S_OK)
			return chk_fail(why, "split-header %s status %u",
					k ? "IN" : "OUT", s->mem[ST_OFF]);
	}
	for (unsigned i = 0; i < 1024; i++)
		if (s->mem[CHK_OFF_DATA + i] !=
		    (chk_null_disk ? 0 : (uint8_t)(i * 7 + 3)))
			return chk_fail(why, "data read back differs at %u", i);
	return chk_pass(why, "header in 3 descriptors: written and read back");
}

/* Data and status in one 513-byte writable descriptor. */
static int status_in_data(struct chk_sess *s, char *why)
{
	hdr(s, CHK_BLK_T_IN, 0);
	s->mem[CHK_OFF_DATA + 512] = 0xff;
	chk_set_desc(s, CHK_OFF_DESC, 0, G(CHK_OFF_HDR), 16, NEXT, 1);
	chk_set_desc(s, CHK_OFF_DESC, 1, G(CHK_OFF_DATA), 513, WR, 0);
	uint32_t len;
	if (complete(s, "request", &len, why) < 0)
		return -1;
	if (s->mem[CHK_OFF_DATA + 512] != CHK_BLK_S_OK)
		return chk_fail(why, "status %u", s->mem[CHK_OFF_DATA + 512]);
	return chk_pass(why, "completed with OK, used len %u", len);
}

static int c_blk(struct chk_ctx *c, const void *arg, char *why)
{
	enum blk_id id = chk_case_id(arg);
	struct chk_sess s;
	CHK_FRESH(c, &s, CHK_RUNNING, why);
	uint64_t cap = s.capacity;
	bool ok_allowed = false;
	size_t canary_off = 0, canary_len = 0;
	unsigned nseg;

	switch (id) {
	case B_SHORT_HDR:
		hdr(&s, CHK_BLK_T_IN, 0);
		chk_set_desc(&s, CHK_OFF_DESC, 0, G(CHK_OFF_HDR), 8, NEXT, 1);
		chk_set_desc(&s, CHK_OFF_DESC, 1, G(ST_OFF), 1, WR, 0);
		break;
	case B_HDR_SPLIT:
		return chk_done(&s, split_hdr(&s, why));
	case B_STATUS_IN_DATA:
		return chk_done(&s, status_in_data(&s, why));
	case B_SECTOR_OOR:
		req3(&s, CHK_BLK_T_IN, cap, CHK_OFF_DATA, 512, WR);
		break;
	case B_WRITE_OOR:
		req3(&s, CHK_BLK_T_OUT, cap - 1, CHK_OFF_DATA, 4096, 0);
		break;
	case B_SECTOR_OVF:
		req3(&s, CHK_BLK_T_IN, 0xfffffffffffffff8ull, CHK_OFF_DATA,
		     4096, WR);
		break;
	case B_UNKNOWN_TYPE:
		req3(&s, 0x55, 0, CHK_OFF_DATA, 512, WR);
		break;
	case B_DISCARD_SEGS:
		nseg = c->max_discard_seg ? c->max_discard_seg + 1 : 300;
		if (nseg > 8000)
			nseg = 8000;
		segments(&s, nseg, 0);
		req3(&s, CHK_BLK_T_DISCARD, 0, CHK_OFF_DATA, 16 * nseg, 0);
		break;
	case B_DISCARD_OOR:
	case B_WZ_OOR:
		segments(&s, 1, cap);
		req3(&s, id == B_WZ_OOR ? CHK_BLK_T_WRITE_ZEROES :
		     CHK_BLK_T_DISCARD, 0, CHK_OFF_DATA, 16, 0);
		break;
	case B_GET_ID_SHORT:
	case B_GET_ID:
		memset(s.mem + CHK_OFF_DATA, CANARY, 64);
		req3(&s, CHK_BLK_T_GET_ID, 0, CHK_OFF_DATA,
		     id == B_GET_ID ? 20 : 8, WR);
		canary_off = CHK_OFF_DATA + (id == B_GET_ID ? 20 : 8);
		canary_len = 32;
		ok_allowed = true;
		break;
	case B_IN_READONLY:
		/* The device must not write into a device-readable
		 * buffer (2.7.5). */
		memset(s.mem + CHK_OFF_DATA, CANARY, 512);
		req3(&s, CHK_BLK_T_IN, 0, CHK_OFF_DATA, 512, 0);
		canary_off = CHK_OFF_DATA;
		canary_len = 512;
		ok_allowed = true;
		break;
	case B_ODD_LEN:
		req3(&s, CHK_BLK_T_OUT, 0, CHK_OFF_DATA, 100, 0);
		ok_allowed = true;
		break;
	case B_FLUSH_SECTOR:
		hdr(&s, CHK_BLK_T_FLUSH, 0xffffffffffffffffull);
		chk_set_desc(&s, CHK_OFF_DESC, 0, G(CHK_OFF_HDR), 16, NEXT, 1);
		chk_set_desc(&s, CHK_OFF_DESC, 1, G(ST_OFF), 1, WR, 0);
		ok_allowed = true;
		break;
	case B_STATUS_ONLY:
		s.mem[ST_OFF] = 0xff;
		chk_set_desc(&s, CHK_OFF_DESC, 0, G(ST_OFF), 1, WR, 0);
		break;
	case B_STATUS_LEN_0:
		req3(&s, CHK_BLK_T_IN, 0, CHK_OFF_DATA, 512, WR);
		chk_set_desc(&s, CHK_OFF_DESC, 2, G(ST_OFF), 0, WR, 0);
		break;
	}
	int r = chk_publish(&s, 0, 1);
	if (r < 0)
		return chk_done(&s, chk_fail(why, "kick: %s", strerror(-r)));
	r = chk_judge_ring(&s, s.mem + ST_OFF, ok_allowed, why);
	if (r == 0 && id == B_UNKNOWN_TYPE && !s.dropped &&
	    s.mem[ST_OFF] != CHK_BLK_S_UNSUPP && s.mem[ST_OFF] != 0xff)
		r = chk_fail(why, "unknown type answered with status %u, not "
			     "UNSUPP", s.mem[ST_OFF]);
	if (r == 0 && canary_len && !canary_ok(s.mem + canary_off, canary_len))
		r = chk_fail(why, "device wrote outside the buffers it may "
			     "write (at guest offset 0x%zx)", canary_off);
	return chk_done(&s, r);
}

#define BLK(name, i) CHK_CASE_BLK(name, c_blk, i)

const struct chk_case chk_cases_blk[] = {
	BLK("blk/short-header", B_SHORT_HDR),
	BLK("blk/header-split-over-descriptors", B_HDR_SPLIT),
	BLK("blk/status-inside-data-descriptor", B_STATUS_IN_DATA),
	BLK("blk/read-past-end", B_SECTOR_OOR),
	BLK("blk/write-across-end", B_WRITE_OOR),
	BLK("blk/sector-len-overflow", B_SECTOR_OVF),
	BLK("blk/unknown-type", B_UNKNOWN_TYPE),
	BLK("blk/discard-too-many-segments", B_DISCARD_SEGS),
	BLK("blk/discard-past-end", B_DISCARD_OOR),
	BLK("blk/write-zeroes-past-end", B_WZ_OOR),
	BLK("blk/get-id-short-buffer", B_GET_ID_SHORT),
	BLK("blk/get-id", B_GET_ID),
	BLK("blk/in-into-readable-buffer", B_IN_READONLY),
	BLK("blk/data-not-sector-multiple", B_ODD_LEN),
	BLK("blk/flush-with-sector", B_FLUSH_SECTOR),
	BLK("blk/status-only", B_STATUS_ONLY),
	BLK("blk/status-len-0", B_STATUS_LEN_0),
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};
