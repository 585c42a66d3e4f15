/* SPDX-License-Identifier: MIT */
/*
 * vhu check SOCKET: run the conformance cases, then the robustness
 * catalogue (each hostile case on a fresh connection, followed by a fresh
 * session that must still serve verified I/O), and print TAP-style lines.
 */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "check.h"
#include "tool-common.h"

static const struct chk_case *const groups[] = {
	chk_cases_conf, chk_cases_fe, chk_cases_framing, chk_cases_mem, chk_cases_ring,
	chk_cases_config, chk_cases_request, chk_cases_chain, chk_cases_blk,
	chk_cases_migrate,
};

struct result {
	const char *name;
	int rc;            /* 0 pass, 1 skip, -1 fail */
	char why[CHK_WHY * 2 + 64];
};

struct opts {
	const char *path;
	const char *glob;
	int timeout_ms;
	long pid;
	long rss_slack_kb;
	bool json, list;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: vhu check [OPTIONS] SOCKET\n"
"Check a vhost-user back-end listening on SOCKET: protocol conformance,\n"
"then a catalogue of hostile messages, descriptor chains and requests, each\n"
"on a fresh connection followed by a fresh session that must still serve.\n"
"For virtio-blk (the default) that session does verified I/O: the back-end\n"
"must be writable and its disk at least 64 KiB; data in the first 512 KiB\n"
"of the disk is overwritten.\n"
"\n"
"  --device NAME    the back-end's device: blk (default), rng, vsock or\n"
"                   generic (any other).  After each case, rng must answer\n"
"                   one request, vsock must start a queue, generic must\n"
"                   complete a handshake; cases that speak virtio-blk are\n"
"                   skipped for devices other than blk\n"
"  --case GLOB      run only the cases whose name matches GLOB\n"
"  --list           print the case names and exit\n"
"  --timeout MS     how long to wait for any answer (default 1000)\n"
"  --pid PID        watch the back-end's open fds and RSS across the run\n"
"  --rss-slack KB   RSS growth allowed with --pid (default 32768)\n"
"  --null           the disk keeps nothing (vhu-blk null:SIZE): data read\n"
"                   back must be zeros, not what was written\n"
"  --json           print a JSON document instead of TAP lines\n"
"  -h, --help       this text\n"
"\n"
"Output: one line per case, 'ok N - NAME: what happened' or\n"
"'not ok N - NAME: why', then 'N passed, N failed'.  The exit status is 1\n"
"when any case failed, 2 on a usage error.\n");
}

bool chk_null_disk;
const struct vhu_tool_device *chk_dev = &vhu_tool_dev_blk;

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "case", required_argument, NULL, 'c' },
		{ "list", no_argument, NULL, 'l' },
		{ "timeout", required_argument, NULL, 't' },
		{ "pid", required_argument, NULL, 'p' },
		{ "rss-slack", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "null", no_argument, NULL, 'n' },
		{ "device", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	memset(o, 0, sizeof(*o));
	chk_dev = &vhu_tool_dev_blk;
	o->timeout_ms = 1000;
	o->rss_slack_kb = 32768;
	optind = 1;
	int c;
	char *end;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'c': o->glob = optarg; break;
		case 'l': o->list = true; break;
		case 'j': o->json = true; break;
		case 'n': chk_null_disk = true; break;
		case 'd':
			chk_dev = vhu_tool_device_arg("check", optarg);
			if (!chk_dev)
				return -EINVAL;
			break;
		case 't':
			o->timeout_ms = (int)strtol(optarg, &end, 10);
			if (*end || o->timeout_ms < 10 || o->timeout_ms > 600000) {
				fprintf(stderr, "vhu check: bad --timeout\n");
				return -EINVAL;
			}
			break;
		case 'p':
			o->pid = strtol(optarg, &end, 10);
			if (*end || o->pid <= 0) {
				fprintf(stderr, "vhu check: bad --pid\n");
				return -EINVAL;
			}
			break;
		case 'r':
			o->rss_slack_kb = strtol(optarg, &end, 10);
			if (*end || o->rss_slack_kb < 0) {
				fprintf(stderr, "vhu check: bad --rss-slack\n");
				return -EINVAL;
			}
			break;
		case 'h': usage(stdout); return 1;
		default: usage(stderr); return -EINVAL;
		}
	}
	if (o->list)
		return 0;
	if (optind != argc - 1) {
		usage(stderr);
		return -EINVAL;
	}
	o->path = argv[optind];
	return 0;
}

