/* SPDX-License-Identifier: MIT */
/*
 * Interfaces between the library's own modules (vhu__* names, never
 * exported).  Dependencies point one way: proto <- msg <- backend/frontend;
 * the ring code sees only struct vhu__mem, never a session.
 */
#ifndef VHU_INTERNAL_H
#define VHU_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vhu/vhu.h>
#include <vhu/virtq.h>

#include "proto.h"

#define VHU__UNUSED __attribute__((unused))
#define VHU__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------- structures that grow (ABI) */
/* Bytes of a structure up to and including member (what a caller built
 * against the release whose last member that was knows about). */
#define VHU__SIZE_THROUGH(type, member)                                       \
	(offsetof(type, member) + sizeof(((type *)0)->member))

/*
 * Take a caller's structure of src_size bytes into ours (dst_size bytes):
 * copy what both know, zero what the caller does not know about (an older
 * program), and refuse a newer program's non-zero bytes we do not know
 * (-E2BIG: it asked for something this library cannot do).  -EINVAL when
 * src_size is below min_size (the first release's size).
 */
int vhu__struct_in(void *dst, size_t dst_size, const void *src,
		   size_t src_size, size_t min_size);

/* ---------------------------------------------------------------- log.c */
void vhu__log(enum vhu_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Rate-limited variant for what a guest or peer can trigger at will:
 * at most a burst of lines per second per call site. */
#define vhu__log_rl(level, ...)                                               \
	do {                                                                  \
		static struct vhu__ratelimit vhu__rl_;                        \
		if (vhu__ratelimit_ok(&vhu__rl_))                             \
			vhu__log(level, __VA_ARGS__);                         \
	} while (0)
struct vhu__ratelimit {
	int64_t window_start_ms;
	unsigned count;
	unsigned suppressed;
};
bool vhu__ratelimit_ok(struct vhu__ratelimit *rl);
#define vhu__err(...)   vhu__log(VHU_LOG_ERROR, __VA_ARGS__)
#define vhu__warn(...)  vhu__log(VHU_LOG_WARN, __VA_ARGS__)
#define vhu__info(...)  vhu__log(VHU_LOG_INFO, __VA_ARGS__)
#define vhu__debug(...) vhu__log(VHU_LOG_DEBUG, __VA_ARGS__)

/* --------------------------------------------------------------- sock.c */
/* How long the rest of a message may take once its first byte arrived
 * (blocking receive below; the back-end's partial-message timer). */
#define VHU__SOCK_TIMEOUT_MS 5000

/*
 * Receive one message (header, payload, fds) from a non-blocking stream
 * socket.  Returns 1 when *msg holds a message (fds[0..*nfds) are then
 * owned by the caller, CLOEXEC), 0 on a clean EOF before any byte,
 * -EAGAIN when nothing is there, -EMSGSIZE when the header's size exceeds
 * VHU_MAX_PAYLOAD or more than VHU_MAX_FDS fds arrived (MSG_CTRUNC),
 * -ECONNRESET on EOF mid-message, -ETIMEDOUT when the rest of a started
 * message does not come within VHU__SOCK_TIMEOUT_MS, or another -errno.
 * On every failure all received fds are closed and *nfds is 0.
 * The header's flags are not checked here (see msg.c).
 */
int vhu__sock_recv(int fd, struct vhu_msg *msg, int *fds, unsigned *nfds);

/* Like vhu__sock_recv() but wait up to timeout_ms (-1 forever) for the
 * first byte; -ETIMEDOUT when nothing came. */
int vhu__sock_recv_timeout(int fd, struct vhu_msg *msg, int *fds,
			   unsigned *nfds, int timeout_ms);

/*
 * Incremental receive (sock-rx.c): a message that arrives in pieces is
 * kept across calls, so a caller that must never block (the back-end
 * session) reads what is there and returns.  fds that came with the
 * first fragment are held in the state until the message completes or
 * the state is reset (then closed).
 */
struct vhu__rx {
	struct vhu_msg msg;         /* header, then hdr.size payload bytes */
	size_t got;                 /* bytes of msg received so far */
	int fds[VHU_MAX_FDS];
	unsigned nfds;
	bool extra;                 /* more fds than VHU_MAX_FDS, or CTRUNC */
	int64_t started_ms;         /* CLOCK_MONOTONIC ms of the first byte */
};
void vhu__rx_init(struct vhu__rx *rx);
/* Close held fds and forget the partial message. */
void vhu__rx_reset(struct vhu__rx *rx);
/* True when part of a message is held. */
bool vhu__rx_partial(const struct vhu__rx *rx);
/*
 * Read what fd has, never waiting.  Returns 1 when rx->msg is complete:
 * the caller then owns rx->fds[0..rx->nfds) and must call
 * vhu__rx_done() (which forgets them without closing) before the next
 * call.  -EAGAIN: no complete message yet (a partial one is kept).
 * 0: clean EOF before any byte.  -ECONNRESET EOF mid-message,
 * -EMSGSIZE size above VHU_MAX_PAYLOAD or too many fds, other -errno;
 * on every failure the state is reset (fds closed).
 */
int vhu__rx_read(int fd, struct vhu__rx *rx);
void vhu__rx_done(struct vhu__rx *rx);
/* After vhu__rx_read() returned 1: copy the message and its fds out (the
 * caller owns them) and make rx ready for the next one. */
void vhu__rx_take(struct vhu__rx *rx, struct vhu_msg *msg, int *fds,
		  unsigned *nfds);
/* CLOCK_MONOTONIC in milliseconds. */
int64_t vhu__now_ms(void);
/* One non-blocking recvmsg() of up to len bytes into buf, close-on-exec
 * SCM_RIGHTS fds collected into fds[*nfds..VHU_MAX_FDS) (extras closed,
 * and a truncated control buffer, flagged in *extra).  Returns the bytes
 * read (0: EOF) or -errno (-EINTR and -EAGAIN included). */
ssize_t vhu__sock_recv_some(int fd, void *buf, size_t len, int *fds,
			    unsigned *nfds, bool *extra);

/* Send header + hdr.size payload bytes + fds.  Handles EINTR, EAGAIN (waits
 * up to VHU__SOCK_TIMEOUT_MS) and short writes; MSG_NOSIGNAL.  The fds stay
 * the caller's.  Returns 0 or -errno. */
int vhu__sock_send(int fd, const struct vhu_msg *msg, const int *fds,
		   unsigned nfds);

/* Send len raw bytes, with nfds (<= VHU__SOCK_SEND_MAX_FDS) fds on the
 * first byte; same waiting rules as vhu__sock_send().  No framing checks:
 * tests and the conformance checker use it to send what a peer must
 * refuse. */
#define VHU__SOCK_SEND_MAX_FDS 16
int vhu__sock_send_bytes(int fd, const void *buf, size_t len, const int *fds,
			 unsigned nfds);

/* Add 1 to an eventfd (kick, call, err).  A saturated counter (EAGAIN)
 * already means "signalled".  Returns 0, or -errno (-EBADF for fd < 0). */
int vhu__eventfd_signal(int fd);

/* Close fds[0..n) that are >= 0. */
void vhu__close_fds(int *fds, unsigned n);

/* Set O_NONBLOCK and FD_CLOEXEC. */
int vhu__set_nonblock(int fd);

/* -------------------------------------------------------------- memfd.c */
/* A CLOEXEC memfd of size bytes whose size is sealed (no shrink, no grow,
 * no further seals): what we share cannot be truncated under us or under
 * the peer.  Returns the fd or -errno. */
int vhu__memfd_sealed(const char *name, size_t size);
/* The same, mapped shared and writable at *addr.  Returns the fd or
 * -errno (then nothing is left open). */
int vhu__memfd_mapped(const char *name, size_t size, void **addr);
/* Release peer-shared memory: munmap addr (when not NULL) and close fd
 * (when >= 0); the caller clears its fields. */
void vhu__shm_release(void *addr, size_t size, int fd);

/* ------------------------------------------------------------- sigbus.c */
/* Registry of mappings of peer memory (see sigbus.c).  add returns a
 * slot (>= 0) for del, or -errno (-ENOSPC: the registry is at its cap):
 * the caller then unmaps and fails, it never keeps an unprotected
 * mapping. */
int vhu__guard_add(void *addr, size_t len, size_t granule);
void vhu__guard_del(int slot);
/* Counts absorbed faults; 0 until the first. */
unsigned vhu__guard_gen(void);
/* Did this thread take an absorbed fault since it last asked? */
bool vhu__guard_take_thread_fault(void);
/* Does [addr, addr + len) touch memory replaced after a fault? */
bool vhu__guard_lost(const void *addr, size_t len);

/* ---------------------------------------------------------------- mem.c */
struct vhu__mem_region {
	uint64_t gpa;         /* guest physical start */
	uint64_t size;        /* bytes */
	uint64_t uva;         /* front-end virtual start (ring addresses) */
	uint64_t mmap_offset;
	uint8_t *host;        /* our address of gpa */
	void *mmap_addr;      /* what to munmap (NULL: not ours) */
	size_t mmap_size;
	int fd;               /* owned, -1 if none */
	int guard;            /* sigbus.c slot, -1 none */
};

struct vhu__mem {
	unsigned n;                   /* regions in use, sorted by gpa */
	unsigned max;                 /* capacity: VHU_MAX_MEM_SLOTS */
	struct vhu__mem_region r[VHU_MAX_MEM_SLOTS];
};

void vhu__mem_init(struct vhu__mem *m);
/* Unmap and close everything. */
void vhu__mem_clear(struct vhu__mem *m);

/*
 * Map a region the front-end sent (mmap of fd at mmap_offset, shared,
 * read/write) and insert it.  Checks size != 0, gpa + size, uva + size and
 * mmap_offset + size for overflow, and overlap (in gpa) with existing
 * regions.  On success the table owns fd; on failure the caller keeps it.
 * -EINVAL bad region, -EEXIST overlap, -ENOSPC table full or SIGBUS guard
 * registry full (sigbus.c; nothing stays mapped), -errno mmap.
 */
int vhu__mem_add(struct vhu__mem *m, const struct vhu_mem_region *wr, int fd);

/* Same, for memory the caller already has at host (tests, fuzzing, the
 * front-end's own view).  Nothing is unmapped or closed on removal. */
int vhu__mem_add_host(struct vhu__mem *m, uint64_t gpa, uint64_t size,
		      uint64_t uva, void *host);

/* Remove the region matching wr (gpa, size, uva); -ENOENT if none. */
int vhu__mem_remove(struct vhu__mem *m, const struct vhu_mem_region *wr);

/*
 * Translate the guest-physical range [gpa, gpa + len) into iovecs, one per
 * region it crosses (regions adjacent in gpa, each with its own mapping).
 * Returns the number of iovecs (0 when len == 0), -EFAULT when any byte is
 * unmapped or gpa + len overflows, -E2BIG when cap is too small.
 */
int vhu__mem_gpa_to_iov(const struct vhu__mem *m, uint64_t gpa, uint64_t len,
			struct iovec *iov, unsigned cap);

/* A pointer to [gpa, gpa + len) only when that whole range lies inside
 * one region; NULL otherwise. */
void *vhu__mem_gpa_to_va(const struct vhu__mem *m, uint64_t gpa, uint64_t len);

/* Same for a front-end virtual address (SET_VRING_ADDR, log). */
void *vhu__mem_uva_to_va(const struct vhu__mem *m, uint64_t uva, uint64_t len);

/* The guest-physical address of our pointer p when [p, p + len) lies
 * inside one region: 0 and *gpa, else -EFAULT. */
int vhu__mem_va_to_gpa(const struct vhu__mem *m, const void *p, uint64_t len,
		       uint64_t *gpa);

/* The region holding front-end address uva: our pointer to it in *host
 * and how many of len bytes from there lie in that region (*got, >= 1).
 * -EFAULT when no region holds uva. */
int vhu__mem_uva_span(const struct vhu__mem *m, uint64_t uva, uint64_t len,
		      uint8_t **host, uint64_t *got);

/* -------------------------------------------------------------- iotlb.c */
/*
 * The IOTLB of a session whose driver negotiated VIRTIO_F_ACCESS_PLATFORM
 * (vhost-user.rst "IOMMU support"): I/O virtual address ranges the
 * front-end maps (IOTLB_MSG update) to front-end addresses (uaddr, the
 * memory table's userspace_addr space) with read and/or write permission.
 * Entries are disjoint, sorted by iova: an update replaces whatever it
 * overlaps, an invalidation removes any overlapped part (splitting an
 * entry it covers only in part).
 *
 * Concurrency: the session thread updates and invalidates under the
 * write lock; queue threads look up under the read lock.  A lookup sees
 * the table either before or after a change, never in between.  An
 * invalidation does not reach buffers a pop already translated: an
 * element popped before it may still be read or written (always inside
 * the memory table's regions, never elsewhere).
 */
#define VHU__IOTLB_MAX 8192u
struct vhu__iotlb_entry {
	uint64_t iova;
	uint64_t last;        /* inclusive: iova + size - 1 never wraps */
	uint64_t uaddr;
	uint8_t perm;         /* VHU_IOTLB_PERM_* */
};
struct vhu__iotlb {
	void *lock;           /* pthread_rwlock_t, allocated by init */
	struct vhu__iotlb_entry *e;
	unsigned n, cap;
};
/* 0 or -ENOMEM. */
int vhu__iotlb_init(struct vhu__iotlb *t);
void vhu__iotlb_destroy(struct vhu__iotlb *t);
/* Forget every entry. */
void vhu__iotlb_clear(struct vhu__iotlb *t);
/* Map [iova, iova + size) to uaddr with perm: -EINVAL for size 0, a range
 * (iova or uaddr side) that wraps, perm not RO/WO/RW; -ENOMEM.  At
 * VHU__IOTLB_MAX entries the table is emptied first (a cache). */
int vhu__iotlb_update(struct vhu__iotlb *t, uint64_t iova, uint64_t size,
		      uint64_t uaddr, uint8_t perm);
/* Remove [iova, iova + size) (size 0 or a wrapping end: to the top of the
 * address space).  A split with the table full removes the whole entry;
 * -ENOMEM when a split needs memory that is not there (nothing changed). */
int vhu__iotlb_invalidate(struct vhu__iotlb *t, uint64_t iova, uint64_t size);
/* Translate iova for an access needing perm: 0 with *uaddr and *len (the
 * bytes from iova to the end of its entry, at most UINT64_MAX), -ENOENT
 * when no entry holds iova (a miss), -EACCES when its entry lacks perm. */
int vhu__iotlb_lookup(struct vhu__iotlb *t, uint64_t iova, uint8_t perm,
		      uint64_t *uaddr, uint64_t *len);
/* Entries in the table (tests). */
unsigned vhu__iotlb_count(struct vhu__iotlb *t);

/* ------------------------------------------------------- virtq-log.c */
/*
 * A dirty log (vhost-user.rst "Migration"): bit (page % 8) of byte
 * (page / 8), page = guest-physical address / 4096.  The session maps it
 * and owns it; a queue only points at it (vq->log) while it is stopped
 * and restarted around every change, so the ring code never sees a log
 * come or go under it.
 */
#define VHU__LOG_PAGE_SHIFT 12
struct vhu__dirty_log {
	uint8_t *bits;         /* where guest-physical 0 is logged */
	uint64_t size;         /* bytes of bitmap */
	int signal_fd;         /* SET_LOG_FD eventfd, -1 none */
};
/* Bytes of log that cover guest-physical [0, end): a bit per page. */
uint64_t vhu__log_bytes_for(uint64_t end);
/* Words a queue gathers before it writes them to the log. */
#define VHU__LOG_CACHE 4
struct vhu__log_cache {
	uint64_t word;         /* page / 64 */
	uint64_t mask;
};

/* ------------------------------------------------------- virtq-split.c */
/*
 * A virtqueue.  The control path (backend.c) fills the configuration
 * fields while the queue is stopped; the data path (virtq-split.c) runs in
 * the device's thread while it is started.
 */
struct vhu_vq {
	/* configuration, written by the control path only while stopped */
	unsigned index;
	const struct vhu__mem *mem;
	uint16_t size;             /* descriptors; power of two, 0 = unset */
	bool event_idx;            /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;             /* VIRTIO_F_INDIRECT_DESC negotiated */
	bool addr_set;             /* SET_VRING_ADDR received */
	bool enabled;              /* SET_VRING_ENABLE (or no protocol features) */
	bool kick_set;             /* SET_VRING_KICK received (fd or polling) */
	bool started;              /* handed to the device */
	/* The control path stops the queue only to start it again at the
	 * same positions (a dirty-logging switch, a memory change, a new
	 * call fd...): set around that queue_stopped and the queue_started
	 * that follows (vhu_vq_is_restarting()). */
	bool restarting;
	uint32_t addr_flags;
	uint64_t desc_uva, avail_uva, used_uva, log_gpa;
	int kick_fd;               /* owned, -1 none */
	int call_fd;               /* owned, -1 none */
	int err_fd;                /* owned, -1 none */

	/* ring pointers, set by vhu__vq_map() */
	struct vhu_vring_desc *desc;
	volatile uint16_t *avail;  /* flags, idx, ring[size], used_event */
	volatile uint16_t *used;   /* flags, idx, then used elems; avail_event after */

	/* data-path state */
	uint16_t last_avail_idx;   /* next avail entry to pop */
	uint16_t shadow_avail_idx; /* last avail->idx read */
	uint16_t used_idx;         /* next used entry to fill */
	uint16_t signalled_used;   /* used_idx at the last notification */
	bool signalled_used_valid;
	bool broken;
	unsigned inflight;         /* popped, not yet pushed */

	void *priv;                /* device-private */

	/* Dirty logging (virtq-log.c): NULL when off; log_used says whether
	 * used-ring writes are logged at log_gpa (SET_VRING_ADDR flag LOG). */
	const struct vhu__dirty_log *log;
	bool log_used;
	unsigned log_n;            /* cache entries in use */
	int64_t log_signalled_ms;  /* last signal_fd write */
	struct vhu__log_cache log_cache[VHU__LOG_CACHE];

	/*
	 * Packed ring (virtio 1.2, 2.8), when packed is set: desc is the
	 * descriptor ring (struct vhu__pdesc), avail the driver event
	 * suppression area, used the device event suppression area;
	 * last_avail_idx and used_idx are ring positions (< size).
	 */
	bool packed;               /* VIRTIO_F_RING_PACKED negotiated */
	bool pk_avail_wrap;        /* wrap counter at last_avail_idx */
	bool pk_used_wrap;         /* wrap counter at used_idx */
	bool pk_kicks_off;         /* device area says DISABLE */
	uint32_t pk_used_since;    /* ring positions used since last notify */
	uint16_t *pk_chain;        /* ring positions per buffer id in
				    * flight (0: not in flight); owned */

	/* Inflight tracking (virtq-inflight.c, both layouts): the
	 * queue's record in the shared region, NULL when off (at most one of
	 * the two, by layout). */
	struct vhu__inflight_split *inf;
	struct vhu__inflight_packed *infp;
	uint64_t inf_counter;      /* next pop's counter */
	uint16_t *inf_resubmit;    /* heads (split: descriptor indexes;
				    * packed: record entries) to pop again,
				    * counter order; owned */
	uint16_t inf_n, inf_pos;   /* entries in it, next to hand out */
	bool inf_resumed;          /* the last start took over a record a
				    * back-end (maybe an earlier process)
				    * had written, instead of a fresh one */
	/* Packed record, our private view (never read back from the region):
	 * pk_next[size] the entries' links, pk_num[size] a recovered head
	 * entry's descriptor count, pk_head/pk_last[size] per buffer id in
	 * flight its first and last entry; one allocation (pk_next), owned.
	 * pk_free is the free list's head. */
	uint16_t *pk_next, *pk_num, *pk_head, *pk_last;
	uint16_t pk_free;

	unsigned guard_seen;       /* vhu__guard_gen() at the last check */

	/* ACCESS_PLATFORM negotiated: every ring and buffer address is an
	 * I/O virtual address translated through this IOTLB (iotlb.c);
	 * NULL: ring addresses are front-end addresses and buffer
	 * addresses guest-physical.  Set by the control path while stopped. */
	struct vhu__iotlb *iotlb;
	/* A pop waits for a translation (iotlb.c): the session's eventfd to
	 * tell (not owned, -1 none), and the state shared with it (atomic:
	 * the queue's thread writes, the session reads and clears). */
	int iotlb_miss_fd;
	uint32_t iotlb_waiting;
	uint32_t iotlb_miss_pending;
	uint64_t iotlb_miss_iova;
	uint8_t iotlb_miss_perm;
};

/* Bring a vq to its initial state (fds -1, nothing set). */
void vhu__vq_init(struct vhu_vq *vq, unsigned index, const struct vhu__mem *mem);
/* Close owned fds and return to the initial state (keeps index, mem). */
void vhu__vq_reset(struct vhu_vq *vq);
/* Translate desc/avail/used addresses through mem (uva) into pointers;
 * checks each ring's full extent for size.  -EFAULT when unmapped,
 * -EINVAL when size is unset. */
int vhu__vq_map(struct vhu_vq *vq);
/* Sizes in bytes of the three split-ring areas for a queue size. */
size_t vhu__vring_desc_bytes(unsigned size);
size_t vhu__vring_avail_bytes(unsigned size);
size_t vhu__vring_used_bytes(unsigned size);

/*
 * The data path each layout implements (vhu__split_* in virtq-split.c,
 * vhu__packed_* in virtq-packed.c); virtq.c dispatches the public
 * vhu_vq_* calls to one of them by vq->packed.  should_notify: does the
 * driver want a call now (the suppression state is updated)?  Called on a
 * mapped queue that is not broken only.
 */
#define VHU__LAYOUT_DATA_PATH(l)                                              \
	int vhu__##l##_pop(struct vhu_vq *vq, struct vhu_vq_elem *elem,       \
			   struct iovec *iov, unsigned iov_cap,               \
			   unsigned pop_flags);                               \
	void vhu__##l##_push(struct vhu_vq *vq,                               \
			     const struct vhu_vq_elem *elem, uint32_t written); \
	bool vhu__##l##_should_notify(struct vhu_vq *vq);                     \
	void vhu__##l##_disable_notify(struct vhu_vq *vq);                    \
	bool vhu__##l##_enable_notify(struct vhu_vq *vq);                     \
	bool vhu__##l##_has_work(struct vhu_vq *vq)

