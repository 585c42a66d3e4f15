/* SPDX-License-Identifier: MIT */
/*
 * Small helpers every kind of test needs (unit tests and fuzz targets,
 * whatever part of the library they link): fd counting for leak checks
 * and monotonic time.
 */
#ifndef VHU_TEST_UTIL_H
#define VHU_TEST_UTIL_H

#include <stdint.h>

/* Open file descriptors of this process (for leak checks: compare two
 * counts), -1 when /proc/self/fd cannot be read. */
int tl_count_fds(void);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t tl_now_ms(void);

#endif
