/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the fuzz targets: a bounded reader over the fuzz
 * input, a silent log sink, and the open-fd counter used to turn an fd
 * leak into a crash the fuzzer reports.
 */
#ifndef VHU_FUZZ_COMMON_H
#define VHU_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/vhu.h>

#include "util.h"

/* A cursor over the input: reads past the end yield zeros. */
struct fz_in {
	const uint8_t *p;
	size_t n;
};

static inline size_t fz_left(const struct fz_in *in)
{
	return in->n;
}

static inline void fz_take(struct fz_in *in, void *out, size_t len)
{
	size_t k = len < in->n ? len : in->n;

	memcpy(out, in->p, k);
	memset((uint8_t *)out + k, 0, len - k);
	in->p += k;
	in->n -= k;
}

static inline uint8_t fz_u8(struct fz_in *in)
{
	uint8_t v;

	fz_take(in, &v, 1);
	return v;
}

static inline uint16_t fz_u16(struct fz_in *in)
{
	uint8_t b[2];

	fz_take(in, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t fz_u32(struct fz_in *in)
{
	uint8_t b[4];

	fz_take(in, b, 4);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static inline void fz_silent_log(enum vhu_log_level level, const char *msg,
				 void *opaque)
{
	(void)level;
	(void)msg;
	(void)opaque;
}

/* Library log lines cost time and hide libFuzzer's output; FUZZ_VHU_LOG=1
 * keeps them (useful when replaying one crashing input). */
static inline void fz_quiet_logs(void)
{
	const char *v = getenv("FUZZ_VHU_LOG");

	if (!v || !*v || strcmp(v, "0") == 0)
		vhu_set_log_fn(fz_silent_log, NULL);
}

/* FUZZ_TRACE=1: the targets describe each step on stderr (replaying one
 * input by hand). */
static inline bool fz_trace_on(void)
{
	static int on = -1;

	if (on < 0) {
		const char *v = getenv("FUZZ_TRACE");
		on = v && *v && strcmp(v, "0") != 0;
	}
	return on;
}

#define FZ_TRACE(...)                                                         \
	do {                                                                  \
		if (fz_trace_on())                                            \
			fprintf(stderr, "trace: " __VA_ARGS__);               \
	} while (0)

/* A broken invariant: report it and crash so the fuzzer keeps the input. */
#define FZ_ASSERT(cond, ...)                                                  \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "fuzz invariant failed: %s (%s:%d): ",  \
				#cond, __FILE__, __LINE__);                   \
			fprintf(stderr, __VA_ARGS__);                         \
			fputc('\n', stderr);                                  \
			abort();                                              \
		}                                                             \
	} while (0)

#endif