/* Life cycle of a split ring (and of the state both layouts share). */
void vhu__split_init(struct vhu_vq *vq, unsigned index,
		     const struct vhu__mem *mem);
int vhu__split_map(struct vhu_vq *vq);
void vhu__split_reset(struct vhu_vq *vq);
VHU__LAYOUT_DATA_PATH(split);

/*
 * Translate a driver address for the data path: through vq->iotlb when
 * set (IOVA -> uaddr -> ours, each step needing perm), else as a
 * guest-physical address.  Contiguous pieces are merged.  Same returns
 * as vhu__mem_gpa_to_iov(), and -ENOENT (IOTLB miss: *miss, when not
 * NULL, is the first IOVA without a translation) or -EACCES (permission)
 * with an IOTLB.
 */
int vhu__vq_xlate_iov(const struct vhu_vq *vq, uint64_t addr, uint64_t len,
		      uint8_t perm, struct iovec *iov, unsigned cap,
		      uint64_t *miss);
/* Our pointer to [addr, addr + len) when it is contiguous here: a
 * guest-physical address, or an IOVA with vq->iotlb.  NULL otherwise. */
void *vhu__vq_xlate_va(const struct vhu_vq *vq, uint64_t addr, uint64_t len,
		       uint8_t perm);
/* The same with the reason: 0 and *out, -ENOENT (*miss set as above),
 * -EACCES, -EFAULT (not in guest memory or not contiguous). */
