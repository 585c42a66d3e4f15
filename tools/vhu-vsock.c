/* SPDX-License-Identifier: MIT */
/*
 * vhu-vsock: a vhost-user-vsock back-end daemon.  Guest stream sockets are
 * connected to host Unix sockets in the hybrid-vsock convention
 * (devices/vsock/vsock.h, docs/vhu-vsock.md).  One thread: the session,
 * the queues, every host socket and the control socket share one loop.
 * Clean exit on SIGTERM / SIGINT.  Takes a systemd-activated listening
 * socket (LISTEN_FDS, fd 3) and tells a service manager (NOTIFY_SOCKET)
 * when it is ready and when it stops.
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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

/* ---- control socket: JSON-RPC 2.0, one request and one answer per line,
 * methods info and stats (the form of vhu-blk's) ---- */

#define CTL_MAX_CLIENTS 16
#define CTL_LINE_MAX 4096

struct ctl_client {
	int fd;
	size_t len;
	char buf[CTL_LINE_MAX];
};

struct ctl {
	struct vhu_loop *loop;
	int fd;
	const char *path, *sock, *uds;
	uint64_t cid;
	uint32_t buf_alloc;
	struct vhu_vsock *dev;
	struct vhu_backend *b;
	struct ctl_client *clients[CTL_MAX_CLIENTS];
};

