/* SPDX-License-Identifier: MIT */
/*
 * What the vhu command and the checker both need, in one place below
 * them both: /proc reading, the checker's data pattern and little-endian
 * field access.  Nothing here knows a device or a transport.
 */
#ifndef VHU_TOOL_COMMON_H
#define VHU_TOOL_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Read /proc/<pid>/stat into buf (cap bytes) and return where the fields
 * after the command name start: its closing ')' (the name may itself hold
 * spaces and parentheses).  NULL when it cannot be read. */
const char *vhu_tool_proc_stat(long pid, char *buf, size_t cap);

/* n bytes of a seeded xorshift pattern (the same seed, the same bytes). */
void vhu_tool_pattern(uint8_t *p, size_t n, unsigned seed);

/* Little-endian fields of a config space. */
uint64_t le64_at(const uint8_t *b, unsigned off);
uint32_t le32_at(const uint8_t *b, unsigned off);
uint16_t le16_at(const uint8_t *b, unsigned off);

#endif