int vhu__vq_xlate_ptr(const struct vhu_vq *vq, uint64_t addr, uint64_t len,
		      uint8_t perm, void **out, uint64_t *miss);
/*
 * A pop found no translation for IOVA iova (perm): the queue waits for
 * the front-end (see iotlb.c).  Records the miss for the session and
 * signals vq->iotlb_miss_fd, once per distinct miss while waiting;
 * vhu_vq_has_work() and vhu_vq_enable_notify() report nothing until the
 * session clears the wait (vhu__vq_iotlb_resume()) after an update.
 */
void vhu__vq_iotlb_wait(struct vhu_vq *vq, uint64_t iova, uint8_t perm);
/* Session side: take a recorded miss (true with *iova, *perm). */
bool vhu__vq_iotlb_take_miss(struct vhu_vq *vq, uint64_t *iova,
			     uint8_t *perm);
/* Session side, after an IOTLB update: end a wait and kick the queue so
 * the device pops again.  Returns whether the queue was waiting. */
bool vhu__vq_iotlb_resume(struct vhu_vq *vq);
/* The same for a ring address (SET_VRING_ADDR): a front-end address, or
 * an IOVA with vq->iotlb. */
void *vhu__vq_ring_va(const struct vhu_vq *vq, uint64_t addr, uint64_t len,
		      uint8_t perm);

