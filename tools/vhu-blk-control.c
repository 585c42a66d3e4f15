/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk control socket: JSON-RPC 2.0 over a Unix stream socket, one
 * request per line and one response per line, several clients at once.
 * Methods: info, stats, resize, refresh, throttle.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "throttle.h"
#include "vhu-blk-daemon.h"

#define CTL_MAX_CLIENTS 32
#define CTL_LINE_MAX 8192
#define CTL_TICK_MS 250

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* JSON-RPC 2.0, section 5.1 */
#define RPC_PARSE_ERROR      -32700
#define RPC_INVALID_REQUEST  -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS   -32602
#define RPC_RESIZE_FAILED    -32000

struct ctl_client {
	int fd;
	uint64_t last_ms;     /* last byte received (monotonic) */
	size_t len;
	char buf[CTL_LINE_MAX];
};

struct vhu_blk_ctl {
	struct vhu_blk_daemon *d;
	int fd;
	int timer_fd;         /* idle check, every CTL_TICK_MS */
	struct vhu_blk_sock sock;
	struct vhu_blk_ctl_opts opts;
	struct ctl_client *clients[CTL_MAX_CLIENTS];
};

/* ---- JSON-RPC ---- */

static char *finish(json_object *resp)
{
	const char *s = json_object_to_json_string_ext(resp,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	char *out = strdup(s ? s : "{}");

	json_object_put(resp);
	return out;
}

static json_object *new_resp(json_object *id)
{
	json_object *resp = json_object_new_object();

	json_object_object_add(resp, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(resp, "id", id ? json_object_get(id) : NULL);
	return resp;
}

static char *error_resp(json_object *id, int code, const char *msg)
{
	json_object *resp = new_resp(id), *err = json_object_new_object();

	json_object_object_add(err, "code", json_object_new_int(code));
	json_object_object_add(err, "message", json_object_new_string(msg));
	json_object_object_add(resp, "error", err);
	return finish(resp);
}

static char *result_resp(json_object *id, json_object *result)
{
	json_object *resp = new_resp(id);

	json_object_object_add(resp, "result", result);
	return finish(resp);
}

static json_object *u64(uint64_t v)
{
	return json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

/* The I/O limits in force: the keys that are set ({} when none). */
static json_object *throttle_obj(struct vhu_blk_daemon *d)
{
	json_object *o = json_object_new_object();
	struct vhu_blk_throttle t;
	const char *key;
	uint64_t v;

	vhu_blk_get_throttle(d->blk, &t);
	for (unsigned i = 0; (key = vhu_blk_throttle_key(&t, i, &v)); i++)
		if (v)
			json_object_object_add(o, key, u64(v));
	return o;
}

static json_object *method_info(struct vhu_blk_daemon *d)
{
	json_object *o = json_object_new_object();
	struct vhu_blk *blk = d->blk;

	json_object_object_add(o, "path", json_object_new_string(d->image_path));
	json_object_object_add(o, "size", u64(vhu_blk_size(blk)));
	json_object_object_add(o, "sectors", u64(vhu_blk_capacity(blk)));
	json_object_object_add(o, "read_only",
			       json_object_new_boolean(vhu_blk_read_only(blk)));
	json_object_object_add(o, "num_queues",
			       json_object_new_int((int)vhu_blk_num_queues(blk)));
	json_object_object_add(o, "threads",
			       json_object_new_int((int)vhu_blk_num_threads(blk)));
	json_object_object_add(o, "blk_size",
			       json_object_new_int((int)vhu_blk_blk_size(blk)));
	json_object_object_add(o, "serial", json_object_new_string(vhu_blk_serial(blk)));
	json_object_object_add(o, "socket", json_object_new_string(d->socket_desc));
	json_object_object_add(o, "connected",
			       json_object_new_boolean(vhu_backend_is_connected(d->backend)));
	json_object_object_add(o, "cache", json_object_new_string(
		vhu_blk_cache_mode(blk) == VHU_BLK_CACHE_NONE ? "none" : "writeback"));
	json_object_object_add(o, "wce", json_object_new_boolean(vhu_blk_wce(blk)));
	/* Image locking: off, none, shared (queues stopped, or read-only),
	 * write (queues running), conflict (another process writes it:
	 * every request fails). */
	json_object_object_add(o, "lock", json_object_new_string(
		vhu_blk_lock_name(vhu_blk_lock_state(blk))));
	json_object_object_add(o, "block_device",
			       json_object_new_boolean(vhu_blk_is_blockdev(blk)));
	json_object_object_add(o, "backend",
			       json_object_new_string(vhu_blk_backend_kind(blk)));
	json_object_object_add(o, "backend_state",
			       json_object_new_string(vhu_blk_backend_state(blk)));
	/* True while the front-end has VHOST_F_LOG_ALL on: a live migration
	 * is copying the guest and every device write is logged. */
	json_object_object_add(o, "dirty_log", json_object_new_boolean(
		(vhu_backend_features(d->backend) & VHU_BIT(VHU_F_LOG_ALL)) != 0));
	json_object_object_add(o, "throttle", throttle_obj(d));
	json_object_object_add(o, "throttle_group",
			       vhu_blk_throttle_group_name(d->blk) ?
			       json_object_new_string(vhu_blk_throttle_group_name(d->blk)) :
			       NULL);
	return o;
}

static json_object *qstats_obj(const struct vhu_blk_qstats *s)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "requests", u64(s->requests));
	json_object_object_add(o, "bytes_read", u64(s->bytes_read));
	json_object_object_add(o, "bytes_written", u64(s->bytes_written));
	json_object_object_add(o, "errors", u64(s->errors));
	json_object_object_add(o, "in_flight", u64(s->in_flight));
	json_object_object_add(o, "flushes", u64(s->flushes));
	json_object_object_add(o, "discards", u64(s->discards));
	return o;
}

static json_object *method_stats(struct vhu_blk_daemon *d)
{
	json_object *o = json_object_new_object(), *qs = json_object_new_array();
	struct vhu_blk_qstats total = { 0 };

	for (unsigned i = 0; i < vhu_blk_num_queues(d->blk); i++) {
		struct vhu_blk_qstats s;
		json_object *q;

		if (vhu_blk_queue_stats(d->blk, i, &s) < 0)
			continue;
		q = qstats_obj(&s);
		json_object_object_add(q, "index", json_object_new_int((int)i));
		json_object_array_add(qs, q);
		total.requests += s.requests;
		total.bytes_read += s.bytes_read;
		total.bytes_written += s.bytes_written;
		total.errors += s.errors;
		total.in_flight += s.in_flight;
		total.flushes += s.flushes;
		total.discards += s.discards;
	}
	json_object_object_add(o, "queues", qs);
	json_object_object_add(o, "total", qstats_obj(&total));
	/* I/O limits: requests held (since start, now) and how long. */
	struct vhu_blk_thr_stats ts;
	json_object *t = json_object_new_object();

	vhu_blk_throttle_stats(d->blk, &ts);
	json_object_object_add(t, "held", u64(ts.held));
	json_object_object_add(t, "holding", u64(ts.holding));
	json_object_object_add(t, "wait_us", u64(ts.wait_ns / 1000));
	json_object_object_add(t, "wait_max_us", u64(ts.wait_max_ns / 1000));
	json_object_object_add(o, "throttle", t);
	json_object_object_add(o, "backend",
			       json_object_new_string(vhu_blk_backend_kind(d->blk)));
	json_object_object_add(o, "backend_state",
			       json_object_new_string(vhu_blk_backend_state(d->blk)));
	return o;
}

static char *size_result(struct vhu_blk_daemon *d, json_object *id,
			 uint64_t old)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "old_size", u64(old));
	json_object_object_add(o, "size", u64(vhu_blk_size(d->blk)));
	return result_resp(id, o);
}

