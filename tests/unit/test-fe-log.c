/* SPDX-License-Identifier: MIT */
/*
 * The front-end's dirty logging (frontend-log.c) against a real back-end
 * session in a thread, both ring layouts: vhu_fe_log_start() sends the
 * log, LOG_ALL and the rings' LOG flag; pages the device writes show up
 * in vhu_fe_log_read(), which clears them; vhu_fe_log_stop() ends it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <vhu/backend.h>
#include <vhu/frontend.h>
#include <vhu/loop.h>

#include "frontend-priv.h"
#include "tap.h"

#define QSIZE 32u

/* The device: fills every writable buffer with 0x5a, on the control
 * thread (queue_kick). */
static void t_kick(void *o, struct vhu_vq *vq)
{
	struct vhu_vq_elem e;
	struct iovec iov[8];
	while (vhu_vq_pop(vq, &e, iov, 8) == 1) {
		uint32_t n = 0;
		for (unsigned i = e.n_out; i < (unsigned)e.n_out + e.n_in; i++) {
			memset(iov[i].iov_base, 0x5a, iov[i].iov_len);
			n += (uint32_t)iov[i].iov_len;
		}
		vhu_vq_push(vq, &e, n);
	}
	vhu_vq_notify(vq);
}
static struct vhu_device_ops ops = { .queue_kick = t_kick };

struct ctx {
	char path[64];
	struct vhu_backend *b;
	struct vhu_loop *loop;
	pthread_t thread;
	struct vhu_fe *fe;
	struct vhu_fe_vq *vq;
};

static void *loop_main(void *arg)
{
	vhu_loop_run(((struct ctx *)arg)->loop);
	return NULL;
}

static void open_ctx(struct ctx *c, bool packed, bool no_log)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "/tmp/vhu-fe-log-%d.sock", getpid());
	struct vhu_backend_opts o = {
		.ops = &ops,
		.features = VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_RING_PACKED),
		.num_queues = 1,
		.no_dirty_log = no_log,
	};
	CHECK_EQ(vhu_backend_new(&o, &c->b), 0);
	CHECK_EQ(vhu_backend_listen(c->b, c->path), 0);
	CHECK_EQ(vhu_loop_new(&c->loop), 0);
	CHECK_EQ(vhu_backend_attach(c->b, c->loop), 0);
	CHECK_EQ(pthread_create(&c->thread, NULL, loop_main, c), 0);
	CHECK_EQ(vhu_fe_connect(&c->fe, c->path, NULL), 0);
	uint64_t f = vhu_fe_features_offered(c->fe);
	if (!packed)
		f &= ~VHU_BIT(VHU_F_RING_PACKED);
	CHECK_EQ(vhu_fe_set_features(c->fe, f), 0);
	CHECK(!(vhu_fe_features(c->fe) & VHU_BIT(VHU_F_LOG_ALL)));
	CHECK_EQ(vhu_fe_add_memory(c->fe, 2u << 20), 0);
	CHECK_EQ(vhu_fe_vq_setup(c->fe, 0, QSIZE, &c->vq), 0);
}

static void close_ctx(struct ctx *c)
{
	vhu_fe_close(c->fe);
	vhu_loop_stop(c->loop);
	pthread_join(c->thread, NULL);
	vhu_backend_free(c->b);
	vhu_loop_free(c->loop);
}

/* One request: 16 readable bytes, then `len` writable ones; waits for
 * its completion. */
static void request(struct ctx *c, uint64_t rd_gpa, uint64_t wr_gpa,
		    uint32_t len)
{
	struct vhu_fe_buf out = { rd_gpa, 16 }, in = { wr_gpa, len };
	CHECK(vhu_fe_vq_add(c->vq, &out, 1, &in, 1, c) >= 0);
	CHECK(vhu_fe_vq_kick(c->vq) >= 0);
	void *data = NULL;
	uint32_t got = 0;
	for (int i = 0; i < 100 && !data; i++) {
		if (vhu_fe_vq_get_used(c->vq, &data, &got) == 1)
			break;
		vhu_fe_vq_wait(c->vq, 50);
	}
	CHECK(data == c);
	CHECK_EQ(got, len);
}

static void writes_are_logged(bool packed)
{
	struct ctx c;
	open_ctx(&c, packed, false);
	uint64_t rd, wr;
	CHECK(vhu_fe_alloc(c.fe, 4096, 4096, &rd) != NULL);
	CHECK(vhu_fe_alloc(c.fe, 3 * 4096, 4096, &wr) != NULL);

	request(&c, rd, wr, 4096);            /* before logging: not seen */
	CHECK_EQ(vhu_fe_log_start(c.fe), 0);
	CHECK(vhu_fe_features(c.fe) & VHU_BIT(VHU_F_LOG_ALL));
	size_t n = vhu_fe_log_size(c.fe);
	CHECK_EQ(n, 2u << 20 >> 15);          /* 2 MiB: 512 pages, 64 bytes */
	uint8_t bits[4096];
	CHECK(n <= sizeof(bits));
	CHECK(vhu_fe_log_read(c.fe, bits, n) >= 0); /* start clean */

	request(&c, rd, wr + 4096, 4097);     /* two pages written */
	long set = vhu_fe_log_read(c.fe, bits, n);
	CHECK(!vhu_fe_log_test(bits, n, rd));
	CHECK(!vhu_fe_log_test(bits, n, wr));
	CHECK(vhu_fe_log_test(bits, n, wr + 4096));
	CHECK(vhu_fe_log_test(bits, n, wr + 8192));
	/* The ring pages the device wrote: used ring (split) or descriptor
	 * ring (packed). */
	struct vhu_fe_vq *q = c.vq;
	CHECK(vhu_fe_log_test(bits, n, packed ? q->pring_gpa : q->used_gpa));
	CHECK(set >= 3);
	/* Read clears. */
	CHECK_EQ(vhu_fe_log_read(c.fe, bits, n), 0);

	CHECK_EQ(vhu_fe_log_stop(c.fe), 0);
	CHECK(!(vhu_fe_features(c.fe) & VHU_BIT(VHU_F_LOG_ALL)));
	request(&c, rd, wr, 4096);
	CHECK_EQ(vhu_fe_log_read(c.fe, bits, n), 0);
	close_ctx(&c);
}

TEST(split_writes_are_logged_and_cleared)
{
	writes_are_logged(false);
}

TEST(packed_writes_are_logged_and_cleared)
{
	writes_are_logged(true);
}

TEST(log_start_needs_the_features)
{
	struct ctx c;
	open_ctx(&c, false, true);
	CHECK_EQ(vhu_fe_log_start(c.fe), -EOPNOTSUPP);
	CHECK_EQ(vhu_fe_log_size(c.fe), 0);
	uint8_t b[8];
	CHECK_EQ(vhu_fe_log_read(c.fe, b, 8), -ENODATA);
	close_ctx(&c);
}

int main(void)
{
	return tap_run();
}
