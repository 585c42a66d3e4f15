/* SPDX-License-Identifier: MIT */
/* A ring of either layout behind one interface (see ring-any.h). */
#include <errno.h>
#include <string.h>

#include "ring-any.h"

#define RA_MAX_BUFS 64

/* Both drivers' options have these fields, by the same names. */
#define RA_DRIVER_OPTS(o)                                              \
	{ .size = (o)->size, .split_at = (o)->split_at,                \
	  .event_idx = (o)->event_idx, .indirect = (o)->indirect }

int ra_init(struct ra *r, bool packed, const struct ra_opts *o)
{
	memset(r, 0, sizeof(*r));
	r->packed = packed;
	if (packed) {
		r->g = &r->pd.g;
		r->vq = &r->pd.vq;
		return pd_init(&r->pd, &(struct pd_opts)RA_DRIVER_OPTS(o));
	}
	r->g = &r->rd.g;
	r->vq = &r->rd.vq;
	return rd_init(&r->rd, &(struct rd_opts)RA_DRIVER_OPTS(o));
}

void ra_fini(struct ra *r)
{
	if (!r->g || !r->g->host)
		return;
	if (r->packed)
		pd_fini(&r->pd);
	else
		rd_fini(&r->rd);
	r->g = NULL;
}

static uint16_t ra_add_any(struct ra *r, const struct ra_buf *b, unsigned n,
			   bool indirect)
{
	if (n > RA_MAX_BUFS)
		n = RA_MAX_BUFS;
	if (r->packed) {
		struct pd_buf pb[RA_MAX_BUFS];
		for (unsigned i = 0; i < n; i++)
			pb[i] = (struct pd_buf){ b[i].gpa, b[i].len, b[i].write };
		uint16_t id = (uint16_t)(r->next_id++ % r->pd.size);
		if (indirect)
			pd_add_indirect(&r->pd, pb, n, id);
		else
			pd_add(&r->pd, pb, n, id);
		return id;
	}
	struct rd_buf sb[RA_MAX_BUFS];
	for (unsigned i = 0; i < n; i++)
		sb[i] = (struct rd_buf){ b[i].gpa, b[i].len, b[i].write };
	return indirect ? rd_add_indirect(&r->rd, sb, n) :
			  rd_add_chain(&r->rd, sb, n);
}

uint16_t ra_add(struct ra *r, const struct ra_buf *b, unsigned n)
{
	return ra_add_any(r, b, n, false);
}

uint16_t ra_add_indirect(struct ra *r, const struct ra_buf *b, unsigned n)
{
	return ra_add_any(r, b, n, true);
}

int ra_get_used(struct ra *r, uint32_t *id, uint32_t *len)
{
	if (!r->packed)
		return rd_get_used(&r->rd, id, len);
	uint16_t pid;
	int got = pd_get_used(&r->pd, &pid, len);
	if (got == 1)
		*id = pid;
	return got;
}

uint64_t ra_calls(struct ra *r)
{
	return r->packed ? pd_calls(&r->pd) : rd_calls(&r->rd);
}
