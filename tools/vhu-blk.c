/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk: a vhost-user-blk back-end daemon.
 *
 * Follows QEMU's back-end program conventions (docs/interop/vhost-user.rst,
 * "Backend program conventions"): --socket-path or --fd, --print-
 * capabilities, no daemonizing, clean exit on SIGTERM/SIGINT.  Also takes
 * a systemd-activated listening socket (LISTEN_FDS, fd 3).
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stddef.h>
#include <unistd.h>

#ifdef VHU_HAVE_TCMALLOC
#include <gperftools/tcmalloc.h>
#endif

#include <vhu/vhu.h>

#include "throttle.h"
#include "vhu-blk-daemon.h"

#define PROG "vhu-blk"
#define SD_LISTEN_FDS_START 3

void vhu_blk_daemon_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s\n", line);
}

static void usage(FILE *f)
{
	fprintf(f,
"Usage: " PROG " --blk-file PATH|URI (--socket-path PATH | --fd N) [OPTIONS]\n"
"\n"
"Serve a raw image file, a block device, an NBD export or an RBD image to\n"
"a vhost-user front-end (QEMU) as a virtio-blk device.\n"
"\n"
"  -b, --blk-file PATH|URI  image file or block device to serve (required),\n"
"                           null:SIZE, or an NBD export (when built with\n"
"                           libnbd): nbd://HOST[:PORT]/EXPORT,\n"
"                           nbd+unix:///EXPORT?socket=PATH, nbds://... (TLS),\n"
"                           or an RBD image (when built with librbd):\n"
"                           rbd:POOL/IMAGE[@SNAP][:conf=FILE][:id=NAME]\n"
"                           (a snapshot is read-only)\n"
"      --reconnect-timeout SEC  NBD: how long requests wait for a lost\n"
"                           server before they fail (default %u)\n"
"      --nbd-persistent-cache  NBD: writes the server acknowledged survive\n"
"                           its crash: a lost connection does not fail the\n"
"                           next FLUSH\n"
"      --iommu on|off       offer VIRTIO_F_ACCESS_PLATFORM, which QEMU's\n"
"                           iommu_platform=on needs (default on)\n"
"  -s, --socket-path PATH   listen on a Unix socket at PATH\n"
"      --fd N               use the inherited socket fd N (connected: one\n"
"                           session; listening: accept on it)\n"
"      --socket-mode MODE   mode of the --socket-path socket, octal (default\n"
"                           0600, or 0660 with --socket-group)\n"
"      --socket-user USER   owner of the --socket-path socket (needs root)\n"
"      --socket-group GROUP group of the --socket-path socket (a front-end run\n"
"                           as another user, such as libvirt's QEMU, needs\n"
"                           this or --socket-user/--socket-mode)\n"
"  -r, --read-only          serve the image read-only\n"
"      --serial STR         device serial (GET_ID), at most 20 bytes (default:\n"
"                           file name and a hash of the image's path)\n"
"      --num-queues N       number of request queues (1..%u, default 1)\n"
"      --threads N          I/O threads (default: one per queue); fewer\n"
"                           threads than queues share them round-robin\n"
"      --blk-size N         logical block size: 512 or 4096 (default: the\n"
"                           host's logical block size, and with --cache none\n"
"                           its direct-I/O alignment)\n"
"      --cache MODE         none (O_DIRECT) or writeback (default)\n"
"      --aio ENGINE         io_uring, threads (blocking I/O on the queue\n"
"                           threads) or auto (default: io_uring, or threads\n"
"                           with a warning when io_uring is unavailable)\n"
"      --poll-us N          poll a queue for up to N microseconds after its\n"
"                           last request before sleeping; the budget adapts\n"
"                           to the load (default %u for files and block\n"
"                           devices, 0 for NBD and RBD; 0: off; io_uring\n"
"                           queues with a thread of their own; only while\n"
"                           at most half the usable CPUs have a queue busy)\n"
"      --poll always        never sleep: a core per queue, even when idle\n"
"      --format raw|auto    auto (default): refuse images that start with a\n"
"                           qcow2, qed, vmdk, vdi, vhdx, vpc or LUKS header\n"
"                           (convert them: qemu-img convert -O raw); raw:\n"
"                           serve the bytes as they are, whatever they hold\n"
"      --lock on|off        lock the image against other writers (vhu-blk,\n"
"                           QEMU) as QEMU does (default on); the write lock\n"
"                           is held while the front-end runs the queues, so\n"
"                           two vhu-blk can hand an image over (migration);\n"
"                           off on RBD: take the exclusive lock even from a\n"
"                           client that writes the image (a VM)\n"
"      --throttle KEY=VALUE[,KEY=VALUE...]\n"
"                           I/O limits, QEMU's keys: iops-total, iops-read,\n"
"                           iops-write, bps-total, bps-read, bps-write, each\n"
"                           also -max (burst) and -max-length (seconds), and\n"
"                           iops-size; changed live: vhu ctl CONTROL throttle\n"
"      --throttle-group NAME  share the limits' budget with the other vhu-blk\n"
"                           of group NAME (same user); --throttle then sets\n"
"                           the group's limits\n"
"      --control PATH       JSON-RPC 2.0 control socket (info, stats, resize,\n"
"                           refresh, throttle), mode 0600: this user and\n"
"                           root only\n"
"      --control-mode MODE, --control-user USER, --control-group GROUP\n"
"                           its mode, owner and group, as the --socket-*\n"
"                           options (default 0600, or 0660 with a group)\n"
"      --control-timeout SEC  drop control clients idle this long (default 60)\n"
"      --print-capabilities print the back-end capabilities as JSON and exit\n"
"  -h, --help               show this help and exit\n"
"  -V, --version            show the version and exit\n"
"\n"
"A systemd-activated socket (LISTEN_FDS) is used when there is one; a\n"
"--socket-path must then name its address.  Under a service manager\n"
"(NOTIFY_SOCKET), READY=1 is sent once the socket listens, STOPPING=1 on\n"
"SIGTERM.  SIGTERM or SIGINT: finish the requests in progress (at most 10 s)\n"
"and exit 0; a front-end that reconnects to a new vhu-blk sees a pause.\n"
"SIGHUP: re-read the image size (a smaller size only as the file is with\n"
"the queues quiesced).\n"
"Log level: environment variable VHU_LOG=error|warn|info|debug.\n",
		VHU_BLK_RECONNECT_DEFAULT, VHU_BACKEND_MAX_QUEUES,
		VHU_BLK_POLL_US_DEFAULT);
}

