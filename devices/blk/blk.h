/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk: a virtio-blk device (virtio 1.2, 5.2) served over vhost-user.
 *
 * The device owns an image (raw file or block device), builds the config
 * space, parses requests and runs one io_uring worker thread per queue.
 * It uses only the public vhu headers; the daemon in tools/ wires it to a
 * vhu_backend session.
 */
#ifndef VHU_BLK_H
#define VHU_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vhu/backend.h>
#include <vhu/virtq.h>

/* ---- virtio-blk constants (virtio 1.2, 5.2.3 and 5.2.6) ---- */
#define VHU_BLK_F_SIZE_MAX      1
#define VHU_BLK_F_SEG_MAX       2
#define VHU_BLK_F_RO            5
#define VHU_BLK_F_BLK_SIZE      6
#define VHU_BLK_F_FLUSH         9
#define VHU_BLK_F_TOPOLOGY     10
#define VHU_BLK_F_CONFIG_WCE   11
#define VHU_BLK_F_MQ           12
#define VHU_BLK_F_DISCARD      13
#define VHU_BLK_F_WRITE_ZEROES 14

#define VHU_BLK_T_IN            0
#define VHU_BLK_T_OUT           1
#define VHU_BLK_T_FLUSH         4
#define VHU_BLK_T_GET_ID        8
#define VHU_BLK_T_DISCARD      11
#define VHU_BLK_T_WRITE_ZEROES 13

#define VHU_BLK_S_OK     0
#define VHU_BLK_S_IOERR  1
#define VHU_BLK_S_UNSUPP 2

#define VHU_BLK_SECTOR_SHIFT 9
#define VHU_BLK_SECTOR_SIZE  512u
#define VHU_BLK_ID_BYTES     20
#define VHU_BLK_HDR_SIZE     16
#define VHU_BLK_SEG_SIZE     16
#define VHU_BLK_SEG_F_UNMAP  1u

#define VHU_BLK_CONFIG_SIZE  96
#define VHU_BLK_CONFIG_WCE_OFFSET 32

/* Limits the device advertises and enforces. */
#define VHU_BLK_SEG_MAX          126u
#define VHU_BLK_SIZE_MAX         (1u << 20)
#define VHU_BLK_MAX_DISCARD_SEG  32u
#define VHU_BLK_MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB */
/* Largest read or write: what seg_max segments of size_max bytes hold.  A
 * driver that respects both never exceeds it (5.2.6.1); the bound keeps
 * bounce buffers finite. */
#define VHU_BLK_MAX_TRANSFER     ((size_t)VHU_BLK_SEG_MAX * VHU_BLK_SIZE_MAX)
/* Bounce memory (--cache none, unaligned guest buffers) per queue, at
 * most: requests beyond it wait for memory, large ones go in chunks. */
#define VHU_BLK_BOUNCE_BUDGET    ((size_t)2 << 20)
/* iovec storage per request: data segments plus header/status, with room
 * for guest ranges that cross two memory regions. */
#define VHU_BLK_IOV_CAP          256u

/* ---- request parsing (pure: no I/O, unit-tested over plain iovecs) ---- */

struct vhu_blk_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct vhu_blk_req {
	uint32_t type;
	uint64_t sector;
	/* Data buffers: readable part after the header (OUT, DISCARD,
	 * WRITE_ZEROES) or writable part before the status byte (IN, GET_ID).
	 * Points at the caller's storage. */
	struct iovec *data;
	unsigned n_data;
	size_t data_len;
	/* The status byte: the last byte of the writable buffers. */
	uint8_t *status;
	/* DISCARD / WRITE_ZEROES segments, copied out of guest memory. */
	unsigned n_segs;
	struct vhu_blk_seg segs[VHU_BLK_MAX_DISCARD_SEG];
};

/* What a request is checked against; capacity in 512-byte sectors. */
struct vhu_blk_limits {
	uint64_t capacity;
	unsigned blk_size;        /* 512 or 4096 */
	bool read_only;
	unsigned max_discard_seg;
	uint32_t max_discard_sectors;
	unsigned max_write_zeroes_seg;
	uint32_t max_write_zeroes_sectors;
};