static char *method_resize(struct vhu_blk_daemon *d, json_object *id,
			   json_object *params)
{
	json_object *size_obj, *shrink_obj;
	uint64_t old = vhu_blk_size(d->blk), size;
	bool shrink = false;
	char msg[560];
	int64_t v;
	int r;

	if (!params || !json_object_is_type(params, json_type_object) ||
	    !json_object_object_get_ex(params, "size", &size_obj) ||
	    !json_object_is_type(size_obj, json_type_int))
		return error_resp(id, RPC_INVALID_PARAMS,
				  "resize needs params {\"size\": BYTES}");
	if (json_object_object_get_ex(params, "shrink", &shrink_obj)) {
		if (!json_object_is_type(shrink_obj, json_type_boolean))
			return error_resp(id, RPC_INVALID_PARAMS,
					  "\"shrink\" must be true or false");
		shrink = json_object_get_boolean(shrink_obj);
	}
	errno = 0;
	v = json_object_get_int64(size_obj);
	if (v <= 0 || errno == ERANGE)
		return error_resp(id, RPC_INVALID_PARAMS,
				  "size must be a positive integer");
	size = (uint64_t)v;
	if (vhu_blk_resize_refusal(d->blk)) {
		snprintf(msg, sizeof(msg), "resize failed: %s",
			 vhu_blk_resize_refusal(d->blk));
		return error_resp(id, RPC_RESIZE_FAILED, msg);
	}
	if (size % vhu_blk_blk_size(d->blk)) {
		snprintf(msg, sizeof(msg), "size must be a multiple of %u bytes",
			 vhu_blk_blk_size(d->blk));
		return error_resp(id, RPC_INVALID_PARAMS, msg);
	}
	r = vhu_blk_resize(d->blk, size, shrink ? VHU_BLK_RESIZE_SHRINK : 0);
	if (r == -EPERM) {
		snprintf(msg, sizeof(msg), "resize failed: %llu bytes is smaller "
			 "than the image (%llu bytes); shrinking discards the data "
			 "past the new end and needs \"shrink\": true",
			 (unsigned long long)size, (unsigned long long)old);
		return error_resp(id, RPC_RESIZE_FAILED, msg);
	}
	if (r < 0 && vhu_blk_resize_error(d->blk)) {
		snprintf(msg, sizeof(msg), "resize failed: %s",
			 vhu_blk_resize_error(d->blk));
		return error_resp(id, RPC_RESIZE_FAILED, msg);
	}
	if (r < 0) {
		snprintf(msg, sizeof(msg), "resize failed: %s",
			 r == -EROFS ? "the image is read-only" : strerror(-r));
		return error_resp(id, RPC_RESIZE_FAILED, msg);
	}
	if (vhu_blk_size(d->blk) != old)
		vhu_blk_daemon_size_changed(d, old);
	return size_result(d, id, old);
}