/* ------------------------------------------------------- virtq-chain.c */
/* A compiler barrier: after it, the compiler cannot assume guest memory
 * still holds what a local was copied from, so it never re-reads the
 * guest in place of the local. */
#define VHU__GUEST_COPIED() __asm__ volatile("" ::: "memory")
/* virtio 1.2, 2.7.5.2 and 2.8.5: a chain (an indirect table's entries
 * included) carries at most 2^32 bytes, which also fits the used u32
 * length. */
#define VHU__CHAIN_MAX_BYTES (1ull << 32)
/* One indirect table is bounded independently of the queue size. */
#define VHU__INDIRECT_MAX_ENTRIES 65536u

/* The chain a pop is collecting, for either layout. */
struct vhu__chain {
	struct iovec *iov;
	unsigned cap;
	unsigned n;
	unsigned n_out;
	uint64_t bytes;
	bool seen_write;
	bool walk_on;    /* more iovecs than cap: set overflow and walk on
			  * (packed: the buffer completes empty) instead of
			  * failing with -E2BIG (split) */
	bool overflow;
	/* -EAGAIN: a translation is missing (ACCESS_PLATFORM): the first
	 * IOVA without one and the access needed */
	uint64_t miss_iova;
	uint8_t miss_perm;
	uint64_t wr_addr; /* the last writable buffer (len 0: none) */
	uint32_t wr_len;
	const char *why; /* set with -EIO */
};
/* Add one copied and decoded buffer descriptor (wr: device writable):
 * 0, -E2BIG (iovecs full, !walk_on), -EAGAIN (IOTLB miss: c->miss_*; the
 * pop takes nothing and waits, vhu__vq_iotlb_wait()) or -EIO with
 * c->why.  A zero-length
 * buffer carries nothing: it adds no iovec and is not checked. */