/*
 * Split a descriptor chain into header, data and status (virtio 1.2,
 * 5.2.6: no framing assumptions).  iov[0..n_out) readable, iov[n_out..
 * n_out+n_in) writable; data_iov (capacity cap) receives the data slice.
 * Returns -EINVAL when there is no writable byte for the status (the
 * request can only be given back with 0 bytes written), otherwise a
 * status: VHU_BLK_S_OK when the request is well formed, VHU_BLK_S_IOERR
 * when the header is short or the data cannot be described.
 */
int vhu_blk_req_parse(const struct iovec *iov, unsigned n_out, unsigned n_in,
		      struct vhu_blk_req *req, struct iovec *data_iov,
		      unsigned cap);

/*
 * Check a parsed request against the device (ranges without overflow,
 * alignment, read-only, segment rules) and copy DISCARD / WRITE_ZEROES
 * segments into req->segs.  Returns VHU_BLK_S_OK, _IOERR or _UNSUPP.
 */
int vhu_blk_req_check(struct vhu_blk_req *req, const struct vhu_blk_limits *lim);

/* Bytes the device wrote into the writable buffers for this request when
 * it completes with status st (data for IN / GET_ID, plus the status). */
uint32_t vhu_blk_req_written(const struct vhu_blk_req *req, int st,
			     size_t data_done);

/* Fill the GET_ID answer (up to 20 bytes of the serial, NUL-padded). */
size_t vhu_blk_req_get_id(const struct vhu_blk_req *req, const char *serial);

/* ---- config space (virtio 1.2, 5.2.4) ---- */

struct vhu_blk_config_in {
	uint64_t capacity;  /* sectors */
	unsigned blk_size;
	unsigned discard_align; /* bytes (0: blk_size) */
	unsigned num_queues;
	bool wce;
};

/* Build the 96-byte little-endian config space. */
void vhu_blk_config_build(const struct vhu_blk_config_in *in,
			  uint8_t out[VHU_BLK_CONFIG_SIZE]);

/* ---- the device ---- */

enum vhu_blk_cache { VHU_BLK_CACHE_WRITEBACK = 0, VHU_BLK_CACHE_NONE = 1 };

/* How a queue does its I/O: io_uring, blocking calls on the queue's
 * thread, or io_uring when the kernel allows it (probed at start). */
enum vhu_blk_aio {
	VHU_BLK_AIO_AUTO = 0,
	VHU_BLK_AIO_IO_URING = 1,
	VHU_BLK_AIO_THREADS = 2,
};

/* What the host storage needs (bytes, powers of two), queried when the
 * image is opened. */
struct vhu_blk_geometry {
	unsigned logical;     /* logical block size (BLKSSZGET; 512 for files) */
	unsigned dio_offset;  /* O_DIRECT offset / length alignment */
	unsigned dio_mem;     /* O_DIRECT memory alignment */
	unsigned discard;     /* discard granularity */
};

/*
 * The guest's logical block size for a host: requested (512 or 4096), or
 * 0 for the smallest that works (the host's logical block size, and with
 * --cache none its direct-I/O alignment).  Returns 0 with *out, or
 * -EINVAL with a sentence in why (size bytes) when the combination cannot
 * work, e.g. 512 with O_DIRECT on a 4096-byte-sector device.
 */
int vhu_blk_pick_blk_size(unsigned requested, enum vhu_blk_cache cache,
			  const struct vhu_blk_geometry *g, unsigned *out,
			  char *why, size_t size);

#define VHU_BLK_POLL_US_DEFAULT 50u   /* the daemon's default cap */
#define VHU_BLK_POLL_US_MAX 1000000u
/* poll_us: the back-end's default, VHU_BLK_POLL_US_DEFAULT for files and
 * block devices, 0 for NBD exports and RBD images (a queue's completions
 * come from a server; polling its ring meanwhile takes the CPU that
 * server and the front-end need, and on a small host cost NBD queues a
 * third of their IOPS per CPU-second). */
#define VHU_BLK_POLL_US_AUTO 0xffffffffu
#define VHU_BLK_RECONNECT_DEFAULT 30u /* seconds */

