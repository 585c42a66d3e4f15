/* SPDX-License-Identifier: MIT */
/*
 * The vhu-blk device end to end, in one process: the device behind a real
 * back-end session (its loop on a thread), driven by the library's
 * front-end over a Unix socket with one queue (split, or packed when
 * asked) and request slots (header, status byte, data) in its guest
 * memory.  Public API only.  Shared by the device's I/O tests;
 * header-only: CHECK (tap.h) belongs to the test program that includes it.
 */
#ifndef VHU_TEST_BLK_HARNESS_H
#define VHU_TEST_BLK_HARNESS_H

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <vhu/backend.h>
#include <vhu/frontend.h>
#include <vhu/loop.h>

#include "blk-wire.h"
#include "blk.h"
#include "tap.h"

#define IMG_SIZE (1u << 20)      /* 2048 sectors */
#define QSIZE 128
#define NSLOT 32
#define DATA_SIZE (64u << 10)

struct ctx {
	char dir[64], img[96], sock[96];
	struct vhu_blk *blk;
	struct vhu_backend *b;
	struct vhu_loop *loop;
	pthread_t thread;
	bool running;            /* the loop thread runs */
	int resize_fd;           /* eventfd: resize on the loop thread */
	uint64_t resize_to;
	unsigned resize_flags;
	bool resize_quiet;       /* do not announce (nobody reads the channel) */
	_Atomic int resize_done;
	int resize_rc;
	int changed_calls;
	unsigned qsize;          /* 0: QSIZE */
	uint64_t features_clear;  /* feature bits the driver does not take */
	bool packed;             /* negotiate VIRTIO_F_RING_PACKED */
	bool keep_img;           /* the caller's image, not ours */
	struct vhu_fe *fe;
	struct vhu_fe_vq *vq;
	uint8_t *hdr, *status, *data;
	uint64_t hdr_gpa, status_gpa, data_gpa;
};

/* Everything here is static: tap.h's state is per test program. */
#define HARNESS static __attribute__((unused))

HARNESS void ctx_connect(struct ctx *c);

HARNESS void *loop_main(void *arg)
{
	struct ctx *c = arg;

	vhu_loop_run(c->loop);
	return NULL;
}

/* Runs on the loop (control) thread, as the daemon's resize does. */
HARNESS void on_resize(struct vhu_loop *loop, int fd, uint32_t ev, void *opaque)
{
	struct ctx *c = opaque;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	c->resize_rc = vhu_blk_resize(c->blk, c->resize_to, c->resize_flags);
	if (c->resize_rc == 0 && !c->resize_quiet)
		vhu_backend_config_changed(c->b, true);
	atomic_fetch_add(&c->resize_done, 1);
}

/* Ask the loop thread to resize; do not wait. */
HARNESS void resize_async(struct ctx *c, uint64_t size, unsigned flags)
{
	uint64_t one_v = 1;

	c->resize_to = size;
	c->resize_flags = flags;
	CHECK_EQ(write(c->resize_fd, &one_v, 8), 8);
}

/* Wait until the loop thread has done `done` resizes; their last result. */
HARNESS int resize_wait(struct ctx *c, int done)
{
	for (int i = 0; i < 5000 && atomic_load(&c->resize_done) < done; i++)
		usleep(1000);
	CHECK_EQ(atomic_load(&c->resize_done), done);
	return c->resize_rc;
}

HARNESS int on_config_change(struct vhu_fe *fe, void *opaque)
{
	struct ctx *c = opaque;

	c->changed_calls++;
	return 0;
}

/* A temporary image of IMG_SIZE bytes unless o->path is set (then that
 * image, e.g. a block device, is served and left in place). */