/* Re-read the image size, as SIGHUP does. */
static char *method_refresh(struct vhu_blk_daemon *d, json_object *id)
{
	uint64_t old = vhu_blk_size(d->blk);
	char msg[160];
	int r = vhu_blk_refresh_size(d->blk);

	if (r < 0) {
		snprintf(msg, sizeof(msg), "refresh failed: %s", strerror(-r));
		return error_resp(id, RPC_RESIZE_FAILED, msg);
	}
	if (vhu_blk_size(d->blk) != old)
		vhu_blk_daemon_size_changed(d, old);
	return size_result(d, id, old);
}

/* Change the I/O limits: params {"KEY": VALUE, ...} with --throttle's
 * keys over the limits in force (0 removes one); all or nothing. */
static char *method_throttle(struct vhu_blk_daemon *d, json_object *id,
			     json_object *params)
{
	struct vhu_blk_throttle t;
	char msg[300];

	if (!params || !json_object_is_type(params, json_type_object) ||
	    json_object_object_length(params) == 0)
		return error_resp(id, RPC_INVALID_PARAMS,
				  "throttle needs params {\"KEY\": VALUE, ...} "
				  "(iops-total, bps-read-max, ...; 0 removes a limit)");
	vhu_blk_get_throttle(d->blk, &t);
	json_object_object_foreach(params, key, val) {
		int64_t v;

		errno = 0;
		v = json_object_get_int64(val);
		if (!json_object_is_type(val, json_type_int) || v < 0 ||
		    errno == ERANGE) {
			snprintf(msg, sizeof(msg), "%.64s must be an integer >= 0", key);
			return error_resp(id, RPC_INVALID_PARAMS, msg);
		}
		if (vhu_blk_throttle_set(&t, key, (uint64_t)v) < 0) {
			snprintf(msg, sizeof(msg), "unknown key '%.64s' (iops-total, "
				 "iops-read, iops-write, bps-total, bps-read, "
				 "bps-write, each also with -max and -max-length; "
				 "iops-size)", key);
			return error_resp(id, RPC_INVALID_PARAMS, msg);
		}
	}
	if (vhu_blk_set_throttle(d->blk, &t, msg, sizeof(msg)) < 0)
		return error_resp(id, RPC_INVALID_PARAMS, msg);
	return result_resp(id, throttle_obj(d));
}

