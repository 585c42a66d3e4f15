/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "tool-common.h"

const char *vhu_tool_proc_stat(long pid, char *buf, size_t cap)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%ld/stat", pid);
	FILE *f = fopen(p, "re");
	if (!f || cap == 0) {
		if (f)
			fclose(f);
		return NULL;
	}
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = 0;
	return strrchr(buf, ')');
}

void vhu_tool_pattern(uint8_t *p, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 12345u;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

uint64_t le64_at(const uint8_t *b, unsigned off)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)b[off + i] << (8 * i);
	return v;
}

uint32_t le32_at(const uint8_t *b, unsigned off)
{
	return (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 |
	       (uint32_t)b[off + 2] << 16 | (uint32_t)b[off + 3] << 24;
}

uint16_t le16_at(const uint8_t *b, unsigned off)
{
	return (uint16_t)(b[off] | b[off + 1] << 8);
}
