/* SPDX-License-Identifier: MIT */
/*
 * vhu ctl: JSON-RPC 2.0 client for vhu-blk's control socket.  One request
 * per line, one response per line (newline-delimited JSON).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

#define MAX_LINE (1024 * 1024)
#define CTL_ID 1

static void ctl_help(FILE *f)
{
	fprintf(f,
		"usage: vhu ctl CONTROL_SOCKET [--json] [--timeout SEC] COMMAND\n"
		"commands:\n"
		"  resize SIZE   grow the disk to SIZE (bytes, suffixes K M G)\n"
		"  resize --shrink SIZE\n"
		"                shrink (or grow) the disk to SIZE: the data past the\n"
		"                new end is lost\n"
		"  refresh       re-read the image size (a block device resized, a\n"
		"                file grown outside)\n"
		"  throttle KEY=VALUE[,KEY=VALUE...]\n"
		"                change the I/O limits live (iops-total, iops-read,\n"
		"                iops-write, bps-total, bps-read, bps-write, each also\n"
		"                -max and -max-length; iops-size); 0 removes a limit\n"
		"  info          show the device's settings\n"
		"  stats         show I/O counters\n");
}

static int dial(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static int write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read one line (without '\n') into a malloc'd buffer. */
static int read_line(int fd, int timeout_ms, char **out)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	int64_t deadline = tool_mono_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - tool_mono_ms();
		if (left <= 0) {
			free(buf);
			return -ETIMEDOUT;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return -errno;
		}
		if (n == 0)
			continue;
		if (len + 4096 + 1 > cap) {
			if (cap >= MAX_LINE) {
				free(buf);
				return -EMSGSIZE;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = recv(fd, buf + len, 4096, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return -errno;
		}
		if (r == 0) {
			free(buf);
			return -ECONNRESET;
		}
		char *nl = memchr(buf + len, '\n', (size_t)r);
		len += (size_t)r;
		if (nl) {
			*nl = '\0';
			*out = buf;
			return 0;
		}
	}
}

static void print_plain(json_object *v, const char *prefix)
{
	if (json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, key, val) {
			char p[256];
			snprintf(p, sizeof(p), "%s%s%s", prefix, *prefix ? "." : "", key);
			print_plain(val, p);
		}
		return;
	}
	if (json_object_is_type(v, json_type_array)) {
		size_t n = json_object_array_length(v);
		for (size_t i = 0; i < n; i++) {
			char p[256];
			snprintf(p, sizeof(p), "%s[%zu]", prefix, i);
			print_plain(json_object_array_get_idx(v, i), p);
		}
		return;
	}
	const char *s = json_object_is_type(v, json_type_string)
				? json_object_get_string(v)
				: json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
	if (*prefix)
		printf("%s: %s\n", prefix, s);
	else
		printf("%s\n", s);
}

/* A parsed command line: the socket, the method and its params. */
struct ctl_args {
	const char *path, *method;
	json_object *params;   /* NULL: none */
	bool json;
	double timeout;
};

/* throttle's KEY=VALUE[,...] as params {"KEY": VALUE, ...}; the daemon
 * checks the keys and the rules.  0, or EXIT_USAGE after saying why. */
static int throttle_params(const char *list, struct ctl_args *a)
{
	char *copy = strdup(list), *save = NULL, *kv;

	if (!copy)
		return 1;
	a->params = json_object_new_object();
	for (kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '='), *end;
		unsigned long long v;

		errno = 0;
		v = eq ? strtoull(eq + 1, &end, 10) : 0;
		if (!eq || eq == kv || eq[1] < '0' || eq[1] > '9' || *end ||
		    errno || v > INT64_MAX) {
			fprintf(stderr, "vhu ctl: throttle: '%s' is not KEY=VALUE "
				"(VALUE a number >= 0)\n", kv);
			free(copy);
			return EXIT_USAGE;
		}
		*eq = '\0';
		json_object_object_add(a->params, kv,
				       json_object_new_int64((int64_t)v));
	}
	free(copy);
	if (json_object_object_length(a->params) == 0) {
		fprintf(stderr, "vhu ctl: throttle needs KEY=VALUE[,KEY=VALUE...]\n");
		return EXIT_USAGE;
	}
	return 0;
}

/* The command's words after the options: the socket, the command and its
 * argument; --json and --shrink may stand anywhere among them.  0, or the
 * exit code (-1: --help, exit 0). */
static int ctl_words(int argc, char **argv, struct ctl_args *a)
{
	const char *pos[4];
	int npos = 0;
	bool shrink = false;
	for (int i = optind; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			a->json = true;
			continue;
		}
		if (!strcmp(argv[i], "--shrink")) {
			shrink = true;
			continue;
		}
		if (!strcmp(argv[i], "--help")) {
			ctl_help(stdout);
			return -1;
		}
		if (npos == 4)
			goto usage;
		pos[npos++] = argv[i];
	}
	if (npos < 2 || (shrink && strcmp(pos[1], "resize")))
		goto usage;
	a->path = pos[0];
	a->method = pos[1];
	if (!strcmp(a->method, "resize")) {
		uint64_t size;
		if (npos != 3 || !parse_size(pos[2], &size) || size > INT64_MAX ||
		    size == 0) {
			fprintf(stderr, "vhu ctl: resize needs SIZE > 0 (bytes, K/M/G suffix)\n");
			return EXIT_USAGE;
		}
		a->params = json_object_new_object();
		json_object_object_add(a->params, "size",
				       json_object_new_int64((int64_t)size));
		if (shrink)
			json_object_object_add(a->params, "shrink",
					       json_object_new_boolean(true));
		return 0;
	}
	if (!strcmp(a->method, "throttle")) {
		if (npos == 3)
			return throttle_params(pos[2], a);
		goto usage;
	}
	if (strcmp(a->method, "info") && strcmp(a->method, "stats") &&
	    strcmp(a->method, "refresh")) {
		fprintf(stderr, "vhu ctl: unknown command '%s'\n", a->method);
		goto usage;
	}
	if (npos == 2)
		return 0;