struct vhu_blk_opts {
	/* A file or block device, "null:SIZE", or an NBD URI
	 * (nbd://host[:port]/export, nbd+unix:///export?socket=PATH, nbds...
	 * for TLS) when built with libnbd. */
	const char *path;
	bool read_only;
	const char *serial;      /* NULL: derived from the path */
	unsigned num_queues;     /* 1 .. VHU_BACKEND_MAX_QUEUES */
	unsigned blk_size;       /* 512, 4096, or 0: what the host needs */
	enum vhu_blk_cache cache;
	unsigned queue_depth;    /* in-flight requests per queue; 0 = 128 */
	/* I/O threads: 0 or >= num_queues = one thread per queue; fewer
	 * share threads (queue i on thread i % threads). */
	unsigned threads;
	/* AUTO: io_uring when a probe at start works, else (with a warning)
	 * THREADS.  IO_URING: fail to start without it. */
	enum vhu_blk_aio aio;
	/* Polling (io_uring queues on threads of their own): after the last
	 * request a queue keeps looking at its ring for an adaptive budget of
	 * at most poll_us microseconds (0: off; at most VHU_BLK_POLL_US_MAX;
	 * VHU_BLK_POLL_US_AUTO: the back-end's default)
	 * before it sleeps; poll_always: it never sleeps (a core per queue). */
	unsigned poll_us;
	bool poll_always;
	/* Do not lock the image (see docs/vhu-blk.md, Locking): another
	 * writer then goes unnoticed. */
	bool no_lock;
	/* The image is raw even if it starts like a container format (qcow2,
	 * vmdk, LUKS...): skip the probe that otherwise refuses it. */
	bool format_raw;
	/* Remote images (nbd://...): how long requests wait for a lost
	 * connection to come back before they fail with IOERR (seconds; 0:
	 * at once).  The daemon's default: VHU_BLK_RECONNECT_DEFAULT. */
	unsigned reconnect_timeout;
	/* Optional: on a failure of vhu_blk_new(), a one-line reason for the
	 * operator (a lock conflict, a container format...) is written here;
	 * left untouched when errno says it all. */
	char *err;
	size_t err_len;
	/* NBD: writes the server acknowledged survive it (a persistent
	 * cache): a lost connection does not fail the next FLUSH. */
	bool nbd_persistent_cache;
};

struct vhu_blk_qstats {
	uint64_t requests;
	uint64_t bytes_read;
	uint64_t bytes_written;
	uint64_t errors;
	uint64_t in_flight;
	uint64_t flushes;
	uint64_t discards;      /* DISCARD and WRITE_ZEROES requests */
	/* Writes served write-through (durable before completion:
	 * RWF_DSYNC, or fdatasync for DISCARD / WRITE_ZEROES). */
	uint64_t writes_through;
	uint64_t bounce_bytes;  /* bounce memory held now */
	uint64_t bounce_peak;   /* its high-water mark */
};

struct vhu_blk;

/* Open the image and set up the device.  Returns 0 or -errno. */
int vhu_blk_new(const struct vhu_blk_opts *opts, struct vhu_blk **out);
/* Stops every worker (call vhu_backend_free first) and closes the image. */
void vhu_blk_free(struct vhu_blk *blk);

/* Fill ops, opaque, features, protocol features, queues and config space
 * fields of a backend's options for this device. */
void vhu_blk_backend_opts(struct vhu_blk *blk, struct vhu_backend_opts *o);

/* The image size in bytes (what the capacity was last set from). */
uint64_t vhu_blk_size(const struct vhu_blk *blk);
uint64_t vhu_blk_capacity(const struct vhu_blk *blk); /* sectors */
bool vhu_blk_wce(const struct vhu_blk *blk);
bool vhu_blk_read_only(const struct vhu_blk *blk);
bool vhu_blk_is_blockdev(const struct vhu_blk *blk);
const char *vhu_blk_serial(const struct vhu_blk *blk);
unsigned vhu_blk_num_queues(const struct vhu_blk *blk);
unsigned vhu_blk_blk_size(const struct vhu_blk *blk);
/* The host storage's needs, as queried at open. */
const struct vhu_blk_geometry *vhu_blk_geometry(const struct vhu_blk *blk);
/* Number of I/O threads when started queues all run. */
unsigned vhu_blk_num_threads(const struct vhu_blk *blk);
enum vhu_blk_cache vhu_blk_cache_mode(const struct vhu_blk *blk);
/* The engine in use: VHU_BLK_AIO_IO_URING or VHU_BLK_AIO_THREADS. */
enum vhu_blk_aio vhu_blk_aio(const struct vhu_blk *blk);

