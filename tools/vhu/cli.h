/* SPDX-License-Identifier: MIT */
/* The vhu command: shared helpers of its subcommands. */
#ifndef VHU_TOOL_H
#define VHU_TOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <vhu/frontend.h>

#include "device.h"
#include "tool-common.h"

int cmd_probe(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_ctl(int argc, char **argv);

/* Exit codes: 0 ok, 1 failure, 2 usage, 3 timeout waiting for an event. */
#define EXIT_USAGE 2
#define EXIT_TIMEOUT 3

/* Parse "4096", "4k", "1M", "2G" (powers of 1024); false on garbage or
 * overflow. */
bool parse_size(const char *s, uint64_t *out);
/* Parse a non-negative decimal within [min, max]. */
bool parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parse seconds ("10", "0.5"). */
bool parse_seconds(const char *s, double *out);
/* --timeout of `vhu CMD`: seconds above 0, or false after saying so. */
bool parse_timeout(const char *cmd, const char *s, double *out);

/* Connect and handshake; on failure print a clear message naming path and
 * return -errno. */
int tool_connect(const char *path, int timeout_ms, struct vhu_fe **fe);
/* The command's one SOCKET word after its options (optind), connected as
 * tool_connect does: 0, or the exit code (EXIT_USAGE after help(stderr),
 * 1 when the connection fails). */
int tool_connect_arg(int argc, char **argv, void (*help)(FILE *f),
		     int timeout_ms, const char **path, struct vhu_fe **fe);
/* Monotonic clock in milliseconds. */
int64_t tool_mono_ms(void);

/* virtio-blk feature bits: the blk module's (tools/devices/blk.h). */
#include "blk.h"

/* Names: a transport or vhost-user protocol bit, a device bit of dev
 * (NULL: none known). */
const char *tool_feature_name(unsigned bit, const struct vhu_tool_device *dev);
const char *tool_protocol_feature_name(unsigned bit);

/* Read dev's config space: tries the sizes the device module lists,
 * largest first, until the back-end accepts one.  Returns the number of
 * bytes read or -errno (-EOPNOTSUPP: the device has no config space). */
int tool_read_config(struct vhu_fe *fe, const struct vhu_tool_device *dev,
		     uint8_t *buf, unsigned cap);

#endif