int vhu__chain_add(const struct vhu_vq *vq, struct vhu__chain *c,
		   uint64_t addr, uint32_t len, bool wr);
/* Our pointer to an indirect table (read-only access) for c's pop: 0,
 * -EAGAIN (IOTLB miss, c->miss_*) or -EIO with c->why. */
int vhu__chain_table(const struct vhu_vq *vq, struct vhu__chain *c,
		     uint64_t addr, uint32_t len, const void **table);
/* Mark the queue broken (once): log why, signal the err eventfd. */
void vhu__vq_break(struct vhu_vq *vq, const char *why);
/* After a fault the SIGBUS guard absorbed (sigbus.c): when this thread
 * faulted or the queue's rings, inflight record or dirty log are lost,
 * mark it broken (error fd signalled) and return true. */
bool vhu__vq_check_lost(struct vhu_vq *vq);

/* ------------------------------------------------------ virtq-packed.c */
/* Packed descriptor (virtio 1.2, 2.8.13), little-endian in the ring. */
struct vhu__pdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t id;
	uint16_t flags;
};
_Static_assert(sizeof(struct vhu__pdesc) == 16, "pdesc");
#define VHU__PDESC_F_AVAIL (1u << 7)
#define VHU__PDESC_F_USED  (1u << 15)
/* Event suppression flags (2.8.14): {le16 off_wrap; le16 flags}. */
#define VHU__PEVENT_ENABLE  0u
#define VHU__PEVENT_DISABLE 1u
#define VHU__PEVENT_DESC    2u
/* Bytes of the descriptor ring and of each event suppression area. */
size_t vhu__packed_ring_bytes(unsigned size);
#define VHU__PEVENT_BYTES 4u