/* Can this process set up an io_uring?  0, or the -errno of the refusal
 * (-ENOSYS under a seccomp filter, -EPERM with kernel.io_uring_disabled). */
int vhu_blk_probe_io_uring(void);

/*
 * Resize a regular file to size bytes (a non-zero multiple of the block
 * size).  Growing needs nothing more; shrinking needs
 * VHU_BLK_RESIZE_SHRINK (-EPERM without it) and quiesces the started
 * queues (in-flight requests complete first, none run meanwhile), truncates
 * and publishes the new capacity before the queues resume, so no write
 * lands past the new end.  A block device's size follows the device, an
 * NBD export's the server: -EOPNOTSUPP (vhu_blk_resize_refusal() says
 * why; use vhu_blk_refresh_size()).  Returns 0 or -errno; the
 * caller then announces the change with vhu_backend_config_changed().
 * Control thread only (where queue_started/queue_stopped run).
 */
#define VHU_BLK_RESIZE_SHRINK 1u
int vhu_blk_resize(struct vhu_blk *blk, uint64_t size, unsigned flags);
/* Why the last vhu_blk_resize() failed, when another user of the image
 * holds what a resize needs (-EBUSY: a process that does not share the
 * resize permission of a file, another client's exclusive lock of an RBD
 * image) or the storage did not finish it in time (-ETIMEDOUT: an RBD
 * cluster that does not answer; the resize goes on), as a sentence; NULL
 * otherwise. */
const char *vhu_blk_resize_error(const struct vhu_blk *blk);
/* Re-read the image size (a file grown outside, a resized block device).
 * A larger size is taken at once; a smaller one only as it is once the
 * queues are quiesced (as for a shrinking resize).  Returns 1 when the
 * capacity changed, 0 when not, or -errno.  Control thread only. */
int vhu_blk_refresh_size(struct vhu_blk *blk);

/* Image back-ends (devices/blk/backend.h): the kinds compiled in,
 * space-separated ("file null nbd"); this image's kind ("file", "null",
 * "nbd") and state ("open"; remote ones "connected", "reconnecting",
 * "failed"); why vhu_blk_resize() cannot work on this image (a sentence),
 * or NULL. */
const char *vhu_blk_backends(void);
const char *vhu_blk_backend_kind(const struct vhu_blk *blk);
const char *vhu_blk_backend_state(const struct vhu_blk *blk);
const char *vhu_blk_resize_refusal(const struct vhu_blk *blk);

/* An fd that becomes readable when the image changed outside this
 * process (an RBD image resized by another client), or -1 when the
 * back-end cannot tell.  Watch it in the control thread's loop and call
 * vhu_blk_refresh_size() when it is readable (that clears it). */
int vhu_blk_change_fd(const struct vhu_blk *blk);

/* The container format whose header starts buf (qemu-img's name:
 * "qcow2", "qed", "vmdk", "vdi", "vhdx", "vpc", "luks"), or NULL. */
const char *vhu_blk_probe_format(const void *buf, size_t len);

/*
 * Image locking (docs/vhu-blk.md, Locking).  OFF: --lock off; NONE: no
 * lock (the null device, or file locks unsupported here); SHARED: the
 * read permission (a writable device whose queues are stopped, or a
 * read-only one); WRITE: the write permission, held while the front-end
 * runs the queues; CONFLICT: the queues run but another process holds
 * the write permission, so every request fails with an I/O error.
 */
enum vhu_blk_lock_state {
	VHU_BLK_LOCK_OFF,
	VHU_BLK_LOCK_NONE,
	VHU_BLK_LOCK_SHARED,
	VHU_BLK_LOCK_WRITE,
	VHU_BLK_LOCK_CONFLICT,
};
enum vhu_blk_lock_state vhu_blk_lock_state(const struct vhu_blk *blk);
/* "off", "none", "shared", "write", "conflict". */
const char *vhu_blk_lock_name(enum vhu_blk_lock_state s);

/* Per-queue counters (index < num_queues). */
int vhu_blk_queue_stats(const struct vhu_blk *blk, unsigned index,
			struct vhu_blk_qstats *st);

#endif
