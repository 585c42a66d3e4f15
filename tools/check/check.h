/* SPDX-License-Identifier: MIT */
/*
 * vhu check: a conformance and robustness checker for vhost-user
 * back-ends (virtio-blk in depth, other devices through tools/devices).  It plays the front-end over the raw wire format (so that it
 * can also send what no well-behaved front-end would), drives a split ring
 * of its own in shared memfd memory, and judges the back-end's answers.
 */
#ifndef VHU_CHECK_H
#define VHU_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blk.h"
#include "device.h"
#include "proto.h"

/* Entry point shared by the standalone vhu-check and `vhu check`. */
int vhu_check_main(int argc, char **argv);

/* ------------------------------------------------------------ raw.c */

/* Guest memory layout inside the session's memfd (offsets). */
#define CHK_MEM_SIZE     (1u << 20)
#define CHK_GPA_BASE     0x100000000ull /* distinct from 0 and from uva */
#define CHK_OFF_DESC     0x0000u
#define CHK_OFF_AVAIL    0x1000u
#define CHK_OFF_USED     0x2000u
#define CHK_OFF_INDIRECT 0x3000u
#define CHK_OFF_HDR      0x4000u  /* request headers, status bytes */
#define CHK_OFF_DATA     0x10000u /* 64 KiB data buffer */
#define CHK_OFF_DATA2    0x20000u /* second 64 KiB buffer */
#define CHK_OFF_SPARE    0x40000u
#define CHK_QSIZE        128u

/* virtio-blk: the blk module's constants (tools/devices/blk.h) under the
 * names the block cases use. */
#define CHK_BLK_T_IN      BLK_T_IN
#define CHK_BLK_T_OUT     BLK_T_OUT
#define CHK_BLK_T_FLUSH   BLK_T_FLUSH
#define CHK_BLK_T_GET_ID  BLK_T_GET_ID
#define CHK_BLK_T_DISCARD BLK_T_DISCARD
#define CHK_BLK_T_WRITE_ZEROES BLK_T_WRITE_ZEROES
#define CHK_BLK_S_OK     BLK_S_OK
#define CHK_BLK_S_IOERR  BLK_S_IOERR
#define CHK_BLK_S_UNSUPP BLK_S_UNSUPP
#define CHK_BLK_F_RO     BLK_F_RO
#define CHK_BLK_F_CONFIG_WCE BLK_F_CONFIG_WCE
#define CHK_BLK_F_MQ     BLK_F_MQ
#define CHK_BLK_F_DISCARD BLK_F_DISCARD

struct chk_sess {
	int fd;                 /* the vhost-user socket, -1 when closed */
	int timeout_ms;
	uint64_t features;      /* offered by the back-end */
	uint64_t pfeatures;     /* offered protocol features */
	uint64_t acked;         /* SET_FEATURES value */
	uint64_t acked_pf;      /* SET_PROTOCOL_FEATURES value */
	bool have_pf;           /* PROTOCOL_FEATURES offered */
	bool want_log;          /* set before chk_open: negotiate LOG_SHMFD */
	unsigned queue_num;     /* GET_QUEUE_NUM, 0 without MQ */
	unsigned max_slots;     /* GET_MAX_MEM_SLOTS, 0 when not offered */
	int breq_fd;            /* our end of the back-end channel, -1 none */

	int memfd;
	uint8_t *mem;           /* CHK_MEM_SIZE bytes, shared */

	/* queue 0 */
	unsigned qsize;
	int kick_fd, call_fd;
	uint16_t avail_idx;     /* next avail index we publish */
	uint16_t used_seen;     /* used index we consumed up to */

	uint64_t capacity;      /* sectors, from GET_CONFIG */
	bool dropped;           /* the peer closed the connection */
	unsigned replies;       /* messages received on this connection */
};

/* Why a request failed; the last error text of a session. */
#define CHK_WHY 256

void chk_sess_init(struct chk_sess *s, int timeout_ms);
void chk_sess_close(struct chk_sess *s);
int chk_connect(struct chk_sess *s, const char *path, char *why);
/* Connect and run the handshake (or, without handshake, just one
 * GET_FEATURES), retrying while the back-end closes new connections
 * before answering anything. */
int chk_open(struct chk_sess *s, const char *path, bool handshake, char *why);

/* Send arbitrary bytes with any number of fds (up to 16); 0 or -errno. */
int chk_send_raw(int fd, const void *buf, size_t len, const int *fds,
		 unsigned nfds);
/* Send a message: header fields as given, payload of size bytes. */
int chk_send(struct chk_sess *s, uint32_t req, uint32_t flags,
	     const void *payload, uint32_t size, const int *fds, unsigned nfds);
