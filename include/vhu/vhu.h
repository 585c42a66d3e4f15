/* SPDX-License-Identifier: MIT */
/*
 * vhu - vhost-user for C.  Common definitions shared by the back-end and
 * the front-end: feature bits, logging, version.
 *
 * Conventions: a fallible function returns int, >= 0 on success and a
 * negative errno value on failure.  Public names are vhu_*, macros VHU_*.
 */
#ifndef VHU_VHU_H
#define VHU_VHU_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VHU_VERSION_MAJOR 0
#define VHU_VERSION_MINOR 1
#define VHU_VERSION_PATCH 0
#define VHU_VERSION_STRING "0.1.0"

/* The library's version at run time (may differ from the header's). */
const char *vhu_version(void);

/* ---- virtio transport feature bits (virtio 1.2, 6) ---- */
#define VHU_F_NOTIFY_ON_EMPTY      24
#define VHU_F_LOG_ALL              26 /* vhost: dirty logging (migration) */
#define VHU_F_ANY_LAYOUT           27
#define VHU_F_INDIRECT_DESC        28
#define VHU_F_EVENT_IDX            29
#define VHU_F_PROTOCOL_FEATURES    30 /* vhost-user: GET/SET_PROTOCOL_FEATURES */
#define VHU_F_VERSION_1            32
#define VHU_F_ACCESS_PLATFORM      33
#define VHU_F_RING_PACKED          34
#define VHU_F_IN_ORDER             35
#define VHU_F_ORDER_PLATFORM       36
#define VHU_F_SR_IOV               37
#define VHU_F_NOTIFICATION_DATA    38
#define VHU_F_NOTIF_CONFIG_DATA    39
#define VHU_F_RING_RESET           40
#define VHU_F_ADMIN_VQ             41

/* ---- vhost-user protocol feature bits ---- */
#define VHU_PF_MQ                    0
#define VHU_PF_LOG_SHMFD             1
#define VHU_PF_RARP                  2
#define VHU_PF_REPLY_ACK             3
#define VHU_PF_MTU                   4
#define VHU_PF_BACKEND_REQ           5
#define VHU_PF_CROSS_ENDIAN          6
#define VHU_PF_CRYPTO_SESSION        7
#define VHU_PF_PAGEFAULT             8
#define VHU_PF_CONFIG                9
#define VHU_PF_BACKEND_SEND_FD      10
#define VHU_PF_HOST_NOTIFIER        11
#define VHU_PF_INFLIGHT_SHMFD       12
#define VHU_PF_RESET_DEVICE         13
#define VHU_PF_INBAND_NOTIFICATIONS 14
#define VHU_PF_CONFIGURE_MEM_SLOTS  15
#define VHU_PF_STATUS               16
#define VHU_PF_XEN_MMAP             17
#define VHU_PF_SHARED_OBJECT        18
#define VHU_PF_DEVICE_STATE         19
#define VHU_PF_GET_VRING_BASE_INFLIGHT 20
#define VHU_PF_GPA_ADDRESSES        21
#define VHU_PF_SHMEM                22
#define VHU_PF_GET_VRING_BASE_SKIP_DRAIN 23

#define VHU_BIT(n) (1ull << (n))

/* Name of a virtio transport feature bit or a protocol feature bit, or NULL.
 * The name is the constant's after its prefix (VHU_F_EVENT_IDX:
 * "EVENT_IDX"); every VHU_F_* and VHU_PF_* bit has one. */
const char *vhu_feature_name(unsigned bit);
const char *vhu_protocol_feature_name(unsigned bit);
/* Name of a front-end request id ("GET_CONFIG"), or NULL if unknown. */
const char *vhu_request_name(uint32_t id);
/* Name of a back-end -> front-end request id, or NULL if unknown. */
const char *vhu_backend_request_name(uint32_t id);

/* ---- logging ---- */
enum vhu_log_level {
	VHU_LOG_ERROR = 0,
	VHU_LOG_WARN = 1,
	VHU_LOG_INFO = 2,
	VHU_LOG_DEBUG = 3,
};

typedef void (*vhu_log_fn)(enum vhu_log_level level, const char *msg, void *opaque);

/*
 * Route the library's log lines.  Default: stderr, level WARN, or the level
 * named by the environment variable VHU_LOG (error|warn|info|debug).
 * fn == NULL restores the default sink.  Process-wide; call before use.
 */
void vhu_set_log_fn(vhu_log_fn fn, void *opaque);
/*
 * The program's name at the start of each line the default sink writes
 * ("NAME: info: message"; "vhu" until set).  Copied (at most 63 bytes
 * kept); NULL or "" restores "vhu".  A vhu_set_log_fn() sink gets the
 * message alone and is not affected.  Process-wide; call before use.
 */
void vhu_log_set_ident(const char *ident);
void vhu_set_log_level(enum vhu_log_level level);
enum vhu_log_level vhu_get_log_level(void);

/*
 * Log one line (no trailing newline needed) the way the library logs its
 * own: dropped when level is above vhu_get_log_level(), otherwise
 * formatted (truncated to 511 bytes) and handed to the vhu_set_log_fn()
 * sink, or written to stderr.  For devices built on libvhu, so that an
 * application embedding them decides where every line goes.  Thread-safe
 * as long as the sink is; the sink runs on the caller's thread.
 */
void vhu_log(enum vhu_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;
void vhu_logv(enum vhu_log_level level, const char *fmt, va_list ap)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 0)))
#endif
	;

/* ---- shared memory a peer shrinks ---- */
/*
 * A front-end passes guest memory (and the inflight region) as files it
 * keeps; if it later shrinks one (ftruncate), the back-end's next access
 * past the new end raises SIGBUS and, by default, kills the process.
 * Requiring sealed files would refuse QEMU's memory-backend-file (/dev/shm,
 * hugetlbfs), so the library offers to survive instead: this installs a
 * process-wide SIGBUS handler (opt-in: the application owns its signal
 * dispositions; call once, before serving).  A fault inside memory the
 * library mapped for a peer replaces the pages from there to the end of
 * that mapping with zero-filled anonymous memory and the affected queue is
 * marked broken at its next vhu_vq_pop() (-EIO, vhu_vq_is_broken() true,
 * the error fd signalled); other queues and sessions continue.  Any other
 * SIGBUS goes to the handler installed before, or kills the process as
 * usual.  Memory the library creates itself is sealed against resizing.
 * Returns 0 (also when already installed) or -errno.
 */
int vhu_sigbus_guard_install(void);

#ifdef __cplusplus
}
#endif
#endif
