/* SPDX-License-Identifier: MIT */
/*
 * Structures that grow without breaking programs built against an older
 * header: vhu_backend_new_sized() and vhu_fe_connect*_sized() take the
 * caller's structure sizes and copy only what the caller knows.  The
 * structures are placed at the very end of exactly sized heap blocks, so
 * that a read past what the caller passed is an AddressSanitizer error in
 * build-san (and the copied bytes are checked in both builds).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vhu/backend.h>
#include <vhu/frontend.h>

#include "internal.h"
#include "tap.h"

/* The first release's layouts: what a 0.1 program passes. */
#define OPTS_0_1 VHU__SIZE_THROUGH(struct vhu_backend_opts, no_dirty_log)
#define OPS_0_1 VHU__SIZE_THROUGH(struct vhu_device_ops, config_change_acked)
#define FE_OPTS_0_1 VHU__SIZE_THROUGH(struct vhu_fe_opts, no_add_mem_reg)

static int connected_calls;
static void on_connected(void *opaque)
{
	(void)opaque;
	connected_calls++;
}

/* A heap copy of src of exactly size bytes (0xa5 past the real struct). */
static void *exact_copy(const void *src, size_t src_size, size_t size)
{
	unsigned char *p = malloc(size);
	memset(p, 0xa5, size);
	memcpy(p, src, src_size < size ? src_size : size);
	return p;
}

static struct vhu_backend_opts base_opts(const struct vhu_device_ops *ops)
{
	struct vhu_backend_opts o = {
		.ops = ops, .features = VHU_BIT(VHU_F_VERSION_1),
		.num_queues = 2, .config_size = 8,
	};
	return o;
}

/* Serve a session on a socketpair and count the connected callback. */
static int connect_once(struct vhu_backend *b)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	int before = connected_calls;
	int r = vhu_backend_connected_fd(b, sv[1]);
	close(sv[0]);
	return r < 0 ? r : connected_calls - before;
}

TEST(backend_0_1_sizes_exact_blocks)
{
	struct vhu_device_ops ops = { .connected = on_connected };
	struct vhu_device_ops *ops_blk = exact_copy(&ops, sizeof(ops), OPS_0_1);
	struct vhu_backend_opts o = base_opts(ops_blk);
	struct vhu_backend_opts *o_blk = exact_copy(&o, sizeof(o), OPTS_0_1);
	struct vhu_backend *b = NULL;

	CHECK_EQ(vhu_backend_new_sized(o_blk, OPTS_0_1, OPS_0_1, &b), 0);
	CHECK_EQ(vhu_backend_num_queues(b), 2);
	CHECK_EQ(connect_once(b), 1);
	vhu_backend_free(b);
	/* The function named vhu_backend_new (not the macro): 0.1 layouts. */
	b = NULL;
	CHECK_EQ((vhu_backend_new)(o_blk, &b), 0);
	CHECK_EQ(connect_once(b), 1);
	vhu_backend_free(b);
	free(o_blk);
	free(ops_blk);
}

/* Built against a header whose ops ended at device_reset (before
 * queue_stop_begin): the block is read no further, the session works. */
TEST(backend_ops_before_queue_stop_begin)
{
	size_t sz = VHU__SIZE_THROUGH(struct vhu_device_ops, device_reset);
	struct vhu_device_ops ops = { .connected = on_connected };
	struct vhu_device_ops *ops_blk = exact_copy(&ops, sizeof(ops), sz);
	struct vhu_backend_opts o = base_opts(ops_blk);
	struct vhu_backend *b = NULL;

	CHECK(sz < sizeof(ops));
	CHECK_EQ(vhu_backend_new_sized(&o, sizeof(o), sz, &b), 0);
	CHECK_EQ(connect_once(b), 1);
	vhu_backend_free(b);
	free(ops_blk);
}

TEST(backend_macro_passes_the_callers_sizes)
{
	struct vhu_device_ops ops = { .connected = on_connected };
	struct vhu_backend_opts o = base_opts(&ops);
	struct vhu_backend *b = NULL;
	CHECK_EQ(vhu_backend_new(&o, &b), 0);
	CHECK_EQ(connect_once(b), 1);
	vhu_backend_free(b);
}

