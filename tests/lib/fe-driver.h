/* SPDX-License-Identifier: MIT */
/*
 * A protocol-level front-end for the back-end tests: it writes raw
 * vhost-user messages (any bytes, any fds) on one end of a socket and
 * drives the back-end session in the same thread, so every exchange is
 * deterministic: send, let the session process, read what came back.
 */
#ifndef VHU_TEST_FE_DRIVER_H
#define VHU_TEST_FE_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include <vhu/backend.h>

#include "proto.h"
#include "util.h"

struct fe {
	struct vhu_backend *b;
	int sock;      /* our end of the main connection */
	int chan;      /* our end of the back-end channel, -1 none */
	int mem_fd;    /* memfd backing the guest memory, -1 none */
	uint8_t *mem;  /* our mapping of it */
	uint64_t mem_size;
};

/* Guest memory layout the helpers use: gpa 0 maps to uva FE_UVA. */
#define FE_UVA 0x7f1200000000ull
#define FE_MEM_SIZE (1u << 20)
/* Rings of queue i live at FE_RING_GPA(i): desc, then avail at +0x2000,
 * used at +0x3000 (enough for 256 entries). */
#define FE_RING_GPA(i) (0x10000ull + (uint64_t)(i) * 0x10000ull)

/* Nothing open yet (no session, every fd -1). */
void fe_init(struct fe *fe);
/* A session served over a socketpair (connected_fd). */
int fe_open(struct fe *fe, const struct vhu_backend_opts *opts);
/* Close our side and free the session; fe is as after fe_init(). */
void fe_close(struct fe *fe);

/* Send raw bytes: header fields + payload + fds (fds stay ours). */
int fe_send(struct fe *fe, uint32_t req, uint32_t flags, const void *payload,
	    uint32_t size, const int *fds, unsigned nfds);
/* Let the session handle everything pending (vhu_backend_process). */
int fe_process(struct fe *fe);
/* Read one message from the main socket: 1 got one, 0 EOF (the session
 * dropped us), -EAGAIN nothing there.  Received fds are closed. */
int fe_recv(struct fe *fe, struct vhu_msg *msg);
/* Same on the back-end channel. */
int fe_chan_recv(struct fe *fe, struct vhu_msg *msg);

/* send + process + recv.  Returns what fe_recv returned. */
int fe_call(struct fe *fe, uint32_t req, uint32_t flags, const void *payload,
	    uint32_t size, const int *fds, unsigned nfds, struct vhu_msg *reply);

/* A request that expects a u64 reply (GET_*): returns 0 and *v, or -1. */
int fe_get_u64(struct fe *fe, uint32_t req, uint64_t *v);
/* A request with NEED_REPLY: returns the ack value (0 ok, >0 failure), or
 * -1 when no ack came / the reply was malformed, -2 when the session
 * dropped the connection. */
long long fe_acked(struct fe *fe, uint32_t req, const void *payload,
		   uint32_t size, const int *fds, unsigned nfds);
/* True when the session closed the connection (reads EOF). */
bool fe_dropped(struct fe *fe);

/* GET_FEATURES, GET/SET_PROTOCOL_FEATURES (pf & offered), SET_FEATURES
 * (features & offered), SET_OWNER.  Returns 0 or -1. */
int fe_negotiate(struct fe *fe, uint64_t features, uint64_t pf);
/* Create FE_MEM_SIZE bytes of guest memory and send SET_MEM_TABLE. */
int fe_set_mem(struct fe *fe);
/* SET_VRING_NUM/ADDR/BASE/CALL/KICK for queue i at FE_RING_GPA(i).
 * *kick receives our end of the kick eventfd (caller closes). */
int fe_setup_vring(struct fe *fe, unsigned i, unsigned size, int *kick);
/* SET_VRING_ENABLE i on/off (with an ack). */
int fe_enable(struct fe *fe, unsigned i, bool on);
/* A socketpair for the back-end channel, sent with SET_BACKEND_REQ_FD. */
int fe_set_channel(struct fe *fe);

#endif