/*
 * Receive one message within timeout_ms.  1 got one (any fds closed and
 * counted in *nfds_out when not NULL), 0 connection closed, -ETIMEDOUT
 * nothing came, other -errno (broken framing).
 */
int chk_recv(struct chk_sess *s, struct vhu_msg *m, int timeout_ms,
	     unsigned *nfds_out);
/*
 * Check a reply: request id, flags exactly REPLY|1, size == want_size,
 * no fds.  0 or -EPROTO with why set.
 */
int chk_check_reply(const struct vhu_msg *m, uint32_t req, uint32_t want_size,
		    unsigned nfds, char *why);

/*
 * A GET_CONFIG error reply: vhost-user.rst has the back-end answer with
 * "zero length of payload"; both an empty message (size 0) and a config
 * header whose size field is 0 (size 12) are taken as that.  Returns the
 * description, or NULL when m is not an error reply.
 */
const char *chk_config_error(const struct vhu_msg *m, unsigned nfds);

/* Request with a reply body (GET_*); reply copied to *out. */
int chk_get(struct chk_sess *s, uint32_t req, const void *payload,
	    uint32_t size, uint32_t reply_size, struct vhu_msg *out, char *why);
int chk_get_u64(struct chk_sess *s, uint32_t req, uint64_t *val, char *why);
/*
 * Request without a reply body.  With REPLY_ACK negotiated it carries
 * NEED_REPLY and the ack is checked (-EREMOTEIO when non-zero).
 */
int chk_set(struct chk_sess *s, uint32_t req, const void *payload,
	    uint32_t size, const int *fds, unsigned nfds, char *why);
int chk_set_u64(struct chk_sess *s, uint32_t req, uint64_t val, char *why);

/* Handshake in QEMU's order (see raw.c); checks every reply. */
int chk_handshake(struct chk_sess *s, char *why);
/* GET_CONFIG offset/size into buf; -EREMOTEIO on a size-0 reply. */
int chk_get_config(struct chk_sess *s, uint32_t off, uint32_t size,
		   void *buf, char *why);
/* memfd memory registered with SET_MEM_TABLE. */
int chk_mem_create(struct chk_sess *s, char *why);
int chk_mem_register(struct chk_sess *s, char *why);
/* Address helpers for the session's memory. */
uint64_t chk_gpa(const struct chk_sess *s, uint32_t off);
uint64_t chk_uva(const struct chk_sess *s, uint32_t off);
/* Queue 0 of qsize entries at the layout above, starting at base. */
int chk_ring_setup(struct chk_sess *s, unsigned qsize, uint16_t base,
		   char *why);
/* Everything up to a running queue 0: connect, handshake, memory, ring. */
int chk_session_ready(struct chk_sess *s, const char *path, char *why);

/* Descriptor table helpers: desc i at CHK_OFF_DESC, or an indirect table. */
struct vhu_vring_desc *chk_desc(struct chk_sess *s, uint32_t table_off,
				unsigned i);
