/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging in the ring layer (virtq-log.c and its callers), both ring
 * layouts: which pages a queue marks in a log object handed to it, and
 * that a page outside the log breaks the ring instead of being written.
 * Linked with the ring layer alone: no session is involved.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "ring-driver.h"
#include "ring-driver-packed.h"
#include "tap.h"

/* Enough for guest memory up to 1 GiB + 8 MiB; canary bytes after it. */
#define LOG_BYTES ((RD_GPA_BASE + (8u << 20)) >> 15)
#define CANARY 64

static uint8_t *logbuf;
static struct vhu__dirty_log dlog;
static struct rd rd;
static struct pd pd;
static struct vhu_vq_elem el;
static struct iovec iov[16];

static void after(void)
{
	if (rd.g.host)
		rd_fini(&rd);
	if (pd.g.host)
		pd_fini(&pd);
	memset(&rd, 0, sizeof(rd));
	memset(&pd, 0, sizeof(pd));
	free(logbuf);
	logbuf = NULL;
}

static void new_log(uint64_t size)
{
	logbuf = calloc(1, size + CANARY);
	if (!logbuf)
		TAP_FAIL("calloc");
	memset(logbuf + size, 0xa5, CANARY);
	dlog.bits = logbuf;
	dlog.size = size;
	dlog.signal_fd = -1;
}

static bool page_marked(uint64_t gpa)
{
	uint64_t page = gpa >> 12;
	return (logbuf[page / 8] >> (page % 8)) & 1;
}

static unsigned pages_marked(void)
{
	unsigned n = 0;
	for (uint64_t i = 0; i < dlog.size; i++)
		n += (unsigned)__builtin_popcount(logbuf[i]);
	return n;
}

static bool canary_intact(void)
{
	for (unsigned i = 0; i < CANARY; i++)
		if (logbuf[dlog.size + i] != 0xa5)
			return false;
	return true;
}

/* A fresh log of LOG_BYTES handed to the queue; used-ring writes logged
 * at gpa when log_used. */
static void attach_log(struct vhu_vq *vq, bool log_used, uint64_t gpa)
{
	new_log(LOG_BYTES);
	vq->log = &dlog;
	vq->log_used = log_used;
	vq->log_gpa = gpa;
}

static void split_setup(bool event_idx, bool log_used)
{
	after();
	struct rd_opts o = { .size = 64, .event_idx = event_idx };
	if (rd_init(&rd, &o) < 0)
		TAP_FAIL("rd_init");
	attach_log(&rd.vq, log_used, rd.used_gpa);
}

/* A block-style request: readable header on its own page, writable data
 * over two pages, writable status byte on a fourth page. */
static uint64_t hdr_gpa, data_gpa, st_gpa;
static void split_add_request(void)
{
	hdr_gpa = (rd.g.next + 4095) & ~4095ull;
	data_gpa = hdr_gpa + 4096 + 2048;     /* crosses into a third page */
	st_gpa = hdr_gpa + 4 * 4096 + 100;
	rd.g.next = st_gpa + 16;
	struct rd_buf b[3] = {
		{ hdr_gpa, 16, false },
		{ data_gpa, 4096, true },
		{ st_gpa, 1, true },
	};
	rd_add_chain(&rd, b, 3);
}

TEST(split_push_marks_writable_buffers_and_used_ring)
{
	split_setup(false, true);
	split_add_request();
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 1);
	CHECK_EQ(pages_marked(), 0);       /* popping writes nothing */
	/* Only the status byte reported: whole writable buffers marked
	 * anyway (a device may write more than it reports). */
	vhu_vq_push(&rd.vq, &el, 1);
	CHECK(!page_marked(hdr_gpa));
	CHECK(page_marked(data_gpa));
	CHECK(page_marked(data_gpa + 4095));
	CHECK(page_marked(st_gpa));
	CHECK(page_marked(rd.used_gpa));   /* element and index */
	CHECK(!page_marked(rd.desc_gpa));
	CHECK(!page_marked(rd.avail_gpa));
	CHECK_EQ(pages_marked(), 4);
	CHECK(canary_intact());
	CHECK(!vhu_vq_is_broken(&rd.vq));
}

TEST(split_used_ring_at_log_gpa_only_with_log_flag)
{
	split_setup(false, false);
	split_add_request();
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 1);
	vhu_vq_push(&rd.vq, &el, 4097);
	CHECK(!page_marked(rd.used_gpa));
	CHECK_EQ(pages_marked(), 3);

	/* With the flag, at log_gpa + offset (vhost-user.rst "Migration"),
	 * not where our mapping says the ring is. */
	rd.vq.log_used = true;
	rd.vq.log_gpa = RD_GPA_BASE + (6u << 20);
	split_add_request();
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 1);
	vhu_vq_push(&rd.vq, &el, 1);
	CHECK(!page_marked(rd.used_gpa));
	CHECK(page_marked(rd.vq.log_gpa));
}

TEST(split_avail_event_and_used_flags_logged)
{
	split_setup(true, true);
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 0); /* writes avail_event */
	CHECK(page_marked(rd.used_gpa + 4 + 8 * 64));
	CHECK_EQ(pages_marked(), 1);

	split_setup(false, true);
	vhu_vq_disable_notify(&rd.vq);                  /* used->flags */
	CHECK(page_marked(rd.used_gpa));
	CHECK_EQ(pages_marked(), 1);
}