static int parse_uint(const char *s, unsigned long min, unsigned long max,
		      unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

struct options {
	const char *blk_file;
	const char *socket_path;
	const char *control;
	const char *serial;
	int fd;
	bool read_only;
	bool print_caps;
	bool no_lock;
	bool format_raw;
	unsigned reconnect_timeout;
	bool nbd_persistent_cache;
	struct vhu_blk_sock_perm socket_perm;
	struct vhu_blk_sock_perm control_perm;
	bool socket_perm_set;      /* a --socket-* permission option given */
	bool socket_mode_set, control_mode_set;
	unsigned control_timeout;  /* seconds */
	unsigned num_queues;
	unsigned threads;
	unsigned blk_size;
	enum vhu_blk_cache cache;
	enum vhu_blk_aio aio;
	unsigned poll_us;
	bool poll_always;
	bool iommu;
};

/* --socket-{mode,user,group} and --control-{mode,user,group}: mode,
 * user, group in this order (parse_perm_option counts on it). */
enum {
	PERM_OPT_BASE = 512,
	OPT_SOCKET_MODE = PERM_OPT_BASE, OPT_SOCKET_USER, OPT_SOCKET_GROUP,
	PERM_OPT_CONTROL,
	OPT_CONTROL_MODE = PERM_OPT_CONTROL, OPT_CONTROL_USER, OPT_CONTROL_GROUP,
};

static int parse_perm_option(int c, struct options *o)
{
	static const char *const names[] = {
		"--socket-mode", "--socket-user", "--socket-group",
		"--control-mode", "--control-user", "--control-group",
	};
	bool control = c >= PERM_OPT_CONTROL;
	struct vhu_blk_sock_perm *p = control ? &o->control_perm : &o->socket_perm;
	const char *name = names[c - PERM_OPT_BASE];
	int what = (c - PERM_OPT_BASE) % 3;

	if (!control)
		o->socket_perm_set = true;
	if (what == 0) {
		if (vhu_blk_parse_mode(optarg, &p->mode) < 0) {
			vhu_blk_daemon_log("error: %s must be an octal mode 0..0777, "
					   "not '%s'", name, optarg);
			return -1;
		}
		*(control ? &o->control_mode_set : &o->socket_mode_set) = true;
	} else if (what == 1 ? vhu_blk_parse_user(optarg, &p->uid) < 0
			     : vhu_blk_parse_group(optarg, &p->gid) < 0) {
		vhu_blk_daemon_log("error: %s: no %s '%s'", name,
				   what == 1 ? "user" : "group", optarg);
		return -1;
	}
	return 0;
}

/* --throttle KEY=VALUE[,...] (I/O limits, QEMU's keys): repeated, the
 * lists add up; applied once the device is open. */
enum { OPT_THROTTLE = 1024, OPT_THROTTLE_GROUP };
static struct vhu_blk_throttle throttle_opt;
static const char *throttle_group_opt;

static int parse_throttle(const char *list)
{
	char err[256];

	if (vhu_blk_throttle_parse(&throttle_opt, list, err, sizeof(err)) < 0 ||
	    vhu_blk_throttle_check(&throttle_opt, err, sizeof(err)) < 0) {
		vhu_blk_daemon_log("error: --throttle: %s", err);
		return -1;
	}
	return 0;
}

/* --version's second line: the allocator linked in (tcmalloc is also a
 * real reference to it, so the linker's --as-needed keeps it). */
static void print_allocator(void)
{
#ifdef VHU_HAVE_TCMALLOC
	int major = 0, minor = 0;
	const char *patch = "";

	tc_version(&major, &minor, &patch);
	printf("allocator: tcmalloc %d.%d%s\n", major, minor, patch ? patch : "");
#else
	printf("allocator: the C library's\n");
#endif
}

/* A number of seconds, min..86400, for the option named name. */
static int parse_seconds(const char *name, unsigned long min, unsigned *out)
{
	unsigned long v;

	if (parse_uint(optarg, min, 86400, &v) < 0) {
		vhu_blk_daemon_log("error: %s must be %lu..86400 seconds, not '%s'",
				   name, min, optarg);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

/* --print-capabilities: QEMU's vhost-user.json "block" type, and the
 * image back-ends compiled in. */
static void print_caps(void)
{
	char kinds[64];
	const char *sep = "";

	snprintf(kinds, sizeof(kinds), "%s", vhu_blk_backends());
	printf("{\"type\": \"block\", \"features\": [\"read-only\", "
	       "\"blk-file\"], \"backends\": [");
	for (char *k = strtok(kinds, " "); k; k = strtok(NULL, " ")) {
		printf("%s\"%s\"", sep, k);
		sep = ", ";
	}
	printf("]}\n");
}

enum { OPT_FD = 256, OPT_SERIAL, OPT_NUM_QUEUES, OPT_BLK_SIZE, OPT_CACHE, OPT_AIO,
       OPT_CONTROL, OPT_CAPS, OPT_THREADS,
       OPT_LOCK, OPT_FORMAT, OPT_CONTROL_TIMEOUT,
       OPT_POLL_US, OPT_POLL, OPT_RECONNECT, OPT_NBD_PERSISTENT_CACHE,
       OPT_IOMMU };

/* --fd, --num-queues, --threads, --blk-size, --poll-us (optarg). */
static int parse_number_option(int c, struct options *o)
{
	unsigned long v;

	switch (c) {
	case OPT_FD:
		if (parse_uint(optarg, 0, INT_MAX, &v) < 0) {
			vhu_blk_daemon_log("error: invalid --fd '%s'", optarg);
			return -1;
		}
		o->fd = (int)v;
		break;
	case OPT_NUM_QUEUES:
		if (parse_uint(optarg, 1, VHU_BACKEND_MAX_QUEUES, &v) < 0) {
			vhu_blk_daemon_log("error: --num-queues must be 1..%u, not '%s'",
					   VHU_BACKEND_MAX_QUEUES, optarg);
			return -1;
		}
		o->num_queues = (unsigned)v;
		break;
	case OPT_THREADS:
		if (parse_uint(optarg, 1, VHU_BACKEND_MAX_QUEUES, &v) < 0) {
			vhu_blk_daemon_log("error: --threads must be 1..%u, not '%s'",
					   VHU_BACKEND_MAX_QUEUES, optarg);
			return -1;
		}
		o->threads = (unsigned)v;
		break;
	case OPT_BLK_SIZE:
		if (parse_uint(optarg, 512, 4096, &v) < 0 ||
		    (v != 512 && v != 4096)) {
			vhu_blk_daemon_log("error: --blk-size must be 512 or 4096, not '%s'",
					   optarg);
			return -1;
		}
		o->blk_size = (unsigned)v;
		break;
	case OPT_POLL_US:
		if (parse_uint(optarg, 0, VHU_BLK_POLL_US_MAX, &v) < 0) {
			vhu_blk_daemon_log("error: --poll-us must be 0..%u, not '%s'",
					   VHU_BLK_POLL_US_MAX, optarg);
			return -1;
		}
		o->poll_us = (unsigned)v;
		break;
	}
	return 0;
}

/* --cache, --aio, --poll, --lock, --format (optarg). */
static int parse_word_option(int c, struct options *o)
{
	switch (c) {
	case OPT_CACHE:
		if (strcmp(optarg, "none") == 0) {
			o->cache = VHU_BLK_CACHE_NONE;
		} else if (strcmp(optarg, "writeback") == 0) {
			o->cache = VHU_BLK_CACHE_WRITEBACK;
		} else {
			vhu_blk_daemon_log("error: --cache must be none or writeback, not '%s'",
					   optarg);
			return -1;
		}
		break;
	case OPT_AIO:
		if (strcmp(optarg, "auto") == 0) {
			o->aio = VHU_BLK_AIO_AUTO;
		} else if (strcmp(optarg, "io_uring") == 0) {
			o->aio = VHU_BLK_AIO_IO_URING;
		} else if (strcmp(optarg, "threads") == 0) {
			o->aio = VHU_BLK_AIO_THREADS;
		} else {
			vhu_blk_daemon_log("error: --aio must be auto, io_uring or "
					   "threads, not '%s'", optarg);
			return -1;
		}
		break;
	case OPT_POLL:
		if (strcmp(optarg, "always") != 0) {
			vhu_blk_daemon_log("error: --poll takes 'always', not '%s' "
					   "(--poll-us N sets the adaptive cap)", optarg);
			return -1;
		}
		o->poll_always = true;
		break;
	case OPT_LOCK:
		if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
			vhu_blk_daemon_log("error: --lock must be on or off, not '%s'",
					   optarg);
			return -1;
		}
		o->no_lock = strcmp(optarg, "off") == 0;
		break;
	case OPT_FORMAT:
		if (strcmp(optarg, "raw") && strcmp(optarg, "auto")) {
			vhu_blk_daemon_log("error: --format must be raw or auto, not "
					   "'%s' (other formats: see --help)", optarg);
			return -1;
		}
		o->format_raw = strcmp(optarg, "raw") == 0;
		break;
	}
	return 0;
}

/* What no single option can say wrong. */
static int check_combination(struct options *o)
{
	if (o->socket_path && o->fd >= 0) {
		vhu_blk_daemon_log("error: --socket-path and --fd are mutually exclusive");
		return -1;
	}
	if (!o->blk_file) {
		vhu_blk_daemon_log("error: --blk-file is required (see --help)");
		return -1;
	}
	if (o->socket_perm_set && o->fd >= 0) {
		vhu_blk_daemon_log("error: --socket-mode, --socket-user and "
				   "--socket-group apply to --socket-path, not --fd");
		return -1;
	}
	/* A group alone opens the socket to it, like --control-group always did. */
	if (!o->socket_mode_set && o->socket_perm.gid >= 0)
		o->socket_perm.mode = 0660;
	if (!o->control_mode_set && o->control_perm.gid >= 0)
		o->control_perm.mode = 0660;
	return 0;
}

/* Returns 0 to run, 1 when done (help/version), -1 on a bad command line. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "blk-file", required_argument, NULL, 'b' },
		{ "socket-path", required_argument, NULL, 's' },
		{ "fd", required_argument, NULL, OPT_FD },
		{ "read-only", no_argument, NULL, 'r' },
		{ "serial", required_argument, NULL, OPT_SERIAL },
		{ "num-queues", required_argument, NULL, OPT_NUM_QUEUES },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "blk-size", required_argument, NULL, OPT_BLK_SIZE },
		{ "cache", required_argument, NULL, OPT_CACHE },
		{ "aio", required_argument, NULL, OPT_AIO },
		{ "control", required_argument, NULL, OPT_CONTROL },
		{ "lock", required_argument, NULL, OPT_LOCK },
		{ "control-group", required_argument, NULL, OPT_CONTROL_GROUP },
		{ "control-mode", required_argument, NULL, OPT_CONTROL_MODE },
		{ "control-user", required_argument, NULL, OPT_CONTROL_USER },
		{ "socket-mode", required_argument, NULL, OPT_SOCKET_MODE },
		{ "socket-user", required_argument, NULL, OPT_SOCKET_USER },
		{ "socket-group", required_argument, NULL, OPT_SOCKET_GROUP },
		{ "control-timeout", required_argument, NULL, OPT_CONTROL_TIMEOUT },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "poll-us", required_argument, NULL, OPT_POLL_US },
		{ "poll", required_argument, NULL, OPT_POLL },
		{ "print-capabilities", no_argument, NULL, OPT_CAPS },
		{ "reconnect-timeout", required_argument, NULL, OPT_RECONNECT },
		{ "nbd-persistent-cache", no_argument, NULL, OPT_NBD_PERSISTENT_CACHE },
		{ "throttle", required_argument, NULL, OPT_THROTTLE },
		{ "throttle-group", required_argument, NULL, OPT_THROTTLE_GROUP },
		{ "iommu", required_argument, NULL, OPT_IOMMU },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct options){ .fd = -1, .num_queues = 1, .blk_size = 0,
			       .iommu = true,
			       .reconnect_timeout = VHU_BLK_RECONNECT_DEFAULT,
			       .poll_us = VHU_BLK_POLL_US_AUTO,
			       .cache = VHU_BLK_CACHE_WRITEBACK,
			       .socket_perm = { 0600, -1, -1 },
			       .control_perm = { 0600, -1, -1 },
			       .control_timeout = 60 };
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":b:s:rhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			o->blk_file = optarg;
			break;
		case 's':
			o->socket_path = optarg;
			break;
		case 'r':
			o->read_only = true;
			break;
		case OPT_SERIAL:
			if (strlen(optarg) > VHU_BLK_ID_BYTES) {
				vhu_blk_daemon_log("error: --serial is longer than %d bytes",
						   VHU_BLK_ID_BYTES);
				return -1;
			}
			o->serial = optarg;
			break;
		case OPT_FD: case OPT_NUM_QUEUES: case OPT_THREADS:
		case OPT_BLK_SIZE: case OPT_POLL_US:
			if (parse_number_option(c, o) < 0)
				return -1;
			break;
		case OPT_CACHE: case OPT_AIO: case OPT_POLL: case OPT_LOCK:
		case OPT_FORMAT:
			if (parse_word_option(c, o) < 0)
				return -1;
			break;
		case OPT_CONTROL:
			o->control = optarg;
			break;
		case OPT_SOCKET_MODE:
		case OPT_SOCKET_USER:
		case OPT_SOCKET_GROUP:
		case OPT_CONTROL_MODE:
		case OPT_CONTROL_USER:
		case OPT_CONTROL_GROUP:
			if (parse_perm_option(c, o) < 0)
				return -1;
			break;
		case OPT_CONTROL_TIMEOUT:
			if (parse_seconds("--control-timeout", 1, &o->control_timeout) < 0)
				return -1;
			break;
		case OPT_RECONNECT:
			if (parse_seconds("--reconnect-timeout", 0, &o->reconnect_timeout) < 0)
				return -1;
			break;
		case OPT_NBD_PERSISTENT_CACHE:
			o->nbd_persistent_cache = true;
			break;
		case OPT_IOMMU:
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				vhu_blk_daemon_log("error: --iommu takes 'on' or "
						   "'off', not '%s'", optarg);
				return -1;
			}
			o->iommu = !strcmp(optarg, "on");
			break;
		case OPT_CAPS:
			o->print_caps = true;
			break;
		case OPT_THROTTLE:
			if (parse_throttle(optarg) < 0)
				return -1;
			break;
		case OPT_THROTTLE_GROUP:
			throttle_group_opt = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf(PROG " %s (libvhu %s)\n", VHU_VERSION_STRING, vhu_version());
			print_allocator();
			return 1;
		case ':':
			vhu_blk_daemon_log("error: option '%s' needs an argument",
					   argv[optind - 1]);
			return -1;
		default:
			vhu_blk_daemon_log("error: unknown option '%s' (see --help)",
					   argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		vhu_blk_daemon_log("error: unexpected argument '%s' (see --help)",
				   argv[optind]);
		return -1;
	}
	if (o->print_caps) {
		/* docs/interop/vhost-user.json: type "block" */
		print_caps();
		return 1;
	}
	return check_combination(o);
}

