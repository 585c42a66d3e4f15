/* SPDX-License-Identifier: MIT */
/*
 * rng: a complete vhost-user virtio-rng back-end (virtio 1.2, 5.4) on
 * libvhu's public API: the driver hands in device-writable buffers on one
 * queue, the device fills them from getrandom().  No config space, no
 * feature bits of its own.  A guest reads the bytes from /dev/hwrng:
 *
 *   rng /tmp/rng.sock
 *   qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=1G,share=on \
 *     -numa node,memdev=mem -chardev socket,id=c0,path=/tmp/rng.sock \
 *     -device vhost-user-rng-pci,chardev=c0
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <vhu/backend.h>

#define QUEUE_SIZE 256u   /* largest ring we accept */
#define IOV_CAP    VHU_VQ_MAX_IOV(QUEUE_SIZE)

/* Fill the writable buffers of one request; returns the bytes written
 * (from the start: a failure stops there). */
static uint32_t fill(const struct vhu_vq_elem *e)
{
	uint32_t written = 0;

	for (unsigned i = e->n_out; i < e->n_out + e->n_in; i++) {
		uint8_t *p = e->iov[i].iov_base;
		size_t len = e->iov[i].iov_len;
		while (len > 0 && written < UINT32_MAX) {
			/* The used length is 32-bit; getrandom() may return less. */
			size_t want = len < UINT32_MAX - written ? len : UINT32_MAX - written;
			ssize_t n = getrandom(p, want, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return written;
			p += n, len -= (size_t)n, written += (uint32_t)n;
		}
	}
	return written;
}

/* The driver kicked the queue: answer everything it made available.  A
 * chain longer than IOV_CAP is handed over cut short (POP_PARTIAL) and
 * filled as far as it goes: virtio-rng must not answer with 0 bytes. */
static void queue_kick(void *opaque, struct vhu_vq *vq)
{
	struct iovec iov[IOV_CAP];
	struct vhu_vq_elem e;

	(void)opaque;
	/* 0: nothing more; < 0: the driver broke the ring (logged, stopped). */
	while (vhu_vq_pop_flags(vq, &e, iov, IOV_CAP, VHU_VQ_POP_PARTIAL) > 0)
		vhu_vq_push(vq, &e, fill(&e));
	vhu_vq_notify(vq);
}

static const struct vhu_device_ops ops = { .queue_kick = queue_kick };

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SOCKET  (serve virtio-rng there)\n", argv[0]);
		return 2;
	}
	vhu_log_set_ident("rng");
	struct vhu_backend_opts o = {
		.ops = &ops,
		.features = VHU_RING_FEATURES,   /* virtio-rng has no bits of its own */
		.num_queues = 1,
		.max_queue_size = QUEUE_SIZE,
	};
	struct vhu_backend *b = NULL;
	int r = vhu_backend_new(&o, &b);
	if (r == 0)
		r = vhu_backend_listen(b, argv[1]);
	if (r == 0) {
		printf("rng: serving on %s\n", argv[1]);
		fflush(stdout);
		r = vhu_backend_run(b);   /* until SIGINT or SIGTERM */
	}
	if (r < 0)
		fprintf(stderr, "rng: %s: %s\n", argv[1], strerror(-r));
	vhu_backend_free(b);          /* also unlinks the socket */
	return r < 0 ? 1 : 0;
}