HARNESS void ctx_open(struct ctx *c, struct vhu_blk_opts *o, bool connect)
{
	struct vhu_backend_opts bo;
	int fd;

	memset(c, 0, sizeof(*c));
	c->resize_fd = -1;
	c->packed = tap_packed;  /* the case's layout (TEST_LAYOUTS) */
	strcpy(c->dir, "/tmp/vhu-blk-io-XXXXXX");
	CHECK(mkdtemp(c->dir) != NULL);
	snprintf(c->img, sizeof(c->img), "%s/img", c->dir);
	snprintf(c->sock, sizeof(c->sock), "%s/sock", c->dir);
	if (o->path) {
		/* an image of the test's own (a block device): kept */
		snprintf(c->img, sizeof(c->img), "%s", o->path);
		c->keep_img = true;
	} else {
		fd = open(c->img, O_CREAT | O_RDWR | O_TRUNC, 0600);
		CHECK(fd >= 0);
		CHECK(ftruncate(fd, IMG_SIZE) == 0);
		close(fd);
		o->path = c->img;
	}
	if (!o->num_queues)
		o->num_queues = 1;
	if (!o->blk_size && !c->keep_img)
		o->blk_size = 512;
	CHECK_EQ(vhu_blk_new(o, &c->blk), 0);
	vhu_blk_backend_opts(c->blk, &bo);
	CHECK_EQ(vhu_backend_new(&bo, &c->b), 0);
	CHECK_EQ(vhu_backend_listen(c->b, c->sock), 0);
	CHECK_EQ(vhu_loop_new(&c->loop), 0);
	CHECK_EQ(vhu_backend_attach(c->b, c->loop), 0);
	c->resize_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(c->resize_fd >= 0);
	CHECK_EQ(vhu_loop_add(c->loop, c->resize_fd, EPOLLIN, on_resize, c), 0);
	CHECK_EQ(pthread_create(&c->thread, NULL, loop_main, c), 0);
	c->running = true;
	if (connect)
		ctx_connect(c);
}

HARNESS void ctx_connect(struct ctx *c)
{
	CHECK_EQ(vhu_fe_connect(&c->fe, c->sock, NULL), 0);
	/* Live migration: dirty logging offered (QEMU refuses to migrate
	 * without both). */
	CHECK(vhu_fe_features_offered(c->fe) & VHU_BIT(VHU_F_LOG_ALL));
	CHECK(vhu_fe_protocol_features_offered(c->fe) &
	      VHU_BIT(VHU_PF_LOG_SHMFD));
	vhu_fe_set_config_change_cb(c->fe, on_config_change, c);
	uint64_t f = vhu_fe_features_offered(c->fe) & ~c->features_clear;
	if (c->packed)
		CHECK(f & VHU_BIT(VHU_F_RING_PACKED));
	else
		f &= ~VHU_BIT(VHU_F_RING_PACKED);
	CHECK_EQ(vhu_fe_set_features(c->fe, f), 0);
	CHECK_EQ(!!(vhu_fe_features(c->fe) & VHU_BIT(VHU_F_RING_PACKED)),
		 c->packed);
	CHECK_EQ(vhu_fe_add_memory(c->fe, 4u << 20), 0);
	if (!c->qsize)
		c->qsize = QSIZE;
	CHECK_EQ(vhu_fe_vq_setup(c->fe, 0, c->qsize, &c->vq), 0);
	CHECK_EQ(vhu_fe_vq_num_free(c->vq), c->qsize);
	c->hdr = vhu_fe_alloc(c->fe, 16 * NSLOT, 64, &c->hdr_gpa);
	c->status = vhu_fe_alloc(c->fe, NSLOT, 64, &c->status_gpa);
	c->data = vhu_fe_alloc(c->fe, DATA_SIZE * 2, 4096, &c->data_gpa);
	CHECK(c->hdr && c->status && c->data);
}

