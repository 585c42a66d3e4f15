/* SPDX-License-Identifier: MIT */
/*
 * ramdisk: the smallest complete vhost-user-blk back-end on libvhu's
 * public API.  The disk lives in memory; QEMU boots a guest against it:
 *
 *   ramdisk /tmp/ramdisk.sock 64          # socket path, size in MiB
 *   qemu-system-x86_64 ... \
 *     -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \
 *     -chardev socket,id=c0,path=/tmp/ramdisk.sock \
 *     -device vhost-user-blk-pci,chardev=c0,num-queues=1
 *
 * What a device author writes is all here: the feature bits, the config
 * space (virtio 1.2, 5.2.4), and one request handler (5.2.6) that answers
 * IN, OUT, FLUSH and GET_ID, and every malformed or unknown request with
 * an error status instead of trusting the guest.  The library does the
 * protocol, guest memory and the rings.  The session watches the kick fds
 * and calls queue_kick on its own thread, so this device needs no thread
 * and no locking.
 */
#include <endian.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/backend.h>
#include <vhu/iov.h>
#include <vhu/loop.h>
#include <vhu/vhu.h>

/* virtio-blk feature bits, request types and status values. */
#define BLK_F_SEG_MAX  2
#define BLK_F_BLK_SIZE 6
#define BLK_F_FLUSH    9

#define BLK_T_IN     0
#define BLK_T_OUT    1
#define BLK_T_FLUSH  4
#define BLK_T_GET_ID 8

#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define BLK_S_UNSUPP 2

#define SECTOR     512u
#define HDR_SIZE   16u    /* struct virtio_blk_outhdr */
#define ID_BYTES   20u    /* GET_ID answer */
#define SEG_MAX    126u   /* data buffers per request we advertise */
#define QUEUE_SIZE 256u   /* largest ring we accept */
#define IOV_CAP    VHU_VQ_MAX_IOV(QUEUE_SIZE) /* see virtq.h */

/*
 * The config space as the driver reads it, little-endian (virtio 1.2,
 * 5.2.4).  Fields up to num_queues are the ones this device fills; the
 * rest stay zero but are readable, because QEMU reads the whole structure
 * its headers know (up to 96 bytes).
 */
struct blk_config {
	uint64_t capacity;          /* in 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint8_t rest[60];           /* discard, write-zeroes, secure erase, zoned */
} __attribute__((packed));

_Static_assert(sizeof(struct blk_config) == 96, "virtio-blk config size");

struct ramdisk {
	uint8_t *data;
	uint64_t size;              /* bytes, a multiple of SECTOR */
	struct blk_config config;
	struct vhu_loop *loop;
};

/* The loop to stop on SIGINT / SIGTERM (vhu_loop_stop is signal-safe). */
static struct vhu_loop *stop_loop;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_loop)
		vhu_loop_stop(stop_loop);
}

/*
 * Serve one request.  iov[0 .. n_out) is what the driver wrote (header,
 * then data for OUT), iov[n_out .. n_out + n_in) what it lets us write
 * (data for IN / GET_ID, then the status byte last).  Returns the number of
 * bytes written into the writable part, status byte included.
 */
static uint32_t serve(struct ramdisk *rd, const struct vhu_vq_elem *e)
{
	const struct iovec *out = e->iov, *in = e->iov + e->n_out;
	size_t out_len = vhu_iov_size(out, e->n_out);
	size_t in_len = vhu_iov_size(in, e->n_in);
	uint8_t hdr[HDR_SIZE], status = BLK_S_OK;
	size_t written = 0;

	/* Without a writable byte there is nowhere to put the status: give
	 * the chain back untouched. */
	if (in_len == 0)
		return 0;
	size_t data_in = in_len - 1;           /* writable bytes before the status */

	if (out_len < HDR_SIZE) {
		status = BLK_S_IOERR;
		goto done;
	}
	/* Copy the header out of guest memory once, then use the copy. */
	vhu_iov_to_buf(out, e->n_out, 0, hdr, sizeof(hdr));
	uint32_t type;
	uint64_t sector;
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	type = le32toh(type);
	sector = le64toh(sector);
	size_t data_out = out_len - HDR_SIZE;  /* readable bytes after the header */

	switch (type) {
	case BLK_T_IN:
	case BLK_T_OUT: {
		size_t len = type == BLK_T_IN ? data_in : data_out;
		/* Whole sectors, inside the disk; no overflow on a huge sector.
		 * An IN with readable data or an OUT with writable data is a
		 * chain this device does not understand. */
		if ((type == BLK_T_IN ? data_out : data_in) != 0 || len % SECTOR ||
		    sector > rd->size / SECTOR ||
		    len > rd->size - sector * SECTOR) {
			status = BLK_S_IOERR;
			break;
		}
		uint8_t *p = rd->data + sector * SECTOR;
		if (type == BLK_T_IN)
			written = vhu_iov_from_buf(in, e->n_in, 0, p, len);
		else
			vhu_iov_to_buf(out, e->n_out, HDR_SIZE, p, len);
		break;
	}
	case BLK_T_FLUSH:
		/* Memory is as durable as it gets. */
		break;
	case BLK_T_GET_ID: {
		/* Up to 20 bytes, never more than the driver's buffer. */
		static const char id[ID_BYTES] = "vhu-ramdisk";
		size_t n = data_in < ID_BYTES ? data_in : ID_BYTES;
		written = vhu_iov_from_buf(in, e->n_in, 0, id, n);
		break;
	}
	default:
		status = BLK_S_UNSUPP;
		break;
	}
done:
	vhu_iov_from_buf(in, e->n_in, in_len - 1, &status, 1);
	return (uint32_t)(written + 1);
}