TEST(backend_newer_caller)
{
	/* A program built against a newer header: its structures are larger.
	 * Unknown bytes that are zero are fine; a non-zero one asks for
	 * something this library cannot do. */
	struct vhu_device_ops ops = { .connected = on_connected };
	size_t big = sizeof(struct vhu_backend_opts) + 16;
	struct vhu_backend_opts o = base_opts(&ops);
	unsigned char *blk = calloc(1, big);
	memcpy(blk, &o, sizeof(o));
	struct vhu_backend *b = NULL;
	CHECK_EQ(vhu_backend_new_sized((void *)blk, big, sizeof(ops), &b), 0);
	vhu_backend_free(b);
	blk[big - 1] = 1;
	b = (void *)1;
	CHECK_EQ(vhu_backend_new_sized((void *)blk, big, sizeof(ops), &b), -E2BIG);
	CHECK(b == NULL);
	free(blk);

	size_t big_ops = sizeof(ops) + 8;
	unsigned char *ops_blk = calloc(1, big_ops);
	memcpy(ops_blk, &ops, sizeof(ops));
	o = base_opts((void *)ops_blk);
	CHECK_EQ(vhu_backend_new_sized(&o, sizeof(o), big_ops, &b), 0);
	CHECK_EQ(connect_once(b), 1);
	vhu_backend_free(b);
	ops_blk[big_ops - 1] = 0x10;   /* an unknown callback is set */
	CHECK_EQ(vhu_backend_new_sized(&o, sizeof(o), big_ops, &b), -E2BIG);
	free(ops_blk);
}

TEST(backend_sizes_below_the_first_release)
{
	struct vhu_device_ops ops = { 0 };
	struct vhu_backend_opts o = base_opts(&ops);
	struct vhu_backend *b = NULL;
	CHECK_EQ(vhu_backend_new_sized(&o, OPTS_0_1 - 1, sizeof(ops), &b), -EINVAL);
	CHECK_EQ(vhu_backend_new_sized(&o, 0, sizeof(ops), &b), -EINVAL);
	CHECK_EQ(vhu_backend_new_sized(&o, sizeof(o), OPS_0_1 - 1, &b), -EINVAL);
	/* No ops table at all: its size does not matter. */
	o.ops = NULL;
	CHECK_EQ(vhu_backend_new_sized(&o, sizeof(o), 0, &b), 0);
	vhu_backend_free(b);
}

TEST(struct_in_zeroes_what_the_caller_does_not_know)
{
	unsigned char src[8], dst[16];
	memset(src, 0x11, sizeof(src));
	memset(dst, 0xee, sizeof(dst));
	CHECK_EQ(vhu__struct_in(dst, sizeof(dst), src, sizeof(src), 4), 0);
	CHECK_MEM(dst, src, 8);
	for (unsigned i = 8; i < 16; i++)
		CHECK_EQ(dst[i], 0);
	CHECK_EQ(vhu__struct_in(dst, sizeof(dst), src, 3, 4), -EINVAL);
	unsigned char big[24] = { 0 };
	CHECK_EQ(vhu__struct_in(dst, sizeof(dst), big, sizeof(big), 4), 0);
	big[16] = 1;
	CHECK_EQ(vhu__struct_in(dst, sizeof(dst), big, sizeof(big), 4), -E2BIG);
}

TEST(frontend_sized_options)
{
	struct vhu_fe_opts o = { .timeout_ms = 100 };
	struct vhu_fe_opts *blk = exact_copy(&o, sizeof(o), FE_OPTS_0_1);
	struct vhu_fe *fe = (void *)1;
	/* Copied without reading past the block; then connect() fails. */
	CHECK_EQ(vhu_fe_connect_sized(&fe, "/nonexistent/vhu-abi.sock", blk,
				      FE_OPTS_0_1), -ENOENT);
	CHECK(fe == NULL);
	CHECK_EQ((vhu_fe_connect)(&fe, "/nonexistent/vhu-abi.sock", blk), -ENOENT);
	CHECK_EQ(vhu_fe_connect_sized(&fe, "/nonexistent/vhu-abi.sock", blk,
				      FE_OPTS_0_1 - 1), -EINVAL);
	free(blk);

	size_t big = sizeof(o) + 8;
	unsigned char *nb = calloc(1, big);
	memcpy(nb, &o, sizeof(o));
	nb[big - 1] = 1;
	CHECK_EQ(vhu_fe_connect_sized(&fe, "/nonexistent/vhu-abi.sock",
				      (void *)nb, big), -E2BIG);
	/* connect_fd takes the fd over even when the options are refused. */
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	CHECK_EQ(vhu_fe_connect_fd_sized(&fe, sv[0], (void *)nb, big), -E2BIG);
	CHECK(fcntl(sv[0], F_GETFD) < 0 && errno == EBADF);
	close(sv[1]);
	free(nb);
}

int main(void)
{
	return tap_run();
}