/* Map (and allocate the per-buffer table), -EINVAL for a bad size,
 * alignment or position, -EFAULT unmapped, -ENOMEM. */
int vhu__packed_map(struct vhu_vq *vq);
/* Free what vhu__packed_map() allocated. */
void vhu__packed_release(struct vhu_vq *vq);
/* vhost-user.rst SET/GET_VRING_BASE for packed rings: bits 0-14 avail
 * position, 15 avail wrap counter, 16-30 used position, 31 used wrap. */
void vhu__packed_set_base(struct vhu_vq *vq, uint32_t num);
uint32_t vhu__packed_get_base(const struct vhu_vq *vq);
VHU__LAYOUT_DATA_PATH(packed);
/* Fill a VHU_VQ_POP_PARTIAL element from an overflowed chain: the
 * buffers that fit, flag VHU_VQ_ELEM_F_TRUNCATED. */
void vhu__vq_partial(const struct vhu_vq *vq, struct vhu_vq_elem *elem,
		     uint16_t id, const struct vhu__chain *c);
/* Fill a VHU_VQ_ELEM_F_TRUNCATED element (see vhu_vq_pop_flags): iov[0]
 * is the last byte of the writable buffer [wr_addr, wr_addr + wr_len),
 * none when wr_len is 0. */