/* systemd socket activation: LISTEN_PID is us and LISTEN_FDS >= 1. */
static int systemd_fd(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	unsigned long p, n;

	if (!pid || !fds || parse_uint(pid, 1, LONG_MAX, &p) < 0 ||
	    parse_uint(fds, 1, INT_MAX, &n) < 0 || (pid_t)p != getpid())
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return SD_LISTEN_FDS_START;
}

void vhu_blk_daemon_size_changed(struct vhu_blk_daemon *d, uint64_t old_size)
{
	uint64_t size = vhu_blk_size(d->blk);
	int r;

	vhu_blk_daemon_log("image size %llu -> %llu bytes",
			   (unsigned long long)old_size, (unsigned long long)size);
	if (!vhu_backend_is_connected(d->backend)) {
		vhu_blk_daemon_log("no front-end connected: the new size is seen "
				   "on the next connection");
		return;
	}
	/* virtio 1.2, 5.2.4: capacity may change; the driver re-reads the
	 * config space after CONFIG_CHANGE_MSG. */
	r = vhu_backend_config_changed(d->backend, true);
	if (r < 0)
		vhu_blk_daemon_log("cannot notify the front-end of the new size: %s",
				   r == -EOPNOTSUPP ? "no back-end channel negotiated"
						    : strerror(-r));
}