static json_object *u64(uint64_t v)
{
	return json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static json_object *ctl_info(struct ctl *c)
{
	json_object *o = json_object_new_object();
	char feat[24];

	snprintf(feat, sizeof(feat), "0x%016llx",
		 (unsigned long long)vhu_backend_features(c->b));
	json_object_object_add(o, "device", json_object_new_string("vsock"));
	json_object_object_add(o, "guest_cid", u64(c->cid));
	json_object_object_add(o, "socket", json_object_new_string(c->sock));
	json_object_object_add(o, "uds_path", c->uds ? json_object_new_string(c->uds) : NULL);
	json_object_object_add(o, "buf_alloc", u64(c->buf_alloc));
	json_object_object_add(o, "connected",
			       json_object_new_boolean(vhu_backend_is_connected(c->b)));
	json_object_object_add(o, "features", json_object_new_string(feat));
	return o;
}

static json_object *ctl_stats(struct ctl *c)
{
	json_object *o = json_object_new_object();
	struct vhu_vsock_stats st;

	vhu_vsock_get_stats(c->dev, &st);
	json_object_object_add(o, "conns_open", u64(st.conns_open));
	json_object_object_add(o, "conns_total", u64(st.conns_total));
	json_object_object_add(o, "bytes_to_host", u64(st.bytes_to_host));
	json_object_object_add(o, "bytes_to_guest", u64(st.bytes_to_guest));
	json_object_object_add(o, "rst_sent", u64(st.rst_sent));
	json_object_object_add(o, "pkts_dropped", u64(st.pkts_dropped));
	return o;
}

/* The answer to one request line (NULL for a notification: no answer). */
static char *ctl_answer(struct ctl *c, const char *line)
{
	json_object *req = json_tokener_parse(line), *id = NULL, *m = NULL;
	json_object *resp = json_object_new_object(), *result = NULL;
	int code = 0;
	const char *msg = NULL;

	if (!req) {
		code = -32700, msg = "parse error";
	} else if (!json_object_is_type(req, json_type_object) ||
		   !json_object_object_get_ex(req, "method", &m) ||
		   !json_object_is_type(m, json_type_string)) {
		code = -32600, msg = "invalid request";
	} else {
		json_object_object_get_ex(req, "id", &id);
		const char *name = json_object_get_string(m);
		if (!strcmp(name, "info"))
			result = ctl_info(c);
		else if (!strcmp(name, "stats"))
			result = ctl_stats(c);
		else
			code = -32601, msg = "method not found";
		if (!id) {     /* a notification */
			json_object_put(result);
			json_object_put(resp);
			json_object_put(req);
			return NULL;
		}
	}
	json_object_object_add(resp, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(resp, "id", id ? json_object_get(id) : NULL);
	if (result) {
		json_object_object_add(resp, "result", result);
	} else {
		json_object *err = json_object_new_object();
		json_object_object_add(err, "code", json_object_new_int(code));
		json_object_object_add(err, "message", json_object_new_string(msg));
		json_object_object_add(resp, "error", err);
	}
	const char *out = json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN);
	char *line_out = NULL;
	if (out && asprintf(&line_out, "%s\n", out) < 0)
		line_out = NULL;
	json_object_put(resp);
	json_object_put(req);
	return line_out;
}

static void ctl_drop(struct ctl *c, unsigned i)
{
	vhu_loop_del(c->loop, c->clients[i]->fd);
	close(c->clients[i]->fd);
	free(c->clients[i]);
	c->clients[i] = NULL;
}

static void on_ctl_client(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct ctl *c = opaque;
	unsigned i;

	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		if (c->clients[i] && c->clients[i]->fd == fd)
			break;
	if (i == CTL_MAX_CLIENTS)
		return;
	struct ctl_client *cl = c->clients[i];
	ssize_t n = recv(fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ctl_drop(c, i);
		return;
	}
	cl->len += (size_t)n;
	char *nl;
	while ((nl = memchr(cl->buf, '\n', cl->len))) {
		*nl = '\0';
		char *ans = ctl_answer(c, cl->buf);
		size_t used = (size_t)(nl - cl->buf) + 1;
		memmove(cl->buf, nl + 1, cl->len - used);
		cl->len -= used;
		/* Answers are small; a client that does not read them is
		 * dropped rather than buffered for. */
		if (ans && send(fd, ans, strlen(ans), MSG_DONTWAIT | MSG_NOSIGNAL) !=
			   (ssize_t)strlen(ans)) {
			free(ans);
			ctl_drop(c, i);
			return;
		}
		free(ans);
	}
	if (cl->len == sizeof(cl->buf))
		ctl_drop(c, i);   /* a line longer than any request */
}

static void on_ctl_listen(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct ctl *c = opaque;
	int s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	unsigned i;

	if (s < 0)
		return;
	for (i = 0; i < CTL_MAX_CLIENTS && c->clients[i]; i++)
		;
	if (i == CTL_MAX_CLIENTS || !(c->clients[i] = calloc(1, sizeof(struct ctl_client)))) {
		close(s);
		return;
	}
	c->clients[i]->fd = s;
	if (vhu_loop_add(loop, s, EPOLLIN, on_ctl_client, c) < 0) {
		close(s);
		free(c->clients[i]);
		c->clients[i] = NULL;
	}
}

static int ctl_open(struct ctl *c)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;

	if (strlen(c->path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, c->path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	/* A stale control socket of an earlier run is replaced; a live one
	 * is another daemon's. */
	if (lstat(c->path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		int t = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = t >= 0 && connect(t, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (t >= 0)
			close(t);
		if (!live)
			unlink(c->path);
	}
	int r = 0;
	if (bind(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(c->fd, 8) < 0)
		r = -errno;
	else if ((r = vhu_loop_add(c->loop, c->fd, EPOLLIN, on_ctl_listen, c)) < 0)
		unlink(c->path);
	if (r < 0) {
		close(c->fd);
		c->fd = -1;
	}
	return r;
}

static void ctl_close(struct ctl *c)
{
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		if (c->clients[i])
			ctl_drop(c, i);
	if (c->fd >= 0) {
		vhu_loop_del(c->loop, c->fd);
		close(c->fd);
		unlink(c->path);
	}
}

/* ---- service manager ---- */

#define SD_LISTEN_FDS_START 3

/* systemd socket activation: LISTEN_PID is us and LISTEN_FDS >= 1; the
 * first fd must be a listening Unix stream socket.  -1: none handed over;
 * -2: one handed over that is not usable. */
static int systemd_fd(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int acc = 0, type = 0;
	socklen_t len = sizeof(acc);
	struct sockaddr_un a;
	socklen_t alen = sizeof(a);
	char *end;

	if (!pid || !fds || strtol(pid, &end, 10) != (long)getpid() || *end ||
	    strtol(fds, &end, 10) < 1 || *end)
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (getsockopt(SD_LISTEN_FDS_START, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 ||
	    !acc || (len = sizeof(type),
		     getsockopt(SD_LISTEN_FDS_START, SOL_SOCKET, SO_TYPE, &type, &len)) < 0 ||
	    type != SOCK_STREAM ||
	    getsockname(SD_LISTEN_FDS_START, (struct sockaddr *)&a, &alen) < 0 ||
	    a.sun_family != AF_UNIX)
		return -2;
	return SD_LISTEN_FDS_START;
}

/* sd_notify(3)'s protocol: one datagram to the AF_UNIX socket named by
 * NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). */
static void notify(const char *state)
{
	const char *addr = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n;

	if (!addr || (addr[0] != '/' && addr[0] != '@') ||
	    (n = strlen(addr)) >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, addr, n);
	if (addr[0] == '@')
		sa.sun_path[0] = '\0';
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)!sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
				  (addr[0] == '/')));
	close(fd);
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
"      --control PATH       JSON-RPC 2.0 control socket (methods info, stats)\n"
"      --connect-timeout MS how long a host program may take to send its\n"
"                           CONNECT line, and the guest to accept (10000)\n"
"      --buf-alloc BYTES    buffer per connection towards the host\n"
"                           (default %u, at most %u)\n"
"      --print-capabilities print the back-end capabilities as JSON and exit\n"
"  -h, --help               show this help and exit\n"
"  -V, --version            show the version and exit\n"
"\n"
"A systemd-activated socket (LISTEN_FDS) is used when there is one; then\n"
"--socket-path is optional (it only names the socket in messages).  Under a\n"
"service manager (NOTIFY_SOCKET), READY=1 is sent once the socket listens,\n"
"STOPPING=1 on SIGTERM.\n"
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

enum { OPT_CAPS = 256, OPT_BUF_ALLOC, OPT_CONTROL, OPT_CONNECT_TIMEOUT };

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket-path", required_argument, NULL, 's' },
		{ "guest-cid", required_argument, NULL, 'c' },
		{ "uds-path", required_argument, NULL, 'u' },
		{ "buf-alloc", required_argument, NULL, OPT_BUF_ALLOC },
		{ "control", required_argument, NULL, OPT_CONTROL },
		{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
		{ "print-capabilities", no_argument, NULL, OPT_CAPS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *control = NULL;
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
		case OPT_CONNECT_TIMEOUT:
			if (parse_u64(optarg, 1, 3600000, &v) < 0) {
				fprintf(stderr, "vhu-vsock: bad --connect-timeout '%s' "
					"(1 .. 3600000 ms)\n", optarg);
				return 2;
			}
			o.connect_timeout_ms = (unsigned)v;
			break;
		case OPT_CONTROL:
			control = optarg;
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
	int sd = systemd_fd();
	if (sd == -2) {
		fprintf(stderr, "vhu-vsock: the activated fd %d is not a listening "
			"Unix stream socket\n", SD_LISTEN_FDS_START);
		return 1;
	}
	if (sd >= 0 && !sock)
		sock = "(socket activation)";
	if (optind < argc || !sock || !o.guest_cid) {
		fprintf(stderr, "vhu-vsock: --guest-cid and --socket-path (or an activated socket) are required\n");
		usage(stderr);
		return 2;
	}

	/* Every connection holds a host socket: the soft fd limit (often
	 * 1024) is raised to the hard one.  At the limit, guest connections
	 * are refused and host ones wait (the device pauses its listener). */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	struct vhu_loop *loop = NULL;
	struct vhu_vsock *dev = NULL;
	struct vhu_backend *b = NULL;
	struct vhu_backend_opts bo;
	struct ctl ctl = { .fd = -1 };
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
		r = sd >= 0 ? vhu_backend_listen_fd(b, sd) : vhu_backend_listen(b, sock);
	if (r == 0)
		r = vhu_backend_attach(b, loop);
	if (r == 0 && control) {
		ctl = (struct ctl){ .loop = loop, .fd = -1, .path = control, .sock = sock,
				    .uds = o.uds_path, .cid = o.guest_cid,
				    .buf_alloc = o.buf_alloc ? o.buf_alloc
							     : VHU_VSOCK_BUF_ALLOC_DEFAULT,
				    .dev = dev, .b = b };
		what = control;
		r = ctl_open(&ctl);
	}
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
	notify("READY=1");
	r = vhu_loop_run(loop);
	notify("STOPPING=1");
	if (r < 0)
		fprintf(stderr, "vhu-vsock: loop: %s\n", strerror(-r));
out:
	if (ctl.loop)
		ctl_close(&ctl);
	/* The session first (it stops the queues and resets the device),
	 * then the device's host sockets. */
	vhu_backend_free(b);
	vhu_vsock_free(dev);
	vhu_loop_free(loop);
	return r < 0 ? 1 : 0;
}
