/* SPDX-License-Identifier: MIT */
/*
 * Judging what a back-end did with a hostile message.  Acceptable: an
 * error reply, a dropped connection, an IOERR/UNSUPP status, a ring that
 * stops, or a message that is ignored while the connection keeps serving.
 * Not acceptable: silence on a connection that no longer answers (a hang),
 * a malformed reply, or success where the case expects a refusal.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "check.h"

/*
 * Is the control path still alive?  GET_FEATURES must be answered (or the
 * connection closed) within the timeout.  Replies still in flight for the
 * hostile request are skipped.  0 alive, 1 dropped, -1 hang/garbage.
 */
int chk_probe_alive(struct chk_sess *s, char *why)
{
	if (s->dropped)
		return 1;
	int r = chk_send(s, VHU_REQ_GET_FEATURES, VHU_MSG_VERSION, NULL, 0,
			 NULL, 0);
	if (r < 0)
		return s->dropped ? 1 : chk_fail(why, "send probe: %s",
						 strerror(-r));
	for (int tries = 0; tries < 4; tries++) {
		struct vhu_msg m;
		unsigned nfds = 0;
		r = chk_recv(s, &m, s->timeout_ms, &nfds);
		if (r == 0)
			return 1;
		if (r == -ETIMEDOUT)
			return chk_fail(why, "no answer to GET_FEATURES within "
					"%d ms (hang)", s->timeout_ms);
		if (r < 0)
			return chk_fail(why, "malformed message from the "
					"back-end: %s", strerror(-r));
		if (m.hdr.request != VHU_REQ_GET_FEATURES)
			continue;
		char w[CHK_WHY];
		if (chk_check_reply(&m, VHU_REQ_GET_FEATURES, 8, nfds, w) < 0)
			return chk_fail(why, "probe: %s", w);
		return 0;
	}
	return chk_fail(why, "stream of unexpected messages");
}


/* A refusal the peer survived (first says how it refused): a pass when
 * the peer then drops the connection or still serves, a failure when it
 * answers the probe wrongly. */
static int then_alive(struct chk_sess *s, const char *first, char *why)
{
	char w[CHK_WHY] = "";
	int r = chk_probe_alive(s, w);
	if (r < 0)
		return chk_fail(why, "%s, then %s", first, w);
	if (r == 1)
		return chk_pass(why, "%s, then connection dropped", first);
	return chk_pass(why, "%s, connection still serving", first);
}

int chk_judge(struct chk_sess *s, uint32_t req, uint32_t body_size,
	      enum chk_expect exp, char *why)
{
	struct vhu_msg m;
	unsigned nfds = 0;
	char first[CHK_WHY];
	bool ok;

	int r = chk_recv(s, &m, s->timeout_ms, &nfds);
	if (r == 0)
		return chk_pass(why, "connection dropped");
	if (r == -ETIMEDOUT) {
		snprintf(first, sizeof(first), "ignored (no reply)");
		ok = true;
	} else if (r < 0) {
		return chk_fail(why, "malformed reply: %s", strerror(-r));
	} else if (m.hdr.request != req) {
		return chk_fail(why, "reply id %u to request %u",
				m.hdr.request, req);
	} else if (m.hdr.flags != (VHU_MSG_REPLY | VHU_MSG_VERSION)) {
		return chk_fail(why, "reply flags 0x%x, not 0x5", m.hdr.flags);
	} else if (nfds) {
		return chk_fail(why, "reply carries %u fds", nfds);
	} else if (body_size == UINT32_MAX) {
		if (m.hdr.size != 8)
			return chk_fail(why, "ack of size %u", m.hdr.size);
		if (m.p.u64 != 0) {
			snprintf(first, sizeof(first), "error reply (ack %llu)",
				 (unsigned long long)m.p.u64);
			ok = true;
		} else {
			snprintf(first, sizeof(first), "accepted (ack 0)");
			ok = exp == CHK_EXPECT_ANY;
		}
	} else if (m.hdr.size == 0 || chk_config_error(&m, nfds)) {
		const char *e = chk_config_error(&m, nfds);
		snprintf(first, sizeof(first), "%s", e ? e :
			 "error reply (size 0)");
		ok = true;
	} else if (m.hdr.size == body_size) {
		snprintf(first, sizeof(first), "answered as if valid");
		ok = exp == CHK_EXPECT_ANY;
	} else {
		return chk_fail(why, "reply of size %u (expected 0 or %u)",
				m.hdr.size, body_size);
	}
	if (!ok)
		return chk_fail(why, "%s", first);