char *vhu_blk_ctl_handle(struct vhu_blk_daemon *d, const char *line)
{
	enum json_tokener_error jerr = json_tokener_success;
	json_object *req, *v, *id = NULL, *params = NULL;
	const char *method;
	bool notification;
	char *out;

	req = json_tokener_parse_verbose(line, &jerr);
	if (!req || jerr != json_tokener_success) {
		json_object_put(req);
		return error_resp(NULL, RPC_PARSE_ERROR, "parse error: invalid JSON");
	}
	if (!json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return error_resp(NULL, RPC_INVALID_REQUEST,
				  "invalid request: expected a JSON object");
	}
	notification = !json_object_object_get_ex(req, "id", &id);
	if (id && !json_object_is_type(id, json_type_string) &&
	    !json_object_is_type(id, json_type_int) &&
	    !json_object_is_type(id, json_type_double)) {
		json_object_put(req);
		return error_resp(NULL, RPC_INVALID_REQUEST,
				  "invalid request: bad id");
	}
	if (!json_object_object_get_ex(req, "jsonrpc", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), "2.0") != 0) {
		out = error_resp(id, RPC_INVALID_REQUEST,
				 "invalid request: \"jsonrpc\" must be \"2.0\"");
		json_object_put(req);
		return out;
	}
	if (!json_object_object_get_ex(req, "method", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		out = error_resp(id, RPC_INVALID_REQUEST,
				 "invalid request: \"method\" must be a string");
		json_object_put(req);
		return out;
	}
	method = json_object_get_string(v);
	if (json_object_object_get_ex(req, "params", &params) &&
	    !json_object_is_type(params, json_type_object) &&
	    !json_object_is_type(params, json_type_array)) {
		out = error_resp(id, RPC_INVALID_REQUEST,
				 "invalid request: \"params\" must be an object or array");
		json_object_put(req);
		return out;
	}

	if (strcmp(method, "info") == 0) {
		out = result_resp(id, method_info(d));
	} else if (strcmp(method, "stats") == 0) {
		out = result_resp(id, method_stats(d));
	} else if (strcmp(method, "resize") == 0) {
		out = method_resize(d, id, params);
	} else if (strcmp(method, "refresh") == 0) {
		out = method_refresh(d, id);
	} else if (strcmp(method, "throttle") == 0) {
		out = method_throttle(d, id, params);
	} else {
		char msg[128];

		snprintf(msg, sizeof(msg), "method not found: %.64s", method);
		out = error_resp(id, RPC_METHOD_NOT_FOUND, msg);
	}
	json_object_put(req);
	/* JSON-RPC 2.0, 4.1: a notification gets no response. */
	if (notification) {
		free(out);
		return NULL;
	}
	return out;
}

/* ---- socket ---- */

static void client_drop(struct vhu_blk_ctl *ctl, unsigned i)
{
	struct ctl_client *c = ctl->clients[i];

	if (!c)
		return;
	vhu_loop_del(ctl->d->loop, c->fd);
	close(c->fd);
	free(c);
	ctl->clients[i] = NULL;
}

/* Responses are small; a client that does not read them is dropped
 * rather than allowed to stall the daemon. */
static int client_send(struct ctl_client *c, const char *s)
{
	size_t len = strlen(s), off = 0;
	char *line = malloc(len + 1);

	if (!line)
		return -ENOMEM;
	memcpy(line, s, len);
	line[len++] = '\n';
	while (off < len) {
		ssize_t r = send(c->fd, line + off, len - off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(line);
			return -EIO;
		}
		off += (size_t)r;
	}
	free(line);
	return 0;
}

static void on_client(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct vhu_blk_ctl *ctl = opaque;
	struct ctl_client *c = NULL;
	unsigned i;
	ssize_t r;

	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		if (ctl->clients[i] && ctl->clients[i]->fd == fd) {
			c = ctl->clients[i];
			break;
		}
	if (!c) {
		vhu_loop_del(loop, fd);
		return;
	}
	r = recv(fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		client_drop(ctl, i);
		return;
	}
	c->len += (size_t)r;
	c->last_ms = now_ms();

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len), *resp;
		size_t used;

		if (!nl) {
			if (c->len == sizeof(c->buf)) {
				char *e = error_resp(NULL, RPC_INVALID_REQUEST,
						     "invalid request: line too long");
				if (e)
					client_send(c, e);
				free(e);
				client_drop(ctl, i);
			}
			return;
		}
		*nl = '\0';
		used = (size_t)(nl - c->buf) + 1;
		if (nl > c->buf && nl[-1] == '\r')
			nl[-1] = '\0';
		resp = c->buf[strspn(c->buf, " \t\r")] ? vhu_blk_ctl_handle(ctl->d, c->buf)
						      : NULL;
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
		if (resp) {
			int sr = client_send(c, resp);

			free(resp);
			if (sr < 0) {
				client_drop(ctl, i);
				return;
			}
		}
	}
}

