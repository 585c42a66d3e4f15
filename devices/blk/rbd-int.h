/* SPDX-License-Identifier: MIT */
/*
 * Inside the RBD back-end: the image, shared by rbd.c (open, close, the
 * queues) and rbd-lock.c (the exclusive lock's thread).
 */
#ifndef VHU_BLK_RBD_INT_H
#define VHU_BLK_RBD_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "blk-int.h"

enum lock_state {
	LOCK_NONE,          /* read-only: never taken */
	LOCK_UNSUPPORTED,   /* no exclusive-lock feature: writes go unguarded */
	LOCK_RELEASED,      /* not held: no queue runs */
	LOCK_TAKING,        /* the locker asks librbd for it; writes wait */
	LOCK_HELD,
	LOCK_REFUSED,       /* another client holds it */
};

struct img {
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t rbd;
	bool cluster_ok, io_ok, rbd_ok;
	_Atomic int lock;           /* enum lock_state; read by the queues */
	uint64_t watch;
	bool watching;
	/* The eventfd librbd's watch callback writes (blk->change_fd): the
	 * callback's argument is the image, which outlives the device when
	 * the image is left open at exit (rbd_close_image). */
	int change_fd;
	/* The locker thread takes and releases the exclusive lock, so a
	 * client that does not answer (a dead owner: up to librbd's watch
	 * timeout) never blocks the control thread.  Guarded by mu. */
	pthread_t locker;
	bool locker_ok;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool force;                 /* --lock off: take the lock from anyone */
	bool want;                  /* the guest's queues run */
	bool quit;
	bool giving;                /* the locker flushes and releases */
	unsigned want_gen, done_gen;  /* queues_on calls, and taken for */
	/* Queues closed with librbd requests still out: their memory stays
	 * (a late callback writes there), and so does the image's. */
	_Atomic unsigned stranded;
	/* Resizes still inside librbd after the control thread stopped
	 * waiting for them (rbd.c, rbd_set_size): the image stays too. */
	_Atomic unsigned resizing;
	char name[256];             /* pool/image[@snap], for messages */
};

static inline struct img *img_of(const struct vhu_blk *blk)
{
	return blk->be_data;
}

/* rbd-lock.c: the lock's thread, started once the image is open (with
 * the exclusive-lock feature, writable); stop: false when it is still
 * inside librbd after a while (the cluster does not answer). */
int vhu__blk_rbd_locker_start(struct img *im);
bool vhu__blk_rbd_locker_stop(struct img *im);
void vhu__blk_rbd_queues_on(struct vhu_blk *blk);
void vhu__blk_rbd_queues_off(struct vhu_blk *blk);
const char *vhu__blk_rbd_state(const struct vhu_blk *blk);
/* The client other than this one that holds the image's exclusive lock:
 * 1 with its address in who, 0 when nobody or this client holds it, or
 * -errno.  vhu__blk_rbd_mark_writer: record this client, which just took
 * the lock, as a vhu-blk that gives it back when its guest stops (image
 * metadata VHU_BLK_RBD_WRITER_KEY = its address); owner_is_vhu_blk: did
 * the owner who record itself so. */
#define VHU_BLK_RBD_WRITER_KEY "vhu-blk.writer"
int vhu__blk_rbd_other_owner(struct img *im, char *who, size_t len);
void vhu__blk_rbd_mark_writer(struct img *im);
bool vhu__blk_rbd_owner_is_vhu_blk(struct img *im, const char *who);
/* Does the owner who still watch the image (a client that died keeps
 * its lock until someone breaks it, its watch only until it times out,
 * about 30 s)?  true when librbd cannot tell. */
bool vhu__blk_rbd_owner_watches(struct img *im, const char *who);

#endif
