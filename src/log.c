/* SPDX-License-Identifier: MIT */
/* Logging: runtime level, pluggable sink, rate limiting for what a peer
 * or guest can trigger. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

static vhu_log_fn log_fn;
static void *log_opaque;
static int log_level = -1; /* -1: not yet read from VHU_LOG */
static char log_ident[64] = "vhu";

const char *vhu_version(void)
{
	return VHU_VERSION_STRING;
}

static int level_from_env(void)
{
	const char *e = getenv("VHU_LOG");
	static const char *const names[] = { "error", "warn", "info", "debug" };
	if (e) {
		for (unsigned i = 0; i < VHU__ARRAY_SIZE(names); i++)
			if (!strcasecmp(e, names[i]))
				return (int)i;
	}
	return VHU_LOG_WARN;
}

void vhu_set_log_fn(vhu_log_fn fn, void *opaque)
{
	log_fn = fn;
	log_opaque = opaque;
}

void vhu_log_set_ident(const char *ident)
{
	if (!ident || !*ident)
		ident = "vhu";
	snprintf(log_ident, sizeof(log_ident), "%s", ident);
}

void vhu_set_log_level(enum vhu_log_level level)
{
	log_level = (int)level;
}

enum vhu_log_level vhu_get_log_level(void)
{
	if (log_level < 0)
		log_level = level_from_env();
	return (enum vhu_log_level)log_level;
}

void vhu_logv(enum vhu_log_level level, const char *fmt, va_list ap)
{
	/* A level from outside the enum is the nearest one. */
	if ((int)level < (int)VHU_LOG_ERROR)
		level = VHU_LOG_ERROR;
	if ((int)level > (int)VHU_LOG_DEBUG)
		level = VHU_LOG_DEBUG;
	if ((int)level > (int)vhu_get_log_level())
		return;
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (log_fn) {
		log_fn(level, buf, log_opaque);
		return;
	}
	static const char *const tag[] = { "error", "warning", "info", "debug" };
	fprintf(stderr, "%s: %s: %s\n", log_ident, tag[level], buf);
}

void vhu_log(enum vhu_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vhu_logv(level, fmt, ap);
	va_end(ap);
}

void vhu__log(enum vhu_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vhu_logv(level, fmt, ap);
	va_end(ap);
}

int vhu__struct_in(void *dst, size_t dst_size, const void *src,
		   size_t src_size, size_t min_size)
{
	if (src_size < min_size)
		return -EINVAL;
	for (size_t i = dst_size; i < src_size; i++)
		if (((const unsigned char *)src)[i])
			return -E2BIG;
	memset(dst, 0, dst_size);
	memcpy(dst, src, src_size < dst_size ? src_size : dst_size);
	return 0;
}

bool vhu__ratelimit_ok(struct vhu__ratelimit *rl)
{
	/* At most 10 lines per second per call site. */
	int64_t now = vhu__now_ms();
	if (now - rl->window_start_ms >= 1000) {
		if (rl->suppressed)
			vhu__log(VHU_LOG_WARN, "%u similar messages suppressed",
				 rl->suppressed);
		rl->window_start_ms = now;
		rl->count = 0;
		rl->suppressed = 0;
	}
	if (rl->count < 10) {
		rl->count++;
		return true;
	}
	rl->suppressed++;
	return false;
}