/* The driver kicked a queue: serve everything it made available. */
static void queue_kick(void *opaque, struct vhu_vq *vq)
{
	struct ramdisk *rd = opaque;
	struct iovec iov[IOV_CAP];
	struct vhu_vq_elem e;
	int r;

	while ((r = vhu_vq_pop(vq, &e, iov, IOV_CAP)) != 0) {
		if (r == -E2BIG)
			continue;      /* the library completed it with 0 bytes */
		if (r < 0)
			break;         /* the driver broke the ring: the queue stops */
		vhu_vq_push(vq, &e, serve(rd, &e));
	}
	vhu_vq_notify(vq);
}

static int get_config(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
	struct ramdisk *rd = opaque;

	/* The library has checked offset + len <= config_size. */
	memcpy(buf, (const uint8_t *)&rd->config + offset, len);
	return 0;
}

static const struct vhu_device_ops ops = {
	.queue_kick = queue_kick,
	.get_config = get_config,
	/* No set_config and no writable byte: the guest cannot change the
	 * config space.  No queue_started / queue_stopped: every request is
	 * completed before queue_kick returns, so a queue holds no state. */
};

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s SOCKET [SIZE_MIB]\n"
			"Serve a RAM disk of SIZE_MIB MiB (default 64) as a "
			"vhost-user-blk back-end on the Unix socket SOCKET.\n", argv[0]);
		return 2;
	}
	unsigned long mib = 64;
	if (argc == 3) {
		char *end;
		errno = 0;
		mib = strtoul(argv[2], &end, 10);
		if (errno || *end || mib == 0 || mib > (1ul << 20)) {
			fprintf(stderr, "ramdisk: bad size '%s' (MiB, 1 .. 1048576)\n", argv[2]);
			return 2;
		}
	}

	struct ramdisk rd = { .size = (uint64_t)mib << 20 };
	rd.data = calloc(1, rd.size);
	if (!rd.data) {
		fprintf(stderr, "ramdisk: cannot allocate %lu MiB\n", mib);
		return 1;
	}
	rd.config.capacity = htole64(rd.size / SECTOR);
	rd.config.seg_max = htole32(SEG_MAX);
	rd.config.blk_size = htole32(SECTOR);
	rd.config.num_queues = htole16(1);

	struct vhu_backend_opts o = {
		.ops = &ops,
		.opaque = &rd,
		.features = VHU_BIT(VHU_F_VERSION_1) | VHU_BIT(VHU_F_INDIRECT_DESC) |
			    VHU_BIT(VHU_F_EVENT_IDX) | VHU_BIT(BLK_F_SEG_MAX) |
			    VHU_BIT(BLK_F_BLK_SIZE) | VHU_BIT(BLK_F_FLUSH),
		.num_queues = 1,
		.max_queue_size = QUEUE_SIZE,
		.config_size = sizeof(rd.config),
	};
	struct vhu_backend *b = NULL;
	int r = vhu_backend_new(&o, &b);
	if (r == 0)
		r = vhu_backend_listen(b, argv[1]);
	if (r == 0)
		r = vhu_loop_new(&rd.loop);
	if (r == 0)
		r = vhu_backend_attach(b, rd.loop);
	if (r < 0) {
		fprintf(stderr, "ramdisk: %s: %s\n", argv[1], strerror(-r));
		goto out;
	}

	stop_loop = rd.loop;
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	printf("ramdisk: %lu MiB on %s\n", mib, argv[1]);
	fflush(stdout);
	r = vhu_loop_run(rd.loop);
	if (r < 0)
		fprintf(stderr, "ramdisk: loop: %s\n", strerror(-r));
out:
	vhu_backend_free(b);       /* also unlinks the socket */
	if (rd.loop)
		vhu_loop_free(rd.loop);
	free(rd.data);
	return r < 0 ? 1 : 0;
}
