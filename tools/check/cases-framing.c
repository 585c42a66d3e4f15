/* SPDX-License-Identifier: MIT */
/*
 * Hostile single messages: framing (vhost-user.rst "Header": size, version
 * bits, REPLY flag, reserved bits, ids, fds) and device configuration
 * requests (the seed: offset + size bounds, size <= 256, read-only
 * fields).  Each runs on a fresh connection.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "check.h"

#define ACK UINT32_MAX
#define SAME UINT32_MAX
#define F1 VHU_MSG_VERSION
#define FACK (VHU_MSG_VERSION | VHU_MSG_NEED_REPLY)

struct msg_case {
	enum chk_level level;
	uint32_t req, flags, size; /* header as sent */
	uint32_t send_len;         /* payload bytes sent (SAME: size) */
	unsigned nfds;             /* eventfds attached */
	uint32_t body;             /* ACK, or the size of a valid reply */
	enum chk_expect exp;
	bool halfclose;            /* shutdown(SHUT_WR) after sending */
	uint8_t payload[24];       /* first bytes of the payload */
	uint8_t hdr_len;           /* header bytes sent, 0: all 12 */
};

static int c_msg(struct chk_ctx *c, const void *arg, char *why)
{
	const struct msg_case *m = arg;
	struct chk_sess s;
	static uint8_t buf[sizeof(struct vhu_msg_hdr) + 4096];
	int fds[16];
	unsigned n = 0;

	CHK_FRESH(c, &s, m->level, why);
	uint32_t len = m->send_len == SAME ? m->size : m->send_len;
	if (len > sizeof(buf) - 12)
		len = sizeof(buf) - 12;
	struct vhu_msg_hdr h = { m->req, m->flags, m->size };
	memset(buf, 0, sizeof(buf));
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 12, m->payload, len < sizeof(m->payload) ?
	       len : sizeof(m->payload));
	for (; n < m->nfds && n < 16; n++) {
		fds[n] = eventfd(0, EFD_CLOEXEC);
		if (fds[n] < 0) {
			vhu__close_fds(fds, n);
			return chk_done(&s, chk_fail(why, "eventfd: %s",
						     strerror(errno)));
		}
	}
	size_t total = m->hdr_len ? m->hdr_len : 12 + len;
	int r = chk_send_raw(s.fd, buf, total, fds, n);
	vhu__close_fds(fds, n);
	if (r < 0)
		return chk_done(&s, r == -EPIPE || r == -ECONNRESET ?
				chk_pass(why, "connection dropped while sending") :
				chk_fail(why, "send: %s", strerror(-r)));
	if (m->halfclose) {
		shutdown(s.fd, SHUT_WR);
		return chk_done(&s, chk_judge_eof(&s, why));
	}
	return chk_done(&s, chk_judge(&s, m->req, m->body, m->exp, why));
}

/* A case: its name and the fields of its msg_case. */
#define MSG(name, ...) \
	{ name, c_msg, &(const struct msg_case){ __VA_ARGS__ }, CHK_PROBE_IO, false }

#define U32LE(v) (uint8_t)(v), (uint8_t)((v) >> 8), (uint8_t)((v) >> 16),    \
		 (uint8_t)((v) >> 24)