void vhu__vq_truncated(const struct vhu_vq *vq, struct vhu_vq_elem *elem,
		       uint16_t id, struct iovec *iov, unsigned iov_cap,
		       uint64_t wr_addr, uint32_t wr_len);

/* --------------------------------------------------- virtq-inflight.c */
/* vhost-user.rst "Inflight I/O tracking", split ring layout (shared with
 * the front-end, native endian like the rest of the message payloads). */
struct vhu__inflight_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
};
_Static_assert(sizeof(struct vhu__inflight_desc) == 16, "inflight desc");
struct vhu__inflight_split {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct vhu__inflight_desc desc[];
};
_Static_assert(sizeof(struct vhu__inflight_split) == 16, "inflight queue");
/* Bytes one queue's record takes in the region (aligned stride). */
size_t vhu__inflight_queue_bytes(unsigned queue_size);

/* The packed ring layout: a 32-byte queue header, then per entry a copy
 * of one popped descriptor.  Entries form a free list through next; a
 * popped buffer takes consecutive free entries, its head entry holds
 * inflight, counter, num (descriptors) and last (its last entry). */
struct vhu__inflight_pentry {
	uint8_t inflight;
	uint8_t padding;
	uint16_t next;
	uint16_t last;
	uint16_t num;
	uint64_t counter;
	uint16_t id;
	uint16_t flags;
	uint32_t len;
	uint64_t addr;
};
_Static_assert(sizeof(struct vhu__inflight_pentry) == 32, "packed entry");
struct vhu__inflight_packed {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t free_head;
	uint16_t old_free_head;
	uint16_t used_idx;
	uint16_t old_used_idx;
	uint8_t used_wrap_counter;
	uint8_t old_used_wrap_counter;
	uint8_t padding[7];
	struct vhu__inflight_pentry desc[];
};
_Static_assert(sizeof(struct vhu__inflight_packed) == 32, "packed queue");
size_t vhu__inflight_queue_bytes_packed(unsigned queue_size);
/* Recover a packed queue's record as it starts (vq->infp set): rebuilds
 * both ring positions and wrap counters and the resubmission list.  A
 * record that cannot be made sense of breaks the queue (returns 0);
 * -ENOMEM. */