/* SIGTERM/SIGINT is a graceful restart: the loop stops, and freeing the
 * session stops every queue, which completes and pushes each request the
 * device popped.  A request that never completes (a hung disk) must not
 * keep the daemon: after STOP_GRACE_S it exits anyway; the inflight
 * record (INFLIGHT_SHMFD) makes the next vhu-blk resubmit what was left. */
#define STOP_GRACE_S 10

static void stop_grace_over(int sig)
{
	static const char msg[] = "vhu-blk: requests still in flight after "
				  "the stop grace period: exiting; the next "
				  "vhu-blk resubmits them\n";
	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(0);
}

static void arm_stop_grace(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop_grace_over;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(STOP_GRACE_S);
}

/* Re-read the image size and tell the front-end when it changed;
 * verbose: say so when it did not. */
static void refresh(struct vhu_blk_daemon *d, const char *why, bool verbose)
{
	uint64_t old = vhu_blk_size(d->blk);
	int r = vhu_blk_refresh_size(d->blk);

	if (r < 0)
		vhu_blk_daemon_log("%s: cannot read the image size: %s", why,
				   strerror(-r));
	else if (r > 0 || vhu_blk_size(d->blk) != old) {
		vhu_blk_daemon_log("%s: image size changed", why);
		vhu_blk_daemon_size_changed(d, old);
	} else if (verbose) {
		vhu_blk_daemon_log("%s: image size unchanged", why);
	}
}

