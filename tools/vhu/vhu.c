/* SPDX-License-Identifier: MIT */
/*
 * vhu: a vhost-user front-end on the command line.  Probe a back-end,
 * load it with virtio-blk requests, wait for config changes, and talk to
 * vhu-blk's control socket.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vhu [--help] [--version] COMMAND [ARGS]\n"
		"\n"
		"commands:\n"
		"  probe SOCKET   show a back-end's features, queues and config space (--device)\n"
		"  watch SOCKET   wait for config-change notifications (a resize)\n"
		"  bench SOCKET   virtio-blk load generator (IOPS, MB/s, latency)\n"
		"  ctl SOCKET     JSON-RPC client for vhu-blk's control socket\n"
		"  check SOCKET   conformance and robustness checks of a back-end (--device)\n"
		"\n"
		"Run 'vhu COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *c = argv[1];
	if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(c, "--version") || !strcmp(c, "-V")) {
		printf("vhu %s (libvhu %s)\n", VHU_VERSION_STRING, vhu_version());
		return 0;
	}
	if (!strcmp(c, "probe"))
		return cmd_probe(argc - 1, argv + 1);
	if (!strcmp(c, "watch"))
		return cmd_watch(argc - 1, argv + 1);
	if (!strcmp(c, "bench"))
		return cmd_bench(argc - 1, argv + 1);
	if (!strcmp(c, "ctl"))
		return cmd_ctl(argc - 1, argv + 1);
	if (!strcmp(c, "check"))
		return vhu_check_main(argc - 1, argv + 1);
	fprintf(stderr, "vhu: unknown command '%s'\n", c);
	usage(stderr);
	return EXIT_USAGE;
}

bool parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!s || !*s || *s == '-')
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: return false;
	}
	/* accept "4k", "4K", "4KiB", "4kB" alike */
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (shift && (*end == 'b' || *end == 'B'))
		end++;
	if (*end)
		return false;
	if (shift && v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

bool parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!s || !*s || *s == '-')
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool parse_seconds(const char *s, double *out)
{
	char *end;
	errno = 0;
	if (!s || !*s)
		return false;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0 || v > 1e7)
		return false;
	*out = v;
	return true;
}

bool parse_timeout(const char *cmd, const char *s, double *out)
{
	if (parse_seconds(s, out) && *out > 0)
		return true;
	fprintf(stderr, "vhu %s: bad --timeout\n", cmd);
	return false;
}

int tool_connect(const char *path, int timeout_ms, struct vhu_fe **fe)
{
	struct stat st;
	if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "vhu: %s: not a socket\n", path);
		return -ENOTSOCK;
	}
	struct vhu_fe_opts o = { .timeout_ms = timeout_ms };
	int r = vhu_fe_connect(fe, path, &o);
	if (r == 0)
		return 0;
	switch (r) {
	case -ENOENT:
		fprintf(stderr, "vhu: %s: no such socket (is the back-end running?)\n", path);
		break;
	case -EACCES:
	case -EPERM:
		fprintf(stderr, "vhu: %s: permission denied\n", path);
		break;
	case -ECONNREFUSED:
		fprintf(stderr, "vhu: %s: connection refused (nothing listening)\n", path);
		break;
	case -ETIMEDOUT:
		fprintf(stderr, "vhu: %s: not a vhost-user peer (no reply within %d ms)\n",
			path, timeout_ms);
		break;
	case -EPROTO:
		fprintf(stderr, "vhu: %s: not a vhost-user peer (malformed reply)\n", path);
		break;
	case -ECONNRESET:
	case -EPIPE:
		fprintf(stderr, "vhu: %s: not a vhost-user peer (closed the connection; "
			"busy with another front-end?)\n", path);
		break;
	default:
		fprintf(stderr, "vhu: %s: %s\n", path, strerror(-r));
	}
	return r;
}

int tool_connect_arg(int argc, char **argv, void (*help)(FILE *f),
		     int timeout_ms, const char **path, struct vhu_fe **fe)
{
	if (optind + 1 != argc) {
		help(stderr);
		return EXIT_USAGE;
	}
	*path = argv[optind];
	return tool_connect(*path, timeout_ms, fe) < 0 ? 1 : 0;
}

int64_t tool_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tool_read_config(struct vhu_fe *fe, const struct vhu_tool_device *dev,
		     uint8_t *buf, unsigned cap)
{
	if (!dev->config_sizes)
		return -EOPNOTSUPP;
	int last = -EIO;
	for (const unsigned *sz = dev->config_sizes; *sz; sz++) {
		if (*sz > cap)
			continue;
		int r = vhu_fe_get_config(fe, 0, buf, *sz);
		if (r == 0)
			return (int)*sz;
		last = r;
		if (r != -EIO)
			break; /* anything but "refused" ends the connection */
	}
	return last;
}