static bool selected(const struct opts *o, const char *name)
{
	return !o->glob || fnmatch(o->glob, name, 0) == 0;
}

/* ------------------------------------------------------- process watch */

static long count_fds(long pid)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%ld/fd", pid);
	DIR *d = opendir(p);
	if (!d)
		return -1;
	long n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static long rss_kb(long pid)
{
	char p[64], line[256];
	snprintf(p, sizeof(p), "/proc/%ld/status", pid);
	FILE *f = fopen(p, "re");
	if (!f)
		return -1;
	long kb = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Running (a zombie counts as exited). */
static bool proc_alive(long pid)
{
	char buf[512];
	const char *e = vhu_tool_proc_stat(pid, buf, sizeof(buf));
	return e && e[1] == ' ' && e[2] != 'Z' && e[2] != 'X';
}

/* fds settle once the back-end has noticed the last close. */
static long settled_fds(long pid, long want)
{
	long n = count_fds(pid);
	for (int i = 0; i < 100 && n > want; i++) {
		usleep(20000);
		n = count_fds(pid);
	}
	return n;
}

/* ----------------------------------------------------------- running */

static void fill_ctx(struct chk_ctx *c, const struct opts *o)
{
	memset(c, 0, sizeof(*c));
	c->path = o->path;
	c->timeout_ms = o->timeout_ms;
	c->num_queues = 1;
	struct chk_sess s;
	char why[CHK_WHY];
	chk_sess_init(&s, o->timeout_ms);
	if (chk_open(&s, o->path, true, why) == 0) {
		c->capacity = s.capacity;
		c->features = s.acked;
		if (s.queue_num)
			c->num_queues = s.queue_num;
		/* Bits 12 and 13 are MQ and DISCARD on virtio-blk only. */
		uint16_t nq;
		if (chk_dev->blk && (s.acked & VHU_BIT(CHK_BLK_F_MQ)) &&
		    chk_get_config(&s, 34, 2, &nq, why) == 0 && nq)
			c->num_queues = nq;
		uint32_t seg;
		if (chk_dev->blk && (s.acked & VHU_BIT(CHK_BLK_F_DISCARD)) &&
		    chk_get_config(&s, 40, 4, &seg, why) == 0)
			c->max_discard_seg = seg;
	}
	chk_sess_close(&s);
}

/*
 * The fresh session after a hostile case, as far as the device module
 * knows how to use one: handshake, ring and its request (blk: verified
 * I/O; rng: one buffer filled), handshake and ring (vsock), or the
 * handshake alone (generic).
 */
static int post_probe(struct chk_ctx *c, unsigned n, char *why)
{
	struct chk_sess s;
	chk_sess_init(&s, c->timeout_ms);
	int r;
	if (chk_dev->serves || chk_dev->ring_start)
		r = chk_session_ready(&s, c->path, why);
	else
		r = chk_open(&s, c->path, true, why);
	if (r == 0 && chk_dev->serves)
		r = chk_serves(&s, chk_dev, n, why);
	if (r == 0 && c->capacity && s.capacity != c->capacity)
		r = chk_fail(why, "capacity changed from %llu to %llu",
			     (unsigned long long)c->capacity,
			     (unsigned long long)s.capacity);
	chk_sess_close(&s);
	return r < 0 ? -1 : 0;
}

/* One quick connect: does the back-end still accept connections? */
static bool accepts(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return false;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void emit(const struct opts *o, unsigned n, const struct result *r,
		 bool first)
{
	if (o->json) {
		printf("%s\n  {\"n\": %u, \"name\": ", first ? "" : ",", n);
		json_str(r->name);
		printf(", \"result\": \"%s\", \"reason\": ",
		       r->rc < 0 ? "fail" : r->rc ? "skip" : "pass");
		json_str(r->why);
		printf("}");
	} else if (r->rc == 1) {
		printf("ok %u - %s # SKIP %s\n", n, r->name, r->why);
	} else {
		printf("%s %u - %s: %s\n", r->rc < 0 ? "not ok" : "ok", n,
		       r->name, r->why);
	}
	fflush(stdout);
}

/* A run of the selected cases: its counts and, with --pid, what the
 * back-end's fds and RSS did. */
struct run {
	const struct opts *o;
	struct chk_ctx ctx;
	unsigned n, passed, failed, skipped;
	bool gone;              /* the back-end stopped accepting */
	long fds0, fds_prev, rss0, rss_max;
	char leakers[400];      /* the cases after which fds stayed open */
};

/* Count and print one result. */
static void record(struct run *u, const struct result *res)
{
	u->n++;
	if (res->rc < 0)
		u->failed++;
	else if (res->rc > 0)
		u->skipped++;
	else
		u->passed++;
	emit(u->o, u->n, res, u->n == 1);
}

/* With --pid: the back-end's RSS peak and the fds a case left open. */
static void watch_process(struct run *u, const char *name)
{
	long pid = u->o->pid;
	long kb = rss_kb(pid);
	if (kb > u->rss_max)
		u->rss_max = kb;
	long f = settled_fds(pid, u->fds_prev);
	if (f > u->fds_prev && u->fds_prev >= 0) {
		size_t l = strlen(u->leakers);
		if (l < sizeof(u->leakers) - 80)
			snprintf(u->leakers + l, sizeof(u->leakers) - l,
				 "%s%s +%ld", l ? ", " : "", name,
				 f - u->fds_prev);
	}
	if (f >= 0)
		u->fds_prev = f;
}

/* One case, then (for CHK_PROBE_IO) a fresh session with verified I/O. */
static void run_case(struct run *u, const struct chk_case *k)
{
	struct result res;
	memset(&res, 0, sizeof(res));
	res.name = k->name;
	char why[CHK_WHY] = "", pwhy[CHK_WHY] = "";
	/* Once the back-end stopped accepting connections, fail fast
	 * instead of waiting out every case. */
	if (u->gone && !accepts(u->o->path)) {
		res.rc = -1;
		snprintf(res.why, sizeof(res.why), "not run: the back-end no "
			 "longer accepts connections");
		record(u, &res);
		return;
	}
	u->gone = false;
	if (k->blk_only && !chk_dev->blk) {
		res.rc = 1;
		snprintf(res.why, sizeof(res.why), "not blk: speaks virtio-blk "
			 "(--device %s)", chk_dev->name);
		record(u, &res);
		return;
	}
	res.rc = k->fn(&u->ctx, k->arg, why);
	if (res.rc < 0 && !why[0])
		snprintf(why, sizeof(why), "failed");
	snprintf(res.why, sizeof(res.why), "%s", why);
	if (res.rc >= 0 && k->probe == CHK_PROBE_IO &&
	    post_probe(&u->ctx, u->n + 1, pwhy) < 0) {
		res.rc = -1;
		snprintf(res.why, sizeof(res.why),
			 "%s; back-end unusable afterwards: %s", why, pwhy);
	}
	if (res.rc < 0 && !accepts(u->o->path))
		u->gone = true;
	if (res.rc < 0 && u->o->pid && !proc_alive(u->o->pid)) {
		size_t l = strlen(res.why);
		snprintf(res.why + l, sizeof(res.why) - l,
			 " (process %ld has exited)", u->o->pid);
	}
	if (u->o->pid)
		watch_process(u, k->name);
	record(u, &res);
}

/* With --pid, after the cases: resources/fds and resources/rss. */
static void resource_results(struct run *u)
{
	long pid = u->o->pid;
	struct result res;
	memset(&res, 0, sizeof(res));
	res.name = "resources/fds";
	long fds0 = u->fds0, fds1 = fds0 < 0 ? -1 : settled_fds(pid, fds0);
	if (fds0 < 0 || fds1 < 0) {
		res.rc = -1;
		snprintf(res.why, sizeof(res.why), "cannot read /proc/%ld/fd",
			 pid);
	} else if (fds1 > fds0) {
		res.rc = -1;
		snprintf(res.why, sizeof(res.why),
			 "open fds grew from %ld to %ld (after %s)", fds0, fds1,
			 u->leakers[0] ? u->leakers : "?");
	} else {
		snprintf(res.why, sizeof(res.why),
			 "open fds %ld before, %ld after", fds0, fds1);
	}
	record(u, &res);

	memset(&res, 0, sizeof(res));
	res.name = "resources/rss";
	long rss1 = rss_kb(pid);
	if (rss1 > u->rss_max)
		u->rss_max = rss1;
	if (u->rss0 < 0 || rss1 < 0) {
		res.rc = -1;
		snprintf(res.why, sizeof(res.why),
			 "cannot read /proc/%ld/status", pid);
	} else if (u->rss_max - u->rss0 > u->o->rss_slack_kb) {
		res.rc = -1;
		snprintf(res.why, sizeof(res.why),
			 "RSS grew from %ld to %ld KiB (bound %ld KiB)",
			 u->rss0, u->rss_max, u->o->rss_slack_kb);
	} else {
		snprintf(res.why, sizeof(res.why),
			 "RSS %ld KiB before, peak %ld, end %ld", u->rss0,
			 u->rss_max, rss1);
	}
	record(u, &res);
}

/* --list, or the number of selected cases (0 after printing them). */
static unsigned selected_cases(const struct opts *o, bool print)
{
	unsigned total = 0;
	for (size_t g = 0; g < VHU__ARRAY_SIZE(groups); g++)
		for (const struct chk_case *k = groups[g]; k->name; k++)
			if (selected(o, k->name)) {
				total++;
				if (print)
					printf("%s\n", k->name);
			}
	return total;
}

int vhu_check_main(int argc, char **argv)
{
	struct opts o;
	int r = parse(argc, argv, &o);
	if (r)
		return r > 0 ? 0 : 2;
	if (o.list) {
		selected_cases(&o, true);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);

	unsigned total = selected_cases(&o, false);
	if (o.pid)
		total += 2;
	if (!total) {
		fprintf(stderr, "vhu check: no case matches %s\n", o.glob);
		return 2;
	}

	struct run u;
	memset(&u, 0, sizeof(u));
	u.o = &o;
	u.fds0 = u.fds_prev = u.rss0 = u.rss_max = -1;
	fill_ctx(&u.ctx, &o);
	if (o.json) {
		printf("{\"socket\": ");
		json_str(o.path);
		printf(", \"device\": ");
		json_str(chk_dev->name);
		printf(", \"cases\": [");
	} else {
		printf("1..%u\n", total);
	}

	if (o.pid) {
		/* Baseline after one full session, so that whatever the
		 * back-end allocates lazily on first use is counted. */
		char why[CHK_WHY];
		post_probe(&u.ctx, 0, why);
		u.fds0 = u.fds_prev = settled_fds(o.pid, 0);
		u.rss0 = u.rss_max = rss_kb(o.pid);
	}
	for (size_t g = 0; g < VHU__ARRAY_SIZE(groups); g++)
		for (const struct chk_case *k = groups[g]; k->name; k++)
			if (selected(&o, k->name))
				run_case(&u, k);
	if (o.pid)
		resource_results(&u);

	if (o.json)
		printf("\n], \"summary\": {\"passed\": %u, \"failed\": %u, "
		       "\"skipped\": %u}}\n", u.passed, u.failed, u.skipped);
	else if (u.skipped)
		printf("%u passed, %u failed, %u skipped\n", u.passed, u.failed,
		       u.skipped);
	else
		printf("%u passed, %u failed\n", u.passed, u.failed);
	return u.failed ? 1 : 0;
}
