/* SPDX-License-Identifier: MIT */
/* vhu-blk daemon state shared by its main loop and its control socket. */
#ifndef VHU_BLK_DAEMON_H
#define VHU_BLK_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include <vhu/backend.h>
#include <vhu/loop.h>

#include "blk.h"

struct vhu_blk_ctl;

struct vhu_blk_daemon {
	struct vhu_blk *blk;
	struct vhu_backend *backend;
	struct vhu_loop *loop;
	const char *image_path;
	const char *socket_desc;   /* socket path, "fd N" or "systemd" */
	struct vhu_blk_ctl *ctl;
};

/* The capacity changed: tell the front-end (CONFIG_CHANGE_MSG), or log
 * that none is connected. */
void vhu_blk_daemon_size_changed(struct vhu_blk_daemon *d, uint64_t old_size);

/* Log a line to stderr prefixed with the program name. */
void vhu_blk_daemon_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* JSON-RPC 2.0 control socket (tools/vhu-blk-control.c). */
struct vhu_blk_ctl_opts {
	long group;            /* gid allowed besides the user and root, or -1 */
	unsigned idle_ms;      /* drop a client silent for this long */
};
int vhu_blk_ctl_open(struct vhu_blk_daemon *d, const char *path,
		     const struct vhu_blk_ctl_opts *opts, struct vhu_blk_ctl **out);
void vhu_blk_ctl_close(struct vhu_blk_ctl *ctl);

/* Handle one request line; returns a malloc'd response line without the
 * newline, or NULL when the request was a notification (no answer). */
char *vhu_blk_ctl_handle(struct vhu_blk_daemon *d, const char *line);

#endif