void chk_set_desc(struct chk_sess *s, uint32_t table_off, unsigned i,
		  uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
/* Publish head in the avail ring (idx advanced by adv, usually 1) and
 * kick. */
int chk_publish(struct chk_sess *s, uint16_t head, uint16_t adv);
/*
 * Wait for a used element: 1 got (id, len), 0 none within timeout, -EPIPE
 * the connection dropped meanwhile.
 */
int chk_wait_used(struct chk_sess *s, int timeout_ms, uint32_t *id,
		  uint32_t *len);
/*
 * A well-formed virtio-blk request of type at sector with len data bytes
 * at CHK_OFF_DATA (header, data, status in three descriptors).  *status
 * receives the device's status byte.  0 when completed, -ETIMEDOUT,
 * -EPIPE, -EPROTO (bad used element).
 */
int chk_blk_req(struct chk_sess *s, uint32_t type, uint64_t sector,
		uint32_t len, uint8_t *status, char *why);
/* OUT a seeded pattern then IN it back and compare (the blk module's
 * "still serves" on this session). */
int chk_verified_io(struct chk_sess *s, unsigned seed, char *why);
/* dev's "still serves" request on queue 0 of this running session. */
int chk_serves(struct chk_sess *s, const struct vhu_tool_device *dev,
	       unsigned seed, char *why);

/* ----------------------------------------------------------- judge.c */

/* What a hostile case's first answer may be. */
enum chk_expect {
	CHK_EXPECT_REJECT, /* error reply, drop, or ignored (no success) */
	CHK_EXPECT_ANY,    /* anything but a hang */
};

/*
 * After sending request req (with NEED_REPLY when has_ack, or a request
 * with a reply body when body_size != 0), judge what came back.
 * Returns 0 acceptable, -1 not, with why describing it.  A reply of
 * body_size bytes counts as success for a GET.
 */
int chk_judge(struct chk_sess *s, uint32_t req, uint32_t body_size,
	      enum chk_expect exp, char *why);
/* Send req (NEED_REPLY) and judge the answer as chk_judge does an ack
 * (body_size UINT32_MAX); a send that fails because the peer dropped the
 * connection passes. */
int chk_send_judge(struct chk_sess *s, uint32_t req, const void *payload,
		   uint32_t size, const int *fds, unsigned nfds,
		   enum chk_expect exp, char *why);
/* Is the control path alive?  0 it answers GET_FEATURES, 1 dropped,
 * -1 hang or garbage (why set). */
int chk_probe_alive(struct chk_sess *s, char *why);
/* Judge a connection the case half-closed: the peer must close too. */
int chk_judge_eof(struct chk_sess *s, char *why);
/* Judge a ring request: IOERR/UNSUPP, stopped ring or drop are fine;
 * ok_allowed lets an OK status pass too. */
int chk_judge_ring(struct chk_sess *s, const uint8_t *status, bool ok_allowed,
		   char *why);

/* ---------------------------------------------------------- cases */

struct chk_ctx;
/* How far a fresh session goes before the case takes over. */
enum chk_level {
	CHK_CONNECTED,   /* socket only */
	CHK_NEGOTIATED,  /* handshake done */
	CHK_MEMFD,       /* handshake, memfd created but not registered */
	CHK_MAPPED,      /* memory registered */
	CHK_RUNNING,     /* queue 0 running */
};
/* Set up a fresh session (connecting anew) to level; 0 or -errno. */
int chk_fresh(struct chk_ctx *c, struct chk_sess *s, enum chk_level level,
	      char *why);
/* Close the session and map rc to a case result. */
int chk_done(struct chk_sess *s, int rc);
/* In a case function: a fresh session at level, or the case fails. */
#define CHK_FRESH(c, s, level, why)                                    \
	do {                                                           \
		if (chk_fresh((c), (s), (level), (why)) < 0)           \
			return chk_done((s), -1);                      \
	} while (0)

/* --null: the disk discards writes and reads zeros, so every data check
 * expects zeros where it would expect the bytes written. */
extern bool chk_null_disk;
/* --device: what the checker knows of the back-end's device (blk unless
 * told otherwise; the device id is not on the vhost-user wire). */
extern const struct vhu_tool_device *chk_dev;

struct chk_ctx {
	const char *path;
	int timeout_ms;
	uint64_t capacity;      /* from the first session */
	uint64_t features;
	unsigned num_queues;    /* config num_queues, or GET_QUEUE_NUM, or 1 */
	uint32_t max_discard_seg;
};

/* Case result: 0 pass, 1 skip, -1 fail; why holds the explanation. */
typedef int (*chk_case_fn)(struct chk_ctx *c, const void *arg, char *why);

enum chk_probe {
	CHK_PROBE_NONE,   /* conformance: no post-case probe */
	CHK_PROBE_IO,     /* fresh session with verified I/O after the case */
};

struct chk_case {
	const char *name;
	chk_case_fn fn;
	const void *arg;
	enum chk_probe probe;
	bool blk_only;          /* sends virtio-blk requests or reads its
				 * config: skipped for other devices */
};

/* A case of a table whose cases share one function: its arg is the case's
 * number in the file's enum, carried in the pointer itself. */
#define CHK_CASE(name, fn, id) \
	{ name, fn, (const void *)(uintptr_t)(id), CHK_PROBE_IO, false }
/* The same for a case that only makes sense on virtio-blk. */
#define CHK_CASE_BLK(name, fn, id) \
	{ name, fn, (const void *)(uintptr_t)(id), CHK_PROBE_IO, true }
static inline unsigned chk_case_id(const void *arg)
{
	return (unsigned)(uintptr_t)arg;
}

/* Case tables; each ends with a zero entry. */
extern const struct chk_case chk_cases_conf[];
extern const struct chk_case chk_cases_fe[];
extern const struct chk_case chk_cases_framing[];
extern const struct chk_case chk_cases_mem[];
extern const struct chk_case chk_cases_ring[];
extern const struct chk_case chk_cases_config[];
extern const struct chk_case chk_cases_request[];
extern const struct chk_case chk_cases_chain[];
extern const struct chk_case chk_cases_blk[];
extern const struct chk_case chk_cases_migrate[];

/* why helpers */
int chk_fail(char *why, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int chk_pass(char *why, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
