/* SPDX-License-Identifier: MIT */
/*
 * State shared by the front-end's modules: the session (frontend.c),
 * its guest memory and queue setup (frontend-vq.c).  The driver side of
 * the rings (driver*.c, driver.h) is ring code and knows no session.
 */
#ifndef VHU_FRONTEND_PRIV_H
#define VHU_FRONTEND_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <vhu/frontend.h>

#include "driver.h"
#include "internal.h"

/* Regions one session may create (SET_MEM_TABLE carries at most 8). */
#define VHU__FE_MAX_REGIONS VHU_MAX_REGIONS

struct vhu__fe_region {
	uint8_t *host;
	size_t size;
	size_t used;     /* bump allocator */
	uint64_t gpa;
	int fd;
};

struct vhu_fe {
	pthread_mutex_t lock;      /* serialises control requests */
	int fd;
	int backend_fd;            /* our end of the back-end channel, -1 */
	int timeout_ms;
	bool broken;
	struct vhu_fe_opts opts;

	uint64_t features_offered;
	uint64_t protocol_offered;
	uint64_t protocol;
	uint64_t features;
	bool features_set;
	unsigned queue_num;
	unsigned max_mem_slots;

	struct vhu__fe_region regions[VHU__FE_MAX_REGIONS];
	unsigned nregions;
	/* Freed blocks below a region's bump pointer (vhu_fe_free()). */
	struct vhu__fe_hole {
		uint8_t *p;
		size_t len;
	} *holes;
	unsigned nholes, holes_cap;

	struct vhu_fe_vq *vqs[VHU_MAX_QUEUES];

	/* dirty log (frontend-log.c) */
	int log_fd;                /* sealed memfd, -1 none */
	uint64_t *log_words;
	size_t log_bytes;
	bool logging;

	vhu_fe_config_change_fn cc_fn;
	void *cc_opaque;
};

/* frontend.c: one request without a reply body (acknowledged with
 * REPLY_ACK when negotiated), and one with a reply of exactly reply_size
 * payload bytes.  Both take the session lock. */
int vhu__fe_cmd(struct vhu_fe *fe, uint32_t req, const void *payload,
		uint32_t size, const int *fds, unsigned nfds);
int vhu__fe_call(struct vhu_fe *fe, uint32_t req, const void *payload,
		 uint32_t size, void *reply, uint32_t reply_size);
/* A request that is always answered (SET_LOG_BASE): an empty reply or a
 * u64 (0 success, else -EIO). */
int vhu__fe_cmd_answered(struct vhu_fe *fe, uint32_t req, const void *payload,
			 uint32_t size, const int *fds, unsigned nfds);

/* frontend-vq.c: a queue's SET_VRING_ADDR payload, LOG flag and
 * log_guest_addr (used ring; packed: device area) when log is set. */
void vhu__fe_vring_addr(struct vhu_fe *fe, const struct vhu_fe_vq *vq,
			bool log, struct vhu_vring_addr *a);

/* frontend-log.c */
void vhu__fe_log_free(struct vhu_fe *fe);

/* frontend-vq.c */
void vhu__fe_mem_free(struct vhu_fe *fe);
void vhu__fe_vqs_free(struct vhu_fe *fe);

#endif