/* The image changed outside (an RBD image's header: `rbd resize`...). */
static void on_image_change(struct vhu_loop *loop, int fd, uint32_t events,
			    void *opaque)
{
	(void)loop;
	(void)fd;
	(void)events;
	refresh(opaque, "image changed", false);
}

static void on_signal(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct vhu_blk_daemon *d = opaque;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			refresh(d, "SIGHUP", true);
		} else {
			vhu_blk_notify("STOPPING=1");
			arm_stop_grace();
			vhu_loop_stop(loop);
		}
	}
}

static const char *open_error(int r)
{
	switch (r) {
	case -ENOTBLK:
		return "not a regular file or block device";
	case -ENOSYS:
		return "io_uring unavailable (see above)";
	case -EINVAL:
		return "invalid argument (see above; or O_DIRECT unsupported here? "
		       "try --cache=writeback)";
	default:
		return strerror(-r);
	}
}

/* Where connections come from, decided before the image is opened:
 * a systemd socket (LISTEN_FDS), an inherited --fd (listening or
 * connected), or --socket-path.  -1 after logging an error. */
static int pick_listener(struct options *o, int *listen_fd, bool *from_fd)
{
	int sd = o->fd < 0 ? systemd_fd() : -1;

	*listen_fd = -1;
	*from_fd = false;
	if (sd >= 0) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);

		/* The same command line serves with and without the .socket
		 * unit: --socket-path then names the socket systemd made. */
		if (o->socket_path &&
		    (getsockname(sd, (struct sockaddr *)&sa, &len) < 0 ||
		     sa.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path) ||
		     strncmp(sa.sun_path, o->socket_path, sizeof(sa.sun_path)) != 0)) {
			vhu_blk_daemon_log("error: the systemd socket (fd %d) is not bound "
					   "to --socket-path '%s'", sd, o->socket_path);
			return -1;
		}
		if (o->socket_perm_set)
			vhu_blk_daemon_log("note: --socket-mode/-user/-group ignored: the "
					   "socket unit (SocketMode=, SocketUser=, "
					   "SocketGroup=) made the socket");
		o->socket_path = NULL;
		*listen_fd = sd;
		return 0;
	}
	if (!o->socket_path && o->fd < 0) {
		vhu_blk_daemon_log("error: one of --socket-path or --fd is required "
				   "(or systemd socket activation)");
		return -1;
	}
	if (o->fd >= 0) {
		struct stat st;
		int acc = 0;
		socklen_t len = sizeof(acc);

		if (fstat(o->fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
			vhu_blk_daemon_log("error: --fd %d is not an open socket", o->fd);
			return -1;
		}
		/* A listening socket (as a service manager passes it) is
		 * accepted on, like the systemd one. */
		if (getsockopt(o->fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 &&
		    acc) {
			*listen_fd = o->fd;
			*from_fd = true;
			o->fd = -1;
		}
	}
	return 0;
}

/* Hand the back-end its socket; -errno after logging an error. */
static int open_listener(struct vhu_blk_daemon *d, struct options *o, int listen_fd,
			 bool from_fd, char *fd_desc, size_t desc_len)
{
	int r;

	if (o->socket_path) {
		d->socket_desc = o->socket_path;
		r = vhu_blk_sock_listen(o->socket_path, &o->socket_perm, 4, &d->sock);
		if (r == 0) {
			r = vhu_backend_listen_fd(d->backend, d->sock.fd);
			if (r < 0)
				vhu_blk_sock_remove(&d->sock);
		}
		if (r == -EADDRINUSE)
			vhu_blk_daemon_log("error: socket path '%s' is in use", o->socket_path);
		else if (r == -EEXIST)
			vhu_blk_daemon_log("error: socket path '%s' exists and is not a "
					   "socket; refusing to replace it", o->socket_path);
		else if (r == -EPERM)
			vhu_blk_daemon_log("error: cannot give socket '%s' its owner or "
					   "group (--socket-user needs root; --socket-group "
					   "one of this user's groups): %s", o->socket_path,
					   strerror(-r));
		else if (r < 0)
			vhu_blk_daemon_log("error: cannot listen on '%s': %s",
					   o->socket_path, strerror(-r));
	} else if (o->fd >= 0) {
		snprintf(fd_desc, desc_len, "fd %d", o->fd);
		d->socket_desc = fd_desc;
		r = vhu_backend_connected_fd(d->backend, o->fd);
		if (r < 0)
			vhu_blk_daemon_log("error: cannot use --fd %d: %s", o->fd,
					   strerror(-r));
	} else {
		d->socket_desc = from_fd ? fd_desc : "systemd";
		if (from_fd)
			snprintf(fd_desc, desc_len, "fd %d (listening)", listen_fd);
		r = vhu_backend_listen_fd(d->backend, listen_fd);
		if (r < 0)
			vhu_blk_daemon_log("error: cannot use the %s socket: %s",
					   from_fd ? "--fd" : "systemd", strerror(-r));
	}
	return r;
}

int main(int argc, char **argv)
{
	struct vhu_blk_daemon d = { 0 };
	struct vhu_backend_opts bo;
	struct options o;
	char open_err[512] = "";
	char fd_desc[32];
	sigset_t mask;
	int r, sfd = -1, listen_fd = -1, status = 1;
	bool listen_from_fd = false;

	r = parse_args(argc, argv, &o);
	if (r != 0)
		return r > 0 ? 0 : 1;

	r = pick_listener(&o, &listen_fd, &listen_from_fd);
	if (r < 0)
		return 1;

	signal(SIGPIPE, SIG_IGN);
	/* A front-end that shrinks guest memory it shared breaks the queue
	 * that touches it, instead of killing the daemon with SIGBUS. */
	r = vhu_sigbus_guard_install();
	if (r < 0)
		vhu_blk_daemon_log("warning: SIGBUS guard: %s", strerror(-r));
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	/* Blocked before any thread exists, so every worker inherits the
	 * mask and only the signalfd sees these signals. */
	sigprocmask(SIG_BLOCK, &mask, NULL);

	struct vhu_blk_opts bopts = {
		.path = o.blk_file,
		.read_only = o.read_only,
		.serial = o.serial,
		.num_queues = o.num_queues,
		.threads = o.threads,
		.blk_size = o.blk_size,
		.cache = o.cache,
		.aio = o.aio,
		.poll_us = o.poll_us,
		.poll_always = o.poll_always,
		.no_lock = o.no_lock,
		.format_raw = o.format_raw,
		.reconnect_timeout = o.reconnect_timeout,
		.nbd_persistent_cache = o.nbd_persistent_cache,
		.err = open_err,
		.err_len = sizeof(open_err),
	};
	r = vhu_blk_new(&bopts, &d.blk);
	if (r < 0) {
		if (open_err[0])
			vhu_blk_daemon_log("error: %s", open_err);
		else
			vhu_blk_daemon_log("error: cannot open image '%s': %s",
					   o.blk_file, open_error(r));
		return 1;
	}
	d.image_path = o.blk_file;
	if ((throttle_group_opt &&
	     vhu_blk_throttle_group(d.blk, throttle_group_opt, open_err,
				    sizeof(open_err)) < 0) ||
	    (vhu_blk_throttle_any(&throttle_opt) &&
	     vhu_blk_set_throttle(d.blk, &throttle_opt, open_err,
				  sizeof(open_err)) < 0)) {
		vhu_blk_daemon_log("error: %s", open_err);
		goto out_blk;
	}

	r = vhu_loop_new(&d.loop);
	if (r < 0) {
		vhu_blk_daemon_log("error: event loop: %s", strerror(-r));
		goto out_blk;
	}
	vhu_blk_backend_opts(d.blk, &bo);
	/* The device reaches guest memory only through the iovecs the
	 * library translates: it serves ACCESS_PLATFORM as the library does. */
	if (o.iommu)
		bo.flags |= VHU_BACKEND_OPT_ACCESS_PLATFORM;
	r = vhu_backend_new(&bo, &d.backend);
	if (r < 0) {
		vhu_blk_daemon_log("error: back-end: %s", strerror(-r));
		goto out_loop;
	}

	r = open_listener(&d, &o, listen_fd, listen_from_fd, fd_desc, sizeof(fd_desc));
	if (r < 0)
		goto out_backend;

	if (o.control) {
		struct vhu_blk_ctl_opts co = {
			.perm = o.control_perm,
			.idle_ms = o.control_timeout * 1000,
		};

		r = vhu_blk_ctl_open(&d, o.control, &co, &d.ctl);
		if (r == -EADDRINUSE)
			vhu_blk_daemon_log("error: control socket '%s' is in use", o.control);
		else if (r == -EEXIST)
			vhu_blk_daemon_log("error: control socket path '%s' exists and is "
					   "not a socket; refusing to replace it", o.control);
		else if (r < 0)
			vhu_blk_daemon_log("error: cannot create control socket '%s': %s",
					   o.control, strerror(-r));
		if (r < 0)
			goto out_backend;
	}

	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || vhu_loop_add(d.loop, sfd, EPOLLIN, on_signal, &d) < 0) {
		vhu_blk_daemon_log("error: signalfd: %s", strerror(errno));
		goto out_ctl;
	}
	if (vhu_blk_change_fd(d.blk) >= 0 &&
	    vhu_loop_add(d.loop, vhu_blk_change_fd(d.blk), EPOLLIN, on_image_change,
			 &d) < 0) {
		vhu_blk_daemon_log("error: cannot watch the image for changes");
		goto out_ctl;
	}
	r = vhu_backend_attach(d.backend, d.loop);
	if (r < 0) {
		vhu_blk_daemon_log("error: cannot attach the back-end: %s", strerror(-r));
		goto out_ctl;
	}
	vhu_blk_daemon_log("serving '%s' (%llu bytes%s) on %s", o.blk_file,
			   (unsigned long long)vhu_blk_size(d.blk),
			   o.read_only ? ", read-only" : "", d.socket_desc);
	/* The socket listens and the control socket is up: ready. */
	r = vhu_blk_notify("READY=1");
	if (r < 0)
		vhu_blk_daemon_log("warning: cannot notify the service manager: %s",
				   strerror(-r));

	r = vhu_loop_run(d.loop);
	if (r < 0)
		vhu_blk_daemon_log("error: event loop: %s", strerror(-r));
	else
		status = 0;
	vhu_backend_detach(d.backend);
out_ctl:
	if (vhu_blk_change_fd(d.blk) >= 0)
		vhu_loop_del(d.loop, vhu_blk_change_fd(d.blk));
	if (sfd >= 0) {
		vhu_loop_del(d.loop, sfd);
		close(sfd);
	}
	vhu_blk_ctl_close(d.ctl);
out_backend:
	vhu_blk_sock_remove(&d.sock);
	vhu_backend_free(d.backend);
out_loop:
	vhu_loop_free(d.loop);
out_blk:
	vhu_blk_free(d.blk);
	return status;
}