/* Undo whatever of open and connect happened; safe to call twice. */
HARNESS void ctx_close(struct ctx *c)
{
	if (c->fe)
		vhu_fe_close(c->fe);
	c->fe = NULL;
	if (c->running) {
		vhu_loop_stop(c->loop);
		pthread_join(c->thread, NULL);
		c->running = false;
	}
	if (c->loop && c->resize_fd >= 0) { /* loop: opened, not zeroed */
		vhu_loop_del(c->loop, c->resize_fd);
		close(c->resize_fd);
		c->resize_fd = -1;
	}
	if (c->b)
		vhu_backend_free(c->b);
	if (c->loop)
		vhu_loop_free(c->loop);
	if (c->blk)
		vhu_blk_free(c->blk);
	c->b = NULL;
	c->loop = NULL;
	c->blk = NULL;
	if (c->dir[0]) {
		if (!c->keep_img)
			unlink(c->img);
		unlink(c->sock);
		rmdir(c->dir);
		c->dir[0] = 0;
	}
}

HARNESS void set_hdr(struct ctx *c, unsigned slot, uint32_t type, uint64_t sector)
{
	put_hdr(c->hdr + 16 * slot, type, sector);
	c->status[slot] = 0xff;
}

/* Queue one request: header, data (readable or writable), status. */
HARNESS void add_req(struct ctx *c, unsigned slot, uint32_t type, uint64_t sector,
		    uint64_t data_gpa, uint32_t len, bool dev_writes)
{
	struct vhu_fe_buf out[2], in[2];
	unsigned n_out = 0, n_in = 0;

	set_hdr(c, slot, type, sector);
	out[n_out++] = (struct vhu_fe_buf){ c->hdr_gpa + 16 * slot, 16 };
	if (len && !dev_writes)
		out[n_out++] = (struct vhu_fe_buf){ data_gpa, len };
	if (len && dev_writes)
		in[n_in++] = (struct vhu_fe_buf){ data_gpa, len };
	in[n_in++] = (struct vhu_fe_buf){ c->status_gpa + slot, 1 };
	CHECK(vhu_fe_vq_add(c->vq, out, n_out, in, n_in,
			    (void *)(uintptr_t)(slot + 1)) >= 0);
}

/* What GET_VRING_BASE hands back once n requests of three descriptors
 * each went through and none is in flight: the next avail index for a
 * split ring; for a packed one the next position with its wrap counter in
 * bit 15, for the driver's side (low half) and the device's (high half). */
HARNESS uint32_t ring_base_after(const struct ctx *c, unsigned n)
{
	if (!c->packed)
		return n;
	uint32_t pos = 3 * n, laps = pos / c->qsize;
	uint32_t half = pos % c->qsize | (laps % 2 ? 0 : 0x8000u);
	return half | half << 16;
}

/* Kick and collect n completions; lens[slot] gets the written count. */
HARNESS void run(struct ctx *c, unsigned n, uint32_t *lens)
{
	unsigned got = 0, rounds = 0;

	CHECK(vhu_fe_vq_kick(c->vq) >= 0);
	while (got < n) {
		void *data;
		uint32_t len;
		int r = vhu_fe_vq_get_used(c->vq, &data, &len);

		CHECK(r >= 0);
		if (r == 1) {
			uintptr_t slot = (uintptr_t)data - 1;

			CHECK(slot < NSLOT);
			if (lens)
				lens[slot] = len;
			got++;
			continue;
		}
		CHECK(rounds++ < 100);
		CHECK(vhu_fe_vq_wait(c->vq, 100) >= 0);
	}
}

HARNESS uint8_t one(struct ctx *c, uint32_t type, uint64_t sector, uint32_t len,
		   bool dev_writes, uint32_t *written)
{
	uint32_t lens[NSLOT];

	add_req(c, 0, type, sector, c->data_gpa, len, dev_writes);
	run(c, 1, lens);
	if (written)
		*written = lens[0];
	return c->status[0];
}

HARNESS void pread_img(struct ctx *c, void *buf, size_t len, off_t off)
{
	int fd = open(c->img, O_RDONLY);

	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

HARNESS void pwrite_img(struct ctx *c, const void *buf, size_t len, off_t off)
{
	int fd = open(c->img, O_WRONLY);

	CHECK(fd >= 0);
	CHECK_EQ(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

HARNESS void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + seed);
}


#endif