	return then_alive(s, first, why);
}

int chk_send_judge(struct chk_sess *s, uint32_t req, const void *payload,
		   uint32_t size, const int *fds, unsigned nfds,
		   enum chk_expect exp, char *why)
{
	int r = chk_send(s, req, VHU_MSG_VERSION | VHU_MSG_NEED_REPLY, payload,
			 size, fds, nfds);
	if (r < 0)
		return s->dropped ? chk_pass(why, "connection dropped") :
				    chk_fail(why, "send: %s", strerror(-r));
	return chk_judge(s, req, UINT32_MAX, exp, why);
}

int chk_judge_eof(struct chk_sess *s, char *why)
{
	for (int i = 0; i < 4; i++) {
		struct vhu_msg m;
		int r = chk_recv(s, &m, s->timeout_ms, NULL);
		if (r == 0)
			return chk_pass(why, "connection dropped");
		if (r == -ETIMEDOUT)
			return chk_fail(why, "peer kept the half-closed "
					"connection open past %d ms",
					s->timeout_ms);
		if (r < 0)
			return chk_pass(why, "connection dropped (%s)",
					strerror(-r));
	}
	return chk_fail(why, "replies to a truncated message");
}

int chk_judge_ring(struct chk_sess *s, const uint8_t *status, bool ok_allowed,
		   char *why)
{
	uint32_t id, len;
	int r = chk_wait_used(s, s->timeout_ms, &id, &len);
	char first[CHK_WHY];
	if (r < 0)
		return chk_pass(why, "connection dropped");
	if (r == 0) {
		snprintf(first, sizeof(first), "ring stopped");
	} else if (id >= s->qsize) {
		return chk_fail(why, "used element id %u out of range", id);
	} else if (*status == CHK_BLK_S_IOERR) {
		snprintf(first, sizeof(first), "IOERR status");
	} else if (*status == CHK_BLK_S_UNSUPP) {
		snprintf(first, sizeof(first), "UNSUPP status");
	} else if (*status == 0xff) {
		snprintf(first, sizeof(first),
			 "chain returned without a status (used len %u)", len);
	} else if (*status == CHK_BLK_S_OK) {
		if (!ok_allowed)
			return chk_fail(why, "completed with status OK");
		snprintf(first, sizeof(first), "status OK");
	} else {
		return chk_fail(why, "invalid status byte %u", *status);
	}
	return then_alive(s, first, why);
}

int chk_fresh(struct chk_ctx *c, struct chk_sess *s, enum chk_level level,
	      char *why)
{
	chk_sess_init(s, c->timeout_ms);
	int r = chk_open(s, c->path, level != CHK_CONNECTED, why);
	if (r < 0 || level <= CHK_NEGOTIATED)
		return r;
	r = chk_mem_create(s, why);
	if (r < 0)
		return r;
	if (level == CHK_MEMFD)
		return 0;
	r = chk_mem_register(s, why);
	if (r < 0 || level == CHK_MAPPED)
		return r;
	return chk_ring_setup(s, CHK_QSIZE, 0, why);
}

int chk_done(struct chk_sess *s, int rc)
{
	chk_sess_close(s);
	return rc < 0 ? -1 : rc;
}
