/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk in one process, for the device tests: a temporary image, the
 * device behind a real back-end session whose loop runs on a thread, and
 * the library's front-end connected over a Unix socket with one queue and
 * request slots (header, status byte, data) in its guest memory.
 * Public API only.  Header-only: CHECK (tap.h) belongs to the test
 * program that includes it.
 */
#ifndef VHU_TEST_BLK_SESSION_H
#define VHU_TEST_BLK_SESSION_H

#include <endian.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vhu/backend.h>
#include <vhu/frontend.h>
#include <vhu/loop.h>

#include "blk.h"
#include "tap.h"

#define BLK_IMG_SIZE (1u << 20)      /* 2048 sectors */
#define BLK_NSLOT 32

struct blk_ses {
	char dir[64], img[96], sock[96];
	struct vhu_blk *blk;
	struct vhu_backend *b;
	struct vhu_loop *loop;
	pthread_t thread;
	bool running;
	int resize_fd;           /* eventfd: resize on the loop thread */
	uint64_t resize_to;
	unsigned resize_flags;   /* VHU_BLK_RESIZE_* */
	int changed_calls;       /* config-change notices the front-end saw */
	struct vhu_fe *fe;
	struct vhu_fe_vq *vq;
	uint8_t *hdr, *status, *data;
	uint64_t hdr_gpa, status_gpa, data_gpa;
};

static inline void *blk_ses_loop_main(void *arg)
{
	vhu_loop_run(((struct blk_ses *)arg)->loop);
	return NULL;
}

/* Runs on the loop (control) thread, as the daemon's resize does. */
static inline void blk_ses_on_resize(struct vhu_loop *loop, int fd,
				     uint32_t ev, void *opaque)
{
	struct blk_ses *c = opaque;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	if (vhu_blk_resize(c->blk, c->resize_to, c->resize_flags) == 0)
		vhu_backend_config_changed(c->b, true);
}

static inline int blk_ses_on_config_change(struct vhu_fe *fe, void *opaque)
{
	((struct blk_ses *)opaque)->changed_calls++;
	return 0;
}

/* A BLK_IMG_SIZE image in a fresh directory (template: a mkdtemp
 * pattern), the device with options o (path set here; num_queues and
 * blk_size default to 1 and 512), listening, its loop running. */
static inline void blk_ses_open(struct blk_ses *c, struct vhu_blk_opts *o,
				const char *template)
{
	struct vhu_backend_opts bo;

	memset(c, 0, sizeof(*c));
	c->resize_fd = -1;
	snprintf(c->dir, sizeof(c->dir), "%s", template);
	CHECK(mkdtemp(c->dir) != NULL);
	snprintf(c->img, sizeof(c->img), "%s/img", c->dir);
	snprintf(c->sock, sizeof(c->sock), "%s/sock", c->dir);
	int fd = open(c->img, O_CREAT | O_RDWR | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, BLK_IMG_SIZE) == 0);
	close(fd);

	o->path = c->img;
	if (!o->num_queues)
		o->num_queues = 1;
	if (!o->blk_size)
		o->blk_size = 512;
	CHECK_EQ(vhu_blk_new(o, &c->blk), 0);
	vhu_blk_backend_opts(c->blk, &bo);
	CHECK_EQ(vhu_backend_new(&bo, &c->b), 0);
	CHECK_EQ(vhu_backend_listen(c->b, c->sock), 0);
	CHECK_EQ(vhu_loop_new(&c->loop), 0);
	CHECK_EQ(vhu_backend_attach(c->b, c->loop), 0);
	c->resize_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(c->resize_fd >= 0);
	CHECK_EQ(vhu_loop_add(c->loop, c->resize_fd, EPOLLIN, blk_ses_on_resize,
			      c), 0);
	CHECK_EQ(pthread_create(&c->thread, NULL, blk_ses_loop_main, c), 0);
	c->running = true;
}

/* Connect the front-end: every offered feature but, unless packed,
 * VIRTIO_F_RING_PACKED and, unless event_idx, VIRTIO_F_EVENT_IDX; 4 MiB
 * of memory; queue 0 of qsize; BLK_NSLOT slots with data_size bytes of
 * data in all. */