/* The socket file's mode already keeps others out; this check also
 * holds when the file was made wider by mistake, or the socket was
 * passed on. */
static bool peer_allowed(const struct vhu_blk_ctl *ctl, int fd, struct ucred *cr)
{
	socklen_t len = sizeof(*cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len) < 0)
		return false;
	return vhu_blk_sock_perm_allows(&ctl->opts.perm, cr);
}

static void on_accept(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct vhu_blk_ctl *ctl = opaque;
	int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	struct ucred cr;
	unsigned i;

	if (cfd < 0)
		return;
	if (!peer_allowed(ctl, cfd, &cr)) {
		vhu_blk_daemon_log("control: connection from uid %u refused "
				   "(the control socket's owner, group and mode do not allow it)",
				   (unsigned)cr.uid);
		close(cfd);
		return;
	}
	for (i = 0; i < CTL_MAX_CLIENTS && ctl->clients[i]; i++)
		;
	if (i == CTL_MAX_CLIENTS) {
		vhu_blk_daemon_log("control: too many clients, connection refused");
		close(cfd);
		return;
	}
	ctl->clients[i] = calloc(1, sizeof(struct ctl_client));
	if (!ctl->clients[i]) {
		close(cfd);
		return;
	}
	ctl->clients[i]->fd = cfd;
	ctl->clients[i]->last_ms = now_ms();
	if (vhu_loop_add(loop, cfd, EPOLLIN, on_client, ctl) < 0) {
		close(cfd);
		free(ctl->clients[i]);
		ctl->clients[i] = NULL;
	}
}

/* Drop clients that sent nothing for the idle timeout (a half request
 * included): a slot each, they would otherwise lock others out. */
static void on_tick(struct vhu_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct vhu_blk_ctl *ctl = opaque;
	uint64_t v, now = now_ms();

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
		struct ctl_client *c = ctl->clients[i];

		if (c && now - c->last_ms >= ctl->opts.idle_ms) {
			vhu_blk_daemon_log("control: client idle for %u s, dropped",
					   ctl->opts.idle_ms / 1000);
			client_drop(ctl, i);
		}
	}
}

int vhu_blk_ctl_open(struct vhu_blk_daemon *d, const char *path,
		     const struct vhu_blk_ctl_opts *opts, struct vhu_blk_ctl **out)
{
	struct itimerspec its = {
		.it_interval = { 0, CTL_TICK_MS * 1000000L },
		.it_value = { 0, CTL_TICK_MS * 1000000L },
	};
	struct vhu_blk_ctl *ctl;
	struct vhu_blk_sock sock;
	int fd, r;

	r = vhu_blk_sock_listen(path, &opts->perm, 16, &sock);
	if (r < 0)
		return r;
	fd = sock.fd;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl) {
		r = -ENOMEM;
		goto fail_unlink;
	}
	ctl->d = d;
	ctl->fd = fd;
	ctl->opts = *opts;
	ctl->sock = sock;
	ctl->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	r = ctl->timer_fd < 0 ? -errno : 0;
	if (r == 0 && timerfd_settime(ctl->timer_fd, 0, &its, NULL) < 0)
		r = -errno;
	if (r == 0)
		r = vhu_loop_add(d->loop, ctl->timer_fd, EPOLLIN, on_tick, ctl);
	if (r == 0) {
		r = vhu_loop_add(d->loop, fd, EPOLLIN, on_accept, ctl);
		if (r < 0)
			vhu_loop_del(d->loop, ctl->timer_fd);
	}
	if (r < 0) {
		if (ctl->timer_fd >= 0)
			close(ctl->timer_fd);
		free(ctl);
		goto fail_unlink;
	}
	*out = ctl;
	return 0;
fail_unlink:
	vhu_blk_sock_remove(&sock);
	close(fd);
	return r;
}

void vhu_blk_ctl_close(struct vhu_blk_ctl *ctl)
{
	if (!ctl)
		return;
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		client_drop(ctl, i);
	vhu_loop_del(ctl->d->loop, ctl->timer_fd);
	close(ctl->timer_fd);
	vhu_loop_del(ctl->d->loop, ctl->fd);
	close(ctl->fd);
	vhu_blk_sock_remove(&ctl->sock);
	free(ctl);
}