TEST(split_bits_only_ever_set)
{
	split_setup(false, true);
	memset(logbuf, 0x11, LOG_BYTES);   /* the front-end's bits stay */
	split_add_request();
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 1);
	vhu_vq_push(&rd.vq, &el, 1);
	CHECK(page_marked(st_gpa));
	uint64_t p = hdr_gpa >> 12;
	CHECK_EQ(logbuf[p / 8] & 0x11, 0x11);
	CHECK(canary_intact());
}

TEST(split_page_outside_log_breaks_ring)
{
	split_setup(false, true);
	/* The log ends before the status byte's page. */
	split_add_request();
	dlog.size = (st_gpa >> 15);
	memset(logbuf + dlog.size, 0xa5, CANARY);
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 1);
	vhu_vq_push(&rd.vq, &el, 1);
	CHECK(vhu_vq_is_broken(&rd.vq));
	CHECK(canary_intact());
	/* Nothing published for a request whose pages could not be logged. */
	CHECK_EQ(rd_used_idx(&rd), 0);

	/* Used ring named beyond the log. */
	split_setup(false, true);
	rd.vq.log_gpa = UINT64_MAX - 8;
	split_add_request();
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 1);
	vhu_vq_push(&rd.vq, &el, 1);
	CHECK(vhu_vq_is_broken(&rd.vq));
	CHECK(canary_intact());
}

TEST(split_logging_off_marks_nothing)
{
	split_setup(true, true);
	rd.vq.log = NULL;
	split_add_request();
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 1);
	vhu_vq_push(&rd.vq, &el, 4097);
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 0);
	CHECK_EQ(pages_marked(), 0);
}

TEST(log_eventfd_signalled_after_log_writes)
{
	split_setup(false, true);
	dlog.signal_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	CHECK(dlog.signal_fd >= 0);
	split_add_request();
	CHECK_EQ(vhu_vq_pop(&rd.vq, &el, iov, 16), 1);
	vhu_vq_push(&rd.vq, &el, 1);
	uint64_t v = 0;
	CHECK_EQ(read(dlog.signal_fd, &v, 8), 8);
	CHECK(v >= 1);
	close(dlog.signal_fd);
	dlog.signal_fd = -1;
}

/* ---- packed ---- */

static void packed_setup(uint16_t size, uint16_t start, bool log_used)
{
	after();
	struct pd_opts o = { .size = size, .start_pos = start };
	if (pd_init(&pd, &o) < 0)
		TAP_FAIL("pd_init");
	attach_log(&pd.vq, log_used, pd.dev_gpa);
}

TEST(packed_push_marks_the_descriptor_ring_page_written)
{
	/* 512 descriptors: two pages of ring; start in the second one. */
	packed_setup(512, 300, true);
	uint64_t data = (pd.g.next + 4095) & ~4095ull;
	pd.g.next = data + 8192;
	struct pd_buf b[2] = { { data, 16, false }, { data + 4096, 512, true } };
	pd_add(&pd, b, 2, 7);
	CHECK_EQ(vhu_vq_pop(&pd.vq, &el, iov, 16), 1);
	vhu_vq_push(&pd.vq, &el, 512);
	CHECK(!page_marked(data));
	CHECK(page_marked(data + 4096));
	/* The used descriptor went to position 300: the ring's second page,
	 * not log_gpa + id * 16 nor the ring's first page. */
	CHECK(page_marked(pd.ring_gpa + 300 * 16));
	CHECK(!page_marked(pd.ring_gpa));
	CHECK_EQ(pages_marked(), 2);
	CHECK(canary_intact());
	uint16_t id;
	uint32_t len;
	CHECK_EQ(pd_get_used(&pd, &id, &len), 1);
	CHECK_EQ(id, 7);
}

TEST(packed_device_area_logged_at_log_gpa)
{
	packed_setup(64, 0, true);
	vhu_vq_disable_notify(&pd.vq);
	CHECK(page_marked(pd.dev_gpa));
	CHECK_EQ(pages_marked(), 1);
	packed_setup(64, 0, false);
	vhu_vq_disable_notify(&pd.vq);
	CHECK_EQ(pages_marked(), 0);
}

TEST(packed_page_outside_log_breaks_ring)
{
	packed_setup(64, 0, false);
	uint64_t data = (pd.g.next + 4095) & ~4095ull;
	pd.g.next = data + 8192;
	struct pd_buf b[1] = { { data + 4096, 64, true } };
	pd_add(&pd, b, 1, 3);
	dlog.size = (data + 4096) >> 15;
	memset(logbuf + dlog.size, 0xa5, CANARY);
	CHECK_EQ(vhu_vq_pop(&pd.vq, &el, iov, 16), 1);
	vhu_vq_push(&pd.vq, &el, 64);
	CHECK(vhu_vq_is_broken(&pd.vq));
	CHECK(canary_intact());
	uint16_t id;
	uint32_t len;
	CHECK_EQ(pd_get_used(&pd, &id, &len), 0);
}

int main(void)
{
	tap_after_each = after;
	return tap_run();
}