static inline void blk_ses_connect(struct blk_ses *c, bool packed,
				   bool event_idx, unsigned qsize,
				   size_t data_size)
{
	CHECK_EQ(vhu_fe_connect(&c->fe, c->sock, NULL), 0);
	vhu_fe_set_config_change_cb(c->fe, blk_ses_on_config_change, c);
	uint64_t f = vhu_fe_features_offered(c->fe);
	if (packed)
		CHECK(f & VHU_BIT(VHU_F_RING_PACKED));
	else
		f &= ~VHU_BIT(VHU_F_RING_PACKED);
	if (!event_idx)
		f &= ~VHU_BIT(VHU_F_EVENT_IDX);
	CHECK_EQ(vhu_fe_set_features(c->fe, f), 0);
	CHECK_EQ(!!(vhu_fe_features(c->fe) & VHU_BIT(VHU_F_RING_PACKED)),
		 packed);
	CHECK_EQ(vhu_fe_add_memory(c->fe, 4u << 20), 0);
	CHECK_EQ(vhu_fe_vq_setup(c->fe, 0, qsize, &c->vq), 0);
	CHECK_EQ(vhu_fe_vq_num_free(c->vq), qsize);
	c->hdr = vhu_fe_alloc(c->fe, 16 * BLK_NSLOT, 64, &c->hdr_gpa);
	c->status = vhu_fe_alloc(c->fe, BLK_NSLOT, 64, &c->status_gpa);
	c->data = vhu_fe_alloc(c->fe, data_size, 4096, &c->data_gpa);
	CHECK(c->hdr && c->status && c->data);
}

/* Undo whatever of open and connect happened; safe to call twice. */
static inline void blk_ses_close(struct blk_ses *c)
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
		unlink(c->img);
		unlink(c->sock);
		rmdir(c->dir);
		c->dir[0] = 0;
	}
}

/* The request header of a slot (virtio 1.2, 5.2.6), status 0xff. */
static inline void blk_set_hdr(struct blk_ses *c, unsigned slot, uint32_t type,
			       uint64_t sector)
{
	uint32_t t = htole32(type), z = 0;
	uint64_t s = htole64(sector);
	uint8_t *h = c->hdr + 16 * slot;

	memcpy(h, &t, 4);
	memcpy(h + 4, &z, 4);
	memcpy(h + 8, &s, 8);
	c->status[slot] = 0xff;
}

/* Queue one request of a slot: header, data (len 0: none; readable, or
 * writable when dev_writes), status; its token is slot + 1. */
static inline void blk_add_req(struct blk_ses *c, unsigned slot, uint32_t type,
			       uint64_t sector, uint64_t data_gpa, uint32_t len,
			       bool dev_writes)
{
	struct vhu_fe_buf out[2], in[2];
	unsigned n_out = 0, n_in = 0;

	blk_set_hdr(c, slot, type, sector);
	out[n_out++] = (struct vhu_fe_buf){ c->hdr_gpa + 16 * slot, 16 };
	if (len && !dev_writes)
		out[n_out++] = (struct vhu_fe_buf){ data_gpa, len };
	if (len && dev_writes)
		in[n_in++] = (struct vhu_fe_buf){ data_gpa, len };
	in[n_in++] = (struct vhu_fe_buf){ c->status_gpa + slot, 1 };
	CHECK(vhu_fe_vq_add(c->vq, out, n_out, in, n_in,
			    (void *)(uintptr_t)(slot + 1)) >= 0);
}

/* Kick and collect n completions, waiting at most max_waits times 100 ms;
 * written[slot] (when given) gets the device's byte count. */
static inline void blk_collect(struct blk_ses *c, unsigned n,
			       uint32_t *written, unsigned max_waits)
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
			CHECK(slot < BLK_NSLOT);
			if (written)
				written[slot] = len;
			got++;
			continue;
		}
		CHECK(rounds++ < max_waits);
		CHECK(vhu_fe_vq_wait(c->vq, 100) >= 0);
	}
}

/* Read or write the image file directly, behind the device's back. */
static inline void blk_img_io(struct blk_ses *c, void *buf, size_t len,
			      off_t off, bool write)
{
	int fd = open(c->img, write ? O_WRONLY : O_RDONLY);

	CHECK(fd >= 0);
	if (write)
		CHECK_EQ(pwrite(fd, buf, len, off), (ssize_t)len);
	else
		CHECK_EQ(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

#endif