int vhu__inflight_packed_start(struct vhu_vq *vq);
/* Pop side: write one descriptor of the buffer being popped into the free
 * entry *cursor and advance it (cursor starts at vq->pk_free); false when
 * no free entry is left. */
bool vhu__inflight_pk_note(struct vhu_vq *vq, uint16_t *cursor,
			   uint64_t addr, uint32_t len, uint16_t id,
			   uint16_t flags);
/* The buffer id whose count descriptors were noted (noted of them fit),
 * the last at entry last, is popped: mark its head entry in flight. */
void vhu__inflight_pk_popped(struct vhu_vq *vq, uint16_t cursor,
			     uint16_t last, uint16_t id, uint16_t count,
			     uint16_t noted);
/* Push side, around the used descriptor's write (vhost-user.rst order):
 * before, return id's entries to the free list and record the new used
 * position; after, clear the mark and commit the "old" copies. */
void vhu__inflight_pk_pushing(struct vhu_vq *vq, uint16_t id,
			      uint16_t used_idx, bool used_wrap);
void vhu__inflight_pk_pushed(struct vhu_vq *vq, uint16_t id);
/* Resubmission side: one recorded descriptor, copied once, and the next
 * entry of its buffer (-1 after the last). */
struct vhu__pk_rec {
	uint64_t addr;
	uint32_t len;
	uint16_t id;
	uint16_t flags;
};
void vhu__inflight_pk_read(const struct vhu_vq *vq, uint16_t entry,
			   struct vhu__pk_rec *out);
/* Recover a tracked queue as it starts (see virtq-inflight.c); -ENOMEM. */
int vhu__inflight_vq_start(struct vhu_vq *vq);
/* Forget the record and any pending resubmissions. */
void vhu__inflight_vq_release(struct vhu_vq *vq);

/* --------------------------------------------------- virtq-log.c */
/* Every function below returns 0, or -EFAULT when a page lies outside
 * the log or a buffer outside guest memory: the caller breaks the ring
 * (never a write past the map).  Call them only with vq->log set. */
/* Mark [gpa, gpa + len) (gathered; written by vhu__log_flush()). */
int vhu__log_gpa(struct vhu_vq *vq, uint64_t gpa, uint64_t len);
/* Mark what our pointer p covers in guest memory. */
int vhu__log_va(struct vhu_vq *vq, const volatile void *p, uint64_t len);
/* Mark every writable buffer of elem (whole buffers: a device may write
 * more than it reports, e.g. a block status byte after failed data). */
int vhu__log_writable(struct vhu_vq *vq, const struct vhu_vq_elem *elem);
/* Mark used-ring bytes [off, off + len) at log_gpa, when log_used. */
int vhu__log_used(struct vhu_vq *vq, uint64_t off, uint64_t len);
/* Write the gathered words to the log (atomic OR), and signal the log
 * eventfd at most once a millisecond. */
void vhu__log_flush(struct vhu_vq *vq);

/* ---------------------------------------------------------------- msg.c */
/* (The request table: see msg.h.) */

#endif
