/* SPDX-License-Identifier: MIT */
/*
 * Verified I/O through the library's own front-end and split-ring driver
 * (include/vhu/frontend.h): a second, independent driver next to the
 * checker's hand-written ring, with whatever memory registration the
 * back-end offers (ADD_MEM_REG when CONFIGURE_MEM_SLOTS is there) and
 * several requests in flight at once.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <vhu/frontend.h>

#include "internal.h"
#include "check.h"

enum { NREQ = 16, LEN = 4096 };

struct fe_req {
	uint8_t hdr[16];
	uint8_t status;
};

static int submit(struct vhu_fe_vq *vq, struct vhu_fe *fe, struct fe_req *r,
		  uint8_t *data, uint32_t type, uint64_t sector, char *why)
{
	memcpy(r->hdr, &type, 4);
	memset(r->hdr + 4, 0, 4);
	memcpy(r->hdr + 8, &sector, 8);
	r->status = 0xff;
	struct vhu_fe_buf h = { vhu_fe_gpa(fe, r->hdr), 16 };
	struct vhu_fe_buf d = { vhu_fe_gpa(fe, data), LEN };
	struct vhu_fe_buf st = { vhu_fe_gpa(fe, &r->status), 1 };
	struct vhu_fe_buf in[2] = { d, st };
	struct vhu_fe_buf out[2] = { h, d };
	int id = type == CHK_BLK_T_OUT ?
		 vhu_fe_vq_add(vq, out, 2, &st, 1, r) :
		 vhu_fe_vq_add(vq, &h, 1, in, 2, r);
	if (id < 0)
		return chk_fail(why, "vhu_fe_vq_add: %s", strerror(-id));
	return 0;
}

/* Submit NREQ requests of one type at once, then collect them all. */
static int batch(struct vhu_fe_vq *vq, struct vhu_fe *fe, struct fe_req *reqs,
		 uint8_t **bufs, uint32_t type, int timeout_ms, char *why)
{
	for (unsigned i = 0; i < NREQ; i++)
		if (submit(vq, fe, &reqs[i], bufs[i], type,
			   (uint64_t)i * (LEN / 512), why) < 0)
			return -1;
	int r = vhu_fe_vq_kick(vq);
	if (r < 0)
		return chk_fail(why, "vhu_fe_vq_kick: %s", strerror(-r));
	unsigned done = 0;
	while (done < NREQ) {
		void *data;
		uint32_t len;
		r = vhu_fe_vq_get_used(vq, &data, &len);
		if (r < 0)
			return chk_fail(why, "vhu_fe_vq_get_used: %s",
					strerror(-r));
		if (r == 1) {
			struct fe_req *q = data;
			if (q->status != CHK_BLK_S_OK)
				return chk_fail(why, "request type %u status "
						"%u", type, q->status);
			done++;
			continue;
		}
		r = vhu_fe_vq_wait(vq, timeout_ms);
		if (r < 0)
			return chk_fail(why, "vhu_fe_vq_wait: %s", strerror(-r));
		if (r == 0)
			return chk_fail(why, "%u of %u requests completed "
					"within %d ms", done, NREQ, timeout_ms);
	}
	return 0;
}

static int c_fe_io(struct chk_ctx *c, const void *arg, char *why)
{
	struct vhu_fe *fe = NULL;
	struct vhu_fe_vq *vq = NULL;
	struct vhu_fe_opts o = {
		.connect_timeout_ms = c->timeout_ms + 2000,
		.timeout_ms = c->timeout_ms,
	};
	int r = vhu_fe_connect(&fe, c->path, &o);
	if (r < 0)
		return chk_fail(why, "vhu_fe_connect: %s", strerror(-r));
	if (c->capacity < NREQ * (LEN / 512)) {
		vhu_fe_close(fe);
		return chk_fail(why, "capacity too small");
	}
	uint64_t want = VHU_BIT(VHU_F_VERSION_1) |
			VHU_BIT(VHU_F_INDIRECT_DESC) | VHU_BIT(VHU_F_EVENT_IDX) |
			0x00ffffffull;
	r = vhu_fe_set_features(fe, want);
	if (r == 0)
		r = vhu_fe_add_memory(fe, 1u << 20);
	if (r == 0)
		r = vhu_fe_vq_setup(fe, 0, 64, &vq);
	if (r < 0) {
		vhu_fe_close(fe);
		return chk_fail(why, "front-end set-up: %s", strerror(-r));
	}
	uint64_t gpa;
	struct fe_req *reqs = vhu_fe_alloc(fe, sizeof(*reqs) * NREQ, 64, &gpa);
	uint8_t *bufs[NREQ];
	uint8_t *want_data = vhu_fe_alloc(fe, (size_t)LEN * NREQ, 4096, &gpa);
	for (unsigned i = 0; i < NREQ; i++)
		bufs[i] = vhu_fe_alloc(fe, LEN, 4096, &gpa);
	if (!reqs || !want_data || !bufs[NREQ - 1]) {
		vhu_fe_close(fe);
		return chk_fail(why, "guest memory exhausted");
	}
	for (unsigned i = 0; i < NREQ; i++)
		for (unsigned j = 0; j < LEN; j++)
			bufs[i][j] = want_data[i * LEN + j] =
				(uint8_t)(i * 31 + j * 7 + 1);
	int rc = batch(vq, fe, reqs, bufs, CHK_BLK_T_OUT, c->timeout_ms, why);
	if (rc == 0) {
		for (unsigned i = 0; i < NREQ; i++)
			memset(bufs[i], chk_null_disk ? 0xa5 : 0, LEN);
		if (chk_null_disk)
			memset(want_data, 0, (size_t)NREQ * LEN);
		rc = batch(vq, fe, reqs, bufs, CHK_BLK_T_IN, c->timeout_ms,
			   why);
	}
	for (unsigned i = 0; rc == 0 && i < NREQ; i++)
		if (memcmp(bufs[i], want_data + (size_t)i * LEN, LEN) != 0)
			rc = chk_fail(why, "request %u read back differs", i);
	uint32_t base = 0;
	if (rc == 0 && (r = vhu_fe_vq_stop(fe, 0, &base)) < 0)
		rc = chk_fail(why, "vhu_fe_vq_stop: %s", strerror(-r));
	if (rc == 0 && base != 2 * NREQ)
		rc = chk_fail(why, "ring stopped at %u, expected %u", base,
			      2 * NREQ);
	uint64_t negotiated = vhu_fe_features(fe);
	vhu_fe_close(fe);
	if (rc < 0)
		return -1;
	return chk_pass(why, "%u x 4 KiB in flight at once, written and read "
			"back, stopped at %u (EVENT_IDX %s)", NREQ, base,
			negotiated & VHU_BIT(VHU_F_EVENT_IDX) ? "on" : "off");
}

const struct chk_case chk_cases_fe[] = {
	{ "conf/verified-io-frontend-library", c_fe_io, NULL, CHK_PROBE_NONE,
	  true },
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};
