/* SPDX-License-Identifier: MIT */
/*
 * vhu-vsock: a vhost-user-vsock back-end daemon.  Guest stream sockets are
 * connected to host Unix sockets in the hybrid-vsock convention
 * (devices/vsock/vsock.h, docs/vhu-vsock.md).  One thread: the session,
 * the queues and every host socket share one loop.  Clean exit on
 * SIGTERM / SIGINT.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/backend.h>
#include <vhu/loop.h>
#include <vhu/vhu.h>

#include "vsock.h"

static struct vhu_loop *stop_loop;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_loop)
		vhu_loop_stop(stop_loop);
}

static void usage(FILE *f)
{
	fprintf(f,
"Usage: vhu-vsock --socket-path SOCK --guest-cid CID [--uds-path PATH] [options]\n"
"A vhost-user-vsock back-end: guest stream sockets to host Unix sockets.\n"
"\n"
"  -s, --socket-path SOCK   listen for the front-end (QEMU) on SOCK\n"
"  -c, --guest-cid CID      the guest's context id (3 .. 4294967294)\n"
"  -u, --uds-path PATH      host programs connect to PATH and write\n"
"                           \"CONNECT <port>\\n\" to reach the guest's port;\n"
"                           a guest connecting to host port P reaches the\n"
"                           Unix socket PATH_P (without it: refused)\n"
"      --buf-alloc BYTES    buffer per connection towards the host\n"
"                           (default %u, at most %u)\n"
"      --print-capabilities print the back-end capabilities as JSON and exit\n"
"  -h, --help               show this help and exit\n"
"  -V, --version            show the version and exit\n"
"\n"
"SIGTERM or SIGINT: close every connection and exit 0.\n"
"Log level: environment variable VHU_LOG=error|warn|info|debug.\n",
		VHU_VSOCK_BUF_ALLOC_DEFAULT, VHU_VSOCK_BUF_ALLOC_MAX);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

enum { OPT_CAPS = 256, OPT_BUF_ALLOC };

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket-path", required_argument, NULL, 's' },
		{ "guest-cid", required_argument, NULL, 'c' },
		{ "uds-path", required_argument, NULL, 'u' },
		{ "buf-alloc", required_argument, NULL, OPT_BUF_ALLOC },
		{ "print-capabilities", no_argument, NULL, OPT_CAPS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL;
	struct vhu_vsock_opts o = { 0 };
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "s:c:u:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'c':
			if (parse_u64(optarg, 3, UINT32_MAX - 1, &v) < 0) {
				fprintf(stderr, "vhu-vsock: bad --guest-cid '%s' (3 .. %u)\n",
					optarg, UINT32_MAX - 1);
				return 2;
			}
			o.guest_cid = v;
			break;
		case 'u':
			o.uds_path = optarg;
			break;
		case OPT_BUF_ALLOC:
			if (parse_u64(optarg, 4096, VHU_VSOCK_BUF_ALLOC_MAX, &v) < 0) {
				fprintf(stderr, "vhu-vsock: bad --buf-alloc '%s' (4096 .. %u)\n",
					optarg, VHU_VSOCK_BUF_ALLOC_MAX);
				return 2;
			}
			o.buf_alloc = (uint32_t)v;
			break;
		case OPT_CAPS:
			/* QEMU's vhost-user.json: the "vsock" type has no
			 * features of its own. */
			printf("{\"type\": \"vsock\"}\n");
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("vhu-vsock %s (libvhu %s)\n", VHU_VERSION_STRING, vhu_version());
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !sock || !o.guest_cid) {
		fprintf(stderr, "vhu-vsock: --socket-path and --guest-cid are required\n");
		usage(stderr);
		return 2;
	}

	struct vhu_loop *loop = NULL;
	struct vhu_vsock *dev = NULL;
	struct vhu_backend *b = NULL;
	struct vhu_backend_opts bo;
	const char *what = "loop";
	int r = vhu_loop_new(&loop);
	if (r == 0) {
		what = o.uds_path ? o.uds_path : "device";
		r = vhu_vsock_new(&o, loop, &dev);
	}
	if (r == 0) {
		what = sock;
		vhu_vsock_backend_opts(dev, &bo);
		r = vhu_backend_new(&bo, &b);
	}
	if (r == 0)
		r = vhu_backend_listen(b, sock);
	if (r == 0)
		r = vhu_backend_attach(b, loop);
	if (r < 0) {
		fprintf(stderr, "vhu-vsock: %s: %s\n", what, strerror(-r));
		goto out;
	}

	stop_loop = loop;
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	vhu_log(VHU_LOG_INFO, "vhu-vsock: guest cid %llu on %s, host side %s",
		(unsigned long long)o.guest_cid, sock, o.uds_path ? o.uds_path : "(none)");
	r = vhu_loop_run(loop);
	if (r < 0)
		fprintf(stderr, "vhu-vsock: loop: %s\n", strerror(-r));
out:
	/* The session first (it stops the queues and resets the device),
	 * then the device's host sockets. */
	vhu_backend_free(b);
	vhu_vsock_free(dev);
	vhu_loop_free(loop);
	return r < 0 ? 1 : 0;
}
