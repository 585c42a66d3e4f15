/* SPDX-License-Identifier: MIT */
/*
 * vhu-vsock: a virtio-vsock device (virtio 1.2, 5.10) on libvhu's public
 * API that connects guest stream sockets to host Unix sockets, in the
 * "hybrid vsock" convention of Firecracker and vhost-device-vsock:
 *
 *   - a host program connects to the Unix socket uds_path, writes
 *     "CONNECT <port>\n", reads "OK <host-port>\n" once the guest's
 *     listener on <port> accepted, then has a byte stream to it;
 *   - a guest that connects to host (CID 2) port P is connected to the
 *     Unix socket "<uds_path>_<P>"; nobody listening there is a reset.
 *
 * Everything runs on one thread: the session's loop.  The device watches
 * its host sockets in the same vhu_loop as the session and serves the
 * queues from queue_kick, so nothing is locked.
 */
#ifndef VHU_VSOCK_H
#define VHU_VSOCK_H

#include <stdint.h>

#include <vhu/backend.h>
#include <vhu/loop.h>

#define VHU_VSOCK_DEVICE_ID 19
#define VHU_VSOCK_BUF_ALLOC_DEFAULT (256u << 10)
#define VHU_VSOCK_BUF_ALLOC_MAX (64u << 20)

struct vhu_vsock;

struct vhu_vsock_opts {
	uint64_t guest_cid;      /* 3 .. 2^32 - 2 */
	/* The host side's Unix socket (created, and unlinked at free), and
	 * the prefix of the sockets guest connections go to.  NULL: no host
	 * listener, and every guest connection is refused. */
	const char *uds_path;
	/* Bytes each connection buffers towards the host (what the guest is
	 * told it may send before the host reads): 0 = default. */
	uint32_t buf_alloc;
	/* How long a host program may take to send its CONNECT line, and the
	 * guest to answer the REQUEST that follows: 0 = 10 s. */
	unsigned connect_timeout_ms;
};

struct vhu_vsock_stats {
	uint64_t conns_open;       /* connections in the table now */
	uint64_t conns_total;      /* connections ever established */
	uint64_t bytes_to_host;    /* payload written to host sockets */
	uint64_t bytes_to_guest;   /* payload put in rx buffers */
	uint64_t rst_sent;
	uint64_t pkts_dropped;     /* tx packets that broke the rules */
};

/* Create the device, its host listener on loop (which must outlive it). */
int vhu_vsock_new(const struct vhu_vsock_opts *o, struct vhu_loop *loop,
		  struct vhu_vsock **out);
/* Closes every connection and the listener (unlinking its socket). */
void vhu_vsock_free(struct vhu_vsock *v);
/* The session options that serve this device (ops, features, queues,
 * config space). */
void vhu_vsock_backend_opts(struct vhu_vsock *v, struct vhu_backend_opts *bo);
void vhu_vsock_get_stats(const struct vhu_vsock *v, struct vhu_vsock_stats *s);

#endif