usage:
	ctl_help(stderr);
	return EXIT_USAGE;
}

/* Options, then the words.  0, or the exit code (-1: exit 0). */
static int ctl_parse(int argc, char **argv, struct ctl_args *a)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int c;
	memset(a, 0, sizeof(*a));
	a->timeout = 10;
	optind = 1;
	/* '+': options end at the first non-option (the command's own
	 * arguments follow) but --json is also accepted after it. */
	while ((c = getopt_long(argc, argv, "+jT:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': a->json = true; break;
		case 'T':
			if (!parse_timeout("ctl", optarg, &a->timeout))
				return EXIT_USAGE;
			break;
		case 'h': ctl_help(stdout); return -1;
		default: ctl_help(stderr); return EXIT_USAGE;
		}
	}
	return ctl_words(argc, argv, a);
}

/* Send the request on a new connection and read the response line into
 * *line; the connection's fd, or -1 after saying why. */
static int ctl_call(const struct ctl_args *a, json_object *req, char **line)
{
	struct stat st;
	if (stat(a->path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "vhu ctl: %s: not a socket\n", a->path);
		return -1;
	}
	int fd = dial(a->path);
	if (fd < 0) {
		fprintf(stderr, "vhu ctl: %s: %s\n", a->path,
			fd == -ENOENT ? "no such socket (is vhu-blk running with --control?)"
				      : strerror(-fd));
		return -1;
	}
	const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	int r = write_all(fd, s, strlen(s));
	if (r == 0)
		r = write_all(fd, "\n", 1);
	if (r == 0)
		r = read_line(fd, (int)(a->timeout * 1000), line);
	if (r < 0) {
		fprintf(stderr, "vhu ctl: %s: %s\n", a->path,
			r == -ETIMEDOUT ? "no response (not a vhu-blk control socket?)"
					: strerror(-r));
		close(fd);
		return -1;
	}
	return fd;
}

/* Check the response and print its result (or its error); the exit code. */
static int ctl_answer(const struct ctl_args *a, json_object *resp,
		      const char *line)
{
	json_object *ver, *id, *result = NULL, *error = NULL;
	if (!resp || !json_object_is_type(resp, json_type_object) ||
	    !json_object_object_get_ex(resp, "jsonrpc", &ver) ||
	    !json_object_is_type(ver, json_type_string) ||
	    strcmp(json_object_get_string(ver), "2.0") ||
	    !json_object_object_get_ex(resp, "id", &id) ||
	    !json_object_is_type(id, json_type_int) ||
	    json_object_get_int64(id) != CTL_ID) {
		fprintf(stderr, "vhu ctl: %s: not a JSON-RPC 2.0 response: %.200s\n",
			a->path, line);
		return 1;
	}
	bool has_result = json_object_object_get_ex(resp, "result", &result);
	bool has_error = json_object_object_get_ex(resp, "error", &error);
	if (has_result == has_error) {
		fprintf(stderr, "vhu ctl: %s: response needs exactly one of result/error\n",
			a->path);
		return 1;
	}
	if (has_error) {
		json_object *m = NULL, *code = NULL;
		json_object_object_get_ex(error, "message", &m);
		json_object_object_get_ex(error, "code", &code);
		const char *text = m ? json_object_get_string(m) : "?";
		size_t ml = strlen(a->method);
		/* vhu-blk's messages say "resize failed: ..." themselves. */
		if (strncmp(text, a->method, ml) == 0 &&
		    strncmp(text + ml, " failed: ", 9) == 0)
			text += ml + 9;
		fprintf(stderr, "vhu ctl: %s failed: %s (code %" PRId64 ")\n",
			a->method, text, code ? json_object_get_int64(code) : 0);
		if (a->json)
			printf("%s\n", json_object_to_json_string_ext(
					       error, JSON_C_TO_STRING_PRETTY));
		return 1;
	}
	if (a->json)
		printf("%s\n", json_object_to_json_string_ext(result, JSON_C_TO_STRING_PRETTY));
	else
		print_plain(result, "");
	return 0;
}

int cmd_ctl(int argc, char **argv)
{
	struct ctl_args a;
	int rc = ctl_parse(argc, argv, &a);
	if (rc) {
		json_object_put(a.params);
		return rc < 0 ? 0 : rc;
	}

	json_object *req = json_object_new_object();
	json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(req, "id", json_object_new_int(CTL_ID));
	json_object_object_add(req, "method", json_object_new_string(a.method));
	if (a.params)
		json_object_object_add(req, "params", a.params);

	char *line = NULL;
	int fd = ctl_call(&a, req, &line);
	rc = 1;
	if (fd >= 0) {
		enum json_tokener_error jerr;
		json_object *resp = json_tokener_parse_verbose(line, &jerr);
		rc = ctl_answer(&a, resp, line);
		json_object_put(resp);
		close(fd);
	}
	json_object_put(req);
	free(line);
	return rc;
}