const struct chk_case chk_cases_framing[] = {
	MSG("framing/size-over-max", CHK_CONNECTED, VHU_REQ_GET_FEATURES, F1,
	    4096, SAME, 0, 8, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/size-0xffffffff", CHK_CONNECTED, VHU_REQ_SET_FEATURES,
	    FACK, 0xffffffffu, 0, 0, ACK, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/truncated-header", CHK_CONNECTED, VHU_REQ_GET_FEATURES,
	    F1, 0, 0, 0, 8, CHK_EXPECT_REJECT, true, { 0 }, 6),
	MSG("framing/truncated-payload", CHK_NEGOTIATED, VHU_REQ_SET_VRING_NUM,
	    FACK, 8, 4, 0, ACK, CHK_EXPECT_REJECT, true, { 0 }, 0),
	MSG("framing/version-0", CHK_CONNECTED, VHU_REQ_GET_FEATURES, 0, 0,
	    SAME, 0, 8, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/version-2", CHK_CONNECTED, VHU_REQ_GET_FEATURES, 2, 0,
	    SAME, 0, 8, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/version-3", CHK_CONNECTED, VHU_REQ_GET_FEATURES, 3, 0,
	    SAME, 0, 8, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/reply-flag-on-request", CHK_CONNECTED,
	    VHU_REQ_GET_FEATURES, VHU_MSG_REPLY | F1, 0, SAME, 0, 8,
	    CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/unknown-flag-bits", CHK_CONNECTED, VHU_REQ_GET_FEATURES,
	    F1 | 0x100 | 0x80000000u, 0, SAME, 0, 8, CHK_EXPECT_ANY, false,
	    { 0 }, 0),
	MSG("framing/need-reply-on-get", CHK_CONNECTED, VHU_REQ_GET_FEATURES,
	    FACK, 0, SAME, 0, 8, CHK_EXPECT_ANY, false, { 0 }, 0),
	MSG("framing/unknown-id-0", CHK_NEGOTIATED, 0, FACK, 0, SAME, 0, ACK,
	    CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/unknown-id-46", CHK_NEGOTIATED, 46, FACK, 0, SAME, 0, ACK,
	    CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/unknown-id-9999", CHK_NEGOTIATED, 9999, FACK, 8, SAME, 0,
	    ACK, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/unknown-id-0xffffffff", CHK_NEGOTIATED, 0xffffffffu, FACK,
	    0, SAME, 0, ACK, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/extra-fd-on-get-features", CHK_CONNECTED,
	    VHU_REQ_GET_FEATURES, F1, 0, SAME, 1, 8, CHK_EXPECT_ANY, false,
	    { 0 }, 0),
	MSG("framing/nine-fds", CHK_CONNECTED, VHU_REQ_GET_FEATURES, F1, 0,
	    SAME, 9, 8, CHK_EXPECT_ANY, false, { 0 }, 0),
	MSG("framing/sixteen-fds-on-mem-table", CHK_NEGOTIATED,
	    VHU_REQ_SET_MEM_TABLE, FACK, 8, SAME, 16, ACK, CHK_EXPECT_REJECT,
	    false, { 1 }, 0),
	MSG("framing/fds-on-set-owner", CHK_NEGOTIATED, VHU_REQ_SET_OWNER,
	    FACK, 0, SAME, 2, ACK, CHK_EXPECT_ANY, false, { 0 }, 0),
	MSG("framing/u64-payload-short", CHK_NEGOTIATED, VHU_REQ_SET_FEATURES,
	    FACK, 4, SAME, 0, ACK, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/u64-payload-long", CHK_NEGOTIATED, VHU_REQ_SET_FEATURES,
	    FACK, 16, SAME, 0, ACK, CHK_EXPECT_ANY, false, { 0 }, 0),
	MSG("framing/payload-on-get-features", CHK_CONNECTED,
	    VHU_REQ_GET_FEATURES, F1, 8, SAME, 0, 8, CHK_EXPECT_ANY, false,
	    { 0 }, 0),
	MSG("framing/vring-state-short", CHK_NEGOTIATED, VHU_REQ_SET_VRING_NUM,
	    FACK, 4, SAME, 0, ACK, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("framing/protocol-features-all-bits", CHK_CONNECTED,
	    VHU_REQ_SET_PROTOCOL_FEATURES, FACK, 8, SAME, 0, ACK,
	    CHK_EXPECT_ANY, false,
	    { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 0),
	MSG("framing/features-all-bits", CHK_NEGOTIATED, VHU_REQ_SET_FEATURES,
	    FACK, 8, SAME, 0, ACK, CHK_EXPECT_ANY, false,
	    { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 0),
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};

/* ------------------------------------------------------------- config */

#define CFG(off, size, flags) { U32LE(off), U32LE(size), U32LE(flags) }

const struct chk_case chk_cases_config[] = {
	MSG("config/get-size-0", CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1, 12,
	    SAME, 0, 12, CHK_EXPECT_ANY, false, CFG(0, 0, 0), 0),
	MSG("config/get-size-257", CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1,
	    12 + 257, SAME, 0, 12 + 257, CHK_EXPECT_REJECT, false,
	    CFG(0, 257, 0),
	    0),
	MSG("config/get-offset-0xffffffff", CHK_NEGOTIATED, VHU_REQ_GET_CONFIG,
	    F1, 12 + 4, SAME, 0, 12 + 4, CHK_EXPECT_REJECT, false,
	    CFG(0xffffffffu, 4, 0), 0),
	MSG("config/get-offset-size-overflow", CHK_NEGOTIATED,
	    VHU_REQ_GET_CONFIG, F1, 12 + 8, SAME, 0, 12 + 8, CHK_EXPECT_REJECT,
	    false, CFG(0xfffffffcu, 8, 0), 0),
	MSG("config/get-size-overflow", CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1,
	    12 + 8, SAME, 0, 12 + 8, CHK_EXPECT_REJECT, false,
	    CFG(8, 0xfffffffcu, 0), 0),
	MSG("config/get-size-exceeds-payload", CHK_NEGOTIATED,
	    VHU_REQ_GET_CONFIG, F1, 12 + 4, SAME, 0, 12 + 200,
	    CHK_EXPECT_REJECT, false, CFG(0, 200, 0), 0),
	MSG("config/get-short-header", CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1,
	    8, SAME, 0, 12, CHK_EXPECT_REJECT, false, CFG(0, 0, 0), 0),
	MSG("config/get-beyond-end", CHK_NEGOTIATED, VHU_REQ_GET_CONFIG, F1,
	    12 + 16, SAME, 0, 12 + 16, CHK_EXPECT_REJECT, false,
	    CFG(250, 16, 0),
	    0),
	MSG("config/set-capacity-flags-0", CHK_NEGOTIATED, VHU_REQ_SET_CONFIG,
	    FACK, 12 + 8, SAME, 0, ACK, CHK_EXPECT_REJECT, false, { U32LE(0),
	    U32LE(8), U32LE(0), 1, 2, 3 }, 0),
	MSG("config/set-size-257", CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK,
	    12 + 257, SAME, 0, ACK, CHK_EXPECT_REJECT, false, CFG(32, 257, 0),
	    0),
	MSG("config/set-beyond-end", CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK,
	    12 + 16, SAME, 0, ACK, CHK_EXPECT_REJECT, false, CFG(250, 16, 0),
	    0),
	MSG("config/set-offset-0xffffffff", CHK_NEGOTIATED, VHU_REQ_SET_CONFIG,
	    FACK, 12 + 1, SAME, 0, ACK, CHK_EXPECT_REJECT, false,
	    CFG(0xffffffffu, 1, 0), 0),
	MSG("config/set-size-exceeds-payload", CHK_NEGOTIATED,
	    VHU_REQ_SET_CONFIG, FACK, 12 + 1, SAME, 0, ACK, CHK_EXPECT_REJECT,
	    false, CFG(32, 8, 0), 0),
	MSG("config/set-short-header", CHK_NEGOTIATED, VHU_REQ_SET_CONFIG,
	    FACK, 6, SAME, 0, ACK, CHK_EXPECT_REJECT, false, CFG(32, 1, 0), 0),
	MSG("config/set-num-queues", CHK_NEGOTIATED, VHU_REQ_SET_CONFIG, FACK,
	    12 + 2, SAME, 0, ACK, CHK_EXPECT_REJECT, false, { U32LE(34),
	    U32LE(2), U32LE(0), 0x40 }, 0),
	MSG("config/set-unknown-flags", CHK_NEGOTIATED, VHU_REQ_SET_CONFIG,
	    FACK, 12 + 1, SAME, 0, ACK, CHK_EXPECT_ANY, false,
	    CFG(32, 1, 0xff),
	    0),
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};

/* ------------------------------------------------- other requests */
/*
 * Requests the checker never negotiates the feature for (they must be
 * refused), and body-less control requests sent with broken fds.  Notes
 * section 6: inflight fds leaked by repeated requests, queue counts beyond
 * the rings, fds on requests that take none.
 */
#define INFL(nq) { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,      \
		   (uint8_t)(nq), (uint8_t)((nq) >> 8), 128, 0 }

const struct chk_case chk_cases_request[] = {
	MSG("request/get-inflight-fd-not-negotiated", CHK_NEGOTIATED,
	    VHU_REQ_GET_INFLIGHT_FD, F1, 20, SAME, 0, 20, CHK_EXPECT_REJECT,
	    false, INFL(1), 0),
	MSG("request/set-inflight-fd-1000-queues", CHK_NEGOTIATED,
	    VHU_REQ_SET_INFLIGHT_FD, FACK, 20, SAME, 1, ACK, CHK_EXPECT_REJECT,
	    false, INFL(1000), 0),
	MSG("request/set-log-base-without-fd", CHK_NEGOTIATED,
	    VHU_REQ_SET_LOG_BASE, FACK, 16, SAME, 0, ACK, CHK_EXPECT_REJECT,
	    false, { 0, 0x10 }, 0),
	MSG("request/set-log-fd", CHK_NEGOTIATED, VHU_REQ_SET_LOG_FD, FACK, 0,
	    SAME, 1, ACK, CHK_EXPECT_ANY, false, { 0 }, 0),
	MSG("request/backend-req-fd-without-fd", CHK_CONNECTED,
	    VHU_REQ_SET_BACKEND_REQ_FD, FACK, 0, SAME, 0, ACK,
	    CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("request/backend-req-fd-not-a-socket", CHK_NEGOTIATED,
	    VHU_REQ_SET_BACKEND_REQ_FD, FACK, 0, SAME, 1, ACK, CHK_EXPECT_ANY,
	    false, { 0 }, 0),
	MSG("request/reset-owner-while-running", CHK_RUNNING,
	    VHU_REQ_RESET_OWNER, FACK, 0, SAME, 0, ACK, CHK_EXPECT_ANY, false,
	    { 0 }, 0),
	MSG("request/reset-device-while-running", CHK_RUNNING,
	    VHU_REQ_RESET_DEVICE, FACK, 0, SAME, 0, ACK, CHK_EXPECT_ANY, false,
	    { 0 }, 0),
	MSG("request/set-status-all-bits", CHK_RUNNING, VHU_REQ_SET_STATUS,
	    FACK, 8, SAME, 0, ACK, CHK_EXPECT_ANY, false,
	    { 0xff, 0xff, 0xff, 0xff }, 0),
	MSG("request/iotlb-msg-not-negotiated", CHK_MAPPED, VHU_REQ_IOTLB_MSG,
	    FACK, 64, SAME, 0, ACK, CHK_EXPECT_REJECT, false, { 0xff, 0xff },
	    0),
	MSG("request/postcopy-advise-not-negotiated", CHK_MAPPED,
	    VHU_REQ_POSTCOPY_ADVISE, FACK, 0, SAME, 0, ACK, CHK_EXPECT_REJECT,
	    false, { 0 }, 0),
	MSG("request/gpu-set-socket", CHK_NEGOTIATED, VHU_REQ_GPU_SET_SOCKET,
	    FACK, 0, SAME, 1, ACK, CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("request/device-state-fd-not-negotiated", CHK_NEGOTIATED,
	    VHU_REQ_SET_DEVICE_STATE_FD, FACK, 8, SAME, 1, ACK,
	    CHK_EXPECT_REJECT, false, { 0 }, 0),
	MSG("request/get-vring-base-while-running", CHK_RUNNING,
	    VHU_REQ_GET_VRING_BASE, F1, 8, SAME, 0, 8, CHK_EXPECT_ANY, false,
	    { 0 }, 0),
	{ NULL, NULL, NULL, CHK_PROBE_NONE, false },
};
