/* SPDX-License-Identifier: MIT */
/* The rbd: URI of --blk-file: rbd:POOL/IMAGE[@SNAP][:conf=FILE][:id=NAME],
 * parsed strictly (devices/blk/rbd-uri.c). */
#include <errno.h>
#include <string.h>

#include "rbd.h"
#include "tap.h"

static struct vhu__blk_rbd_spec s;
static char err[256];

static int parse(const char *uri)
{
	err[0] = 0;
	return vhu__blk_rbd_parse(uri, &s, err, sizeof(err));
}

static int eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

TEST(is_uri)
{
	CHECK(vhu__blk_rbd_is_uri("rbd:p/i"));
	CHECK(vhu__blk_rbd_is_uri("rbd:"));
	CHECK(!vhu__blk_rbd_is_uri("rbd"));
	CHECK(!vhu__blk_rbd_is_uri("./rbd:p/i"));
	CHECK(!vhu__blk_rbd_is_uri("/dev/rbd0"));
	CHECK(!vhu__blk_rbd_is_uri(NULL));
}

TEST(pool_and_image)
{
	CHECK_EQ(parse("rbd:rbd/disk1"), 0);
	CHECK(eq(s.pool, "rbd") && eq(s.image, "disk1"));
	CHECK(!s.snap && !s.conf && !s.id);
	vhu__blk_rbd_spec_free(&s);
	CHECK(!s.pool && !s.image);
}

TEST(snapshot_and_options)
{
	CHECK_EQ(parse("rbd:vms/web.img@before-upgrade:conf=/etc/ceph/test.conf:id=vhu"), 0);
	CHECK(eq(s.pool, "vms") && eq(s.image, "web.img"));
	CHECK(eq(s.snap, "before-upgrade"));
	CHECK(eq(s.conf, "/etc/ceph/test.conf"));
	CHECK(eq(s.id, "vhu"));
	vhu__blk_rbd_spec_free(&s);
	/* Options in either order, each alone. */
	CHECK_EQ(parse("rbd:p/i:id=a:conf=c"), 0);
	CHECK(eq(s.conf, "c") && eq(s.id, "a") && !s.snap);
	vhu__blk_rbd_spec_free(&s);
	CHECK_EQ(parse("rbd:p/i:conf=/a=b/c.conf"), 0);
	CHECK(eq(s.conf, "/a=b/c.conf"));
	vhu__blk_rbd_spec_free(&s);
}

/* Each malformed URI is refused with a reason naming what is wrong, and
 * leaves nothing allocated. */
TEST(refused)
{
	static const struct { const char *uri, *why; } bad[] = {
		{ "rbd:", "no '/'" },
		{ "rbd:pool", "no '/'" },
		{ "rbd:/img", "empty pool" },
		{ "rbd:pool/", "empty image name" },
		{ "rbd:pool/@snap", "empty image name" },
		{ "rbd:pool/img@", "empty snapshot name" },
		{ "rbd:pool/img@s@t", "'@' in the snapshot name" },
		{ "rbd:pool/ns/img", "'/' in the image name" },
		{ "rbd:po@ol/img", "'@' in the pool" },
		{ "rbd:pool/img:", "unknown option ''" },
		{ "rbd:pool/img:mon_host=1.2.3.4", "unknown option 'mon_host'" },
		{ "rbd:pool/img:conf", "option 'conf' needs a value" },
		{ "rbd:pool/img:conf=", "empty conf= value" },
		{ "rbd:pool/img:id=", "empty id= value" },
		{ "rbd:pool/img:id=a:id=b", "option 'id' given twice" },
		{ "rbd:pool/img:conf=a:conf=b", "option 'conf' given twice" },
		{ "nbd://host/x", "not an rbd: URI" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i].uri);

		if (r != -EINVAL || !strstr(err, bad[i].why))
			TAP_FAIL("%s: %d '%s', want -EINVAL '%s'", bad[i].uri, r,
				 err, bad[i].why);
		CHECK(!s.pool && !s.image && !s.snap && !s.conf && !s.id);
	}
}

int main(void)
{
	return tap_run();
}
