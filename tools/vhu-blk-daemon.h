/* SPDX-License-Identifier: MIT */
/* vhu-blk daemon state shared by its main loop and its control socket. */
#ifndef VHU_BLK_DAEMON_H
#define VHU_BLK_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <vhu/backend.h>
#include <vhu/loop.h>

#include "blk.h"

struct vhu_blk_ctl;

/* Listening sockets and sd_notify (tools/vhu-blk-socket.c). */
struct vhu_blk_sock_perm {
	unsigned mode;         /* permission bits, 0..0777 */
	long uid;              /* owner, or -1: the daemon's user */
	long gid;              /* group, or -1: the daemon's group */
};
struct vhu_blk_sock {
	int fd;                /* listening, non-blocking, close-on-exec */
	char *path;
	dev_t dev;             /* the file at path, to remove only our own */
	ino_t ino;
};

struct vhu_blk_daemon {
	struct vhu_blk *blk;
	struct vhu_backend *backend;
	struct vhu_loop *loop;
	const char *image_path;
	const char *socket_desc;   /* socket path, "fd N" or "systemd" */
	struct vhu_blk_ctl *ctl;
	struct vhu_blk_sock sock;  /* the --socket-path socket, if any */
};

/* The capacity changed: tell the front-end (CONFIG_CHANGE_MSG), or log
 * that none is connected. */
void vhu_blk_daemon_size_changed(struct vhu_blk_daemon *d, uint64_t old_size);

/* Log a line to stderr prefixed with the program name. */
void vhu_blk_daemon_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

int vhu_blk_parse_mode(const char *s, unsigned *mode);
int vhu_blk_parse_user(const char *s, long *uid);
int vhu_blk_parse_group(const char *s, long *gid);
/* Listen on a new Unix socket at path that has perm's owner and mode
 * from the moment the path exists (a stale socket there is replaced; a
 * live one is -EADDRINUSE, a non-socket -EEXIST). */
int vhu_blk_sock_listen(const char *path, const struct vhu_blk_sock_perm *perm,
			int backlog, struct vhu_blk_sock *out);
/* Unlink the path if it is still our socket; the fd is left open. */
void vhu_blk_sock_remove(struct vhu_blk_sock *s);
/* Would the socket file's rights let this peer connect?  (root and the
 * daemon's user always may.) */
bool vhu_blk_sock_perm_allows(const struct vhu_blk_sock_perm *p, const struct ucred *cr);
/* Send a state ("READY=1", "STOPPING=1") to the service manager when
 * NOTIFY_SOCKET is set; 0, or -errno. */
int vhu_blk_notify(const char *state);

/* JSON-RPC 2.0 control socket (tools/vhu-blk-control.c). */
struct vhu_blk_ctl_opts {
	struct vhu_blk_sock_perm perm;  /* who may connect */
	unsigned idle_ms;      /* drop a client silent for this long */
};
int vhu_blk_ctl_open(struct vhu_blk_daemon *d, const char *path,
		     const struct vhu_blk_ctl_opts *opts, struct vhu_blk_ctl **out);
void vhu_blk_ctl_close(struct vhu_blk_ctl *ctl);

/* Handle one request line; returns a malloc'd response line without the
 * newline, or NULL when the request was a notification (no answer). */
char *vhu_blk_ctl_handle(struct vhu_blk_daemon *d, const char *line);

#endif
