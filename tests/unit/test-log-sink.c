/* SPDX-License-Identifier: MIT */
/*
 * The log hook: library lines and vhu-blk device lines (vhu__blk_log) both
 * reach the sink set with vhu_set_log_fn(), filtered by the level; without
 * a sink they go to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <vhu/vhu.h>

#include "blk-int.h"
#include "tap.h"

struct capture {
	unsigned n;
	enum vhu_log_level level;
	char msg[1024];
};

static void sink(enum vhu_log_level level, const char *msg, void *opaque)
{
	struct capture *c = opaque;
	c->n++;
	c->level = level;
	snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

TEST(device_lines_reach_the_sink)
{
	struct capture c = { 0 };
	vhu_set_log_fn(sink, &c);
	vhu_set_log_level(VHU_LOG_INFO);
	vhu__blk_log(VHU_LOG_WARN, "queue %u: %s", 3u, "read failed");
	CHECK_EQ(c.n, 1);
	CHECK_EQ(c.level, VHU_LOG_WARN);
	CHECK(strcmp(c.msg, "queue 3: read failed") == 0);
	/* Above the level: dropped. */
	vhu__blk_log(VHU_LOG_DEBUG, "noise");
	CHECK_EQ(c.n, 1);
	vhu_set_log_fn(NULL, NULL);
	vhu_set_log_level(VHU_LOG_WARN);
}

TEST(public_vhu_log)
{
	struct capture c = { 0 };
	vhu_set_log_fn(sink, &c);
	vhu_set_log_level(VHU_LOG_DEBUG);
	vhu_log(VHU_LOG_ERROR, "n=%d", 7);
	CHECK_EQ(c.n, 1);
	CHECK_EQ(c.level, VHU_LOG_ERROR);
	CHECK(strcmp(c.msg, "n=7") == 0);
	/* A level outside the enum is clamped, never an index out of range. */
	vhu_log((enum vhu_log_level)42, "odd");
	CHECK_EQ(c.n, 2);
	CHECK_EQ(c.level, VHU_LOG_DEBUG);
	vhu_log((enum vhu_log_level)-3, "odd");
	CHECK_EQ(c.level, VHU_LOG_ERROR);
	/* Long lines are truncated to 511 bytes. */
	char big[800];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	vhu_log(VHU_LOG_ERROR, "%s", big);
	CHECK_EQ(strlen(c.msg), 511);
	vhu_set_log_fn(NULL, NULL);
	vhu_set_log_level(VHU_LOG_WARN);
}

TEST(default_sink_is_stderr)
{
	int p[2], saved = dup(2);
	CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
	dup2(p[1], 2);
	vhu__blk_log(VHU_LOG_ERROR, "image %s gone", "disk.img");
	vhu__blk_log(VHU_LOG_DEBUG, "not shown");
	dup2(saved, 2);
	close(saved);
	char buf[256] = { 0 };
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	close(p[1]);
	CHECK(n > 0);
	CHECK(strcmp(buf, "vhu: error: image disk.img gone\n") == 0);
}

int main(void)
{
	return tap_run();
}
