/* SPDX-License-Identifier: MIT */
/* rbd:POOL/IMAGE[@SNAP][:conf=FILE][:id=NAME], parsed strictly. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rbd.h"

bool vhu__blk_rbd_is_uri(const char *path)
{
	return path && strncmp(path, VHU__BLK_RBD_PREFIX,
			       strlen(VHU__BLK_RBD_PREFIX)) == 0;
}

void vhu__blk_rbd_spec_free(struct vhu__blk_rbd_spec *s)
{
	free(s->pool);
	free(s->image);
	free(s->snap);
	free(s->conf);
	free(s->id);
	memset(s, 0, sizeof(*s));
}

static int fail(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (err && len) {
		va_start(ap, fmt);
		vsnprintf(err, len, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* A copy of [p, p + n) as *out: non-empty, none of the bytes in bad. */
static int take(const char *what, const char *p, size_t n, const char *bad,
		char **out, char *err, size_t len)
{
	if (n == 0)
		return fail(err, len, "rbd: URI: empty %s (rbd:POOL/IMAGE[@SNAP]"
			    "[:conf=FILE][:id=NAME])", what);
	for (size_t i = 0; i < n; i++)
		if (strchr(bad, p[i]))
			return fail(err, len, "rbd: URI: '%c' in the %s", p[i], what);
	*out = strndup(p, n);
	return *out ? 0 : -ENOMEM;
}

static int parse_option(const char *p, size_t n, struct vhu__blk_rbd_spec *s,
			char *err, size_t len)
{
	const char *eq = memchr(p, '=', n);
	size_t klen = eq ? (size_t)(eq - p) : n;
	char **slot;

	if (klen == 4 && strncmp(p, "conf", 4) == 0)
		slot = &s->conf;
	else if (klen == 2 && strncmp(p, "id", 2) == 0)
		slot = &s->id;
	else
		return fail(err, len, "rbd: URI: unknown option '%.*s' (conf=FILE, "
			    "id=NAME)", (int)klen, p);
	if (!eq)
		return fail(err, len, "rbd: URI: option '%.*s' needs a value",
			    (int)klen, p);
	if (*slot)
		return fail(err, len, "rbd: URI: option '%.*s' given twice",
			    (int)klen, p);
	return take(klen == 4 ? "conf= value" : "id= value", eq + 1,
		    n - klen - 1, "", slot, err, len);
}

int vhu__blk_rbd_parse(const char *uri, struct vhu__blk_rbd_spec *s,
		       char *err, size_t len)
{
	const char *p, *end, *slash, *at;
	int r;

	memset(s, 0, sizeof(*s));
	if (!vhu__blk_rbd_is_uri(uri))
		return fail(err, len, "not an rbd: URI");
	p = uri + strlen(VHU__BLK_RBD_PREFIX);
	end = strchr(p, ':');
	if (!end)
		end = p + strlen(p);
	slash = memchr(p, '/', (size_t)(end - p));
	if (!slash) {
		r = fail(err, len, "rbd: URI '%s': no '/' between pool and image "
			 "(rbd:POOL/IMAGE[@SNAP][:conf=FILE][:id=NAME])", uri);
		goto out;
	}
	at = memchr(slash, '@', (size_t)(end - slash));
	r = take("pool", p, (size_t)(slash - p), "@", &s->pool, err, len);
	if (r == 0)
		r = take("image name", slash + 1,
			 (size_t)((at ? at : end) - slash - 1), "/@", &s->image,
			 err, len);
	if (r == 0 && at)
		r = take("snapshot name", at + 1, (size_t)(end - at - 1), "/@",
			 &s->snap, err, len);
	while (r == 0 && *end == ':') {
		const char *opt = end + 1, *next = strchr(opt, ':');

		end = next ? next : opt + strlen(opt);
		r = parse_option(opt, (size_t)(end - opt), s, err, len);
	}
out:
	if (r < 0)
		vhu__blk_rbd_spec_free(s);
	return r;
}
