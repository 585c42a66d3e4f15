/* SPDX-License-Identifier: MIT */
/*
 * The NBD back-end, in one process: the device behind a real back-end
 * session, driven by the library's front-end, its image an nbdkit export
 * (memory plugin behind the log filter) that this test starts.  The log
 * shows which NBD commands, with which flags, each virtio-blk request
 * became: write-through writes carry FUA, WRITE_ZEROES asks for a fast
 * zero and keeps the blocks allocated unless unmapping is allowed, DISCARD
 * is a trim, FLUSH a flush.
 */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blk-harness.h"
#include "tap.h"

extern char **environ;

struct server {
	char dir[64], sock[96], log[96], uri[160];
	pid_t pid;
	bool nozero;
};

/* nbdkit on s's socket; the memory plugin: what a killed one held is
 * gone, as a volatile cache's. */
static void server_spawn(struct server *s)
{
	char logarg[112];
	char *argv[] = { "nbdkit", "-f", "--unix", s->sock, "--filter=log",
			 "memory", "1M", logarg, NULL, NULL, NULL };

	if (s->nozero) {
		argv[8] = "--filter=nozero";
		argv[9] = "zeromode=none";
	}
	snprintf(logarg, sizeof(logarg), "logfile=%s", s->log);
	CHECK_EQ(posix_spawnp(&s->pid, "nbdkit", NULL, NULL, argv, environ), 0);
	for (int i = 0; i < 100 && access(s->sock, F_OK) < 0; i++)
		usleep(20000);
	CHECK_EQ(access(s->sock, F_OK), 0);
}

/* nozero: the export offers no WRITE_ZEROES (nbdkit's nozero filter). */
static void server_start_with(struct server *s, bool nozero)
{
	s->nozero = nozero;
	strcpy(s->dir, "/tmp/vhu-blk-nbd-XXXXXX");
	CHECK(mkdtemp(s->dir) != NULL);
	snprintf(s->sock, sizeof(s->sock), "%s/nbd.sock", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/log", s->dir);
	snprintf(s->uri, sizeof(s->uri), "nbd+unix:///?socket=%s", s->sock);
	server_spawn(s);
}

/* The server dies (SIGKILL: nothing flushed) and a new one takes its
 * socket. */
static void server_crash(struct server *s)
{
	CHECK_EQ(kill(s->pid, SIGKILL), 0);
	waitpid(s->pid, NULL, 0);
	unlink(s->sock);
	server_spawn(s);
}

static void server_start(struct server *s)
{
	server_start_with(s, false);
}

static void server_stop(struct server *s)
{
	kill(s->pid, SIGTERM);
	waitpid(s->pid, NULL, 0);
	unlink(s->sock);
	unlink(s->log);
	rmdir(s->dir);
}

/* The last log line of an NBD command (Write, Zero, Trim, Flush). */
static bool last_cmd(const struct server *s, const char *cmd, char *out,
		     size_t len)
{
	char line[512], key[32];
	bool found = false;
	FILE *f = fopen(s->log, "re");

	if (!f)
		return false;
	/* "connection=N Write id=M offset=... fua=0 ...": the request (its
	 * reply's line says "...Write id=M return=0"). */
	snprintf(key, sizeof(key), " %s id=", cmd);
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, key)) {
			snprintf(out, len, "%s", line);
			found = true;
		}
	}
	fclose(f);
	return found;
}

TEST(nbd_requests_map_to_commands_and_flags)
{
	struct server s;
	struct vhu_blk_opts o = { .reconnect_timeout = 5 };
	struct ctx c;
	uint8_t zero = 0, want[4096];
	char line[512];

	server_start(&s);
	o.path = s.uri;
	ctx_open(&c, &o, true);
	CHECK(!strcmp(vhu_blk_backend_kind(c.blk), "nbd"));
	CHECK(!strcmp(vhu_blk_backend_state(c.blk), "connected"));
	CHECK_EQ(vhu_blk_size(c.blk), 1u << 20);
	CHECK(vhu_blk_resize_refusal(c.blk) != NULL);
	CHECK_EQ(vhu_blk_resize(c.blk, 2u << 20, 0), -EOPNOTSUPP);

	/* write-back: a plain write, read back through the server */
	fill(c.data, 4096, 5);
	memcpy(want, c.data, 4096);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK(last_cmd(&s, "Write", line, sizeof(line)));
	CHECK(strstr(line, "fua=0") != NULL);
	memset(c.data, 0, 4096);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 8, 4096, true, NULL), VHU_BLK_S_OK);
	CHECK_MEM(c.data, want, 4096);
	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
	CHECK(last_cmd(&s, "Flush", line, sizeof(line)));

	/* DISCARD: a trim */
	put_seg(c.data, 64, 8, 0);
	CHECK_EQ(one(&c, VHU_BLK_T_DISCARD, 0, 16, false, NULL), VHU_BLK_S_OK);
	CHECK(last_cmd(&s, "Trim", line, sizeof(line)));
	CHECK(strstr(line, "offset=0x8000") != NULL);

	/* WRITE_ZEROES without unmap: fast, and no hole */
	put_seg(c.data, 8, 8, 0);
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 16, false, NULL), VHU_BLK_S_OK);
	CHECK(last_cmd(&s, "Zero", line, sizeof(line)));
	CHECK(strstr(line, "trim=0") != NULL);
	CHECK(strstr(line, "fast=1") != NULL);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 8, 4096, true, NULL), VHU_BLK_S_OK);
	memset(want, 0, sizeof(want));
	CHECK_MEM(c.data, want, 4096);
	put_seg(c.data, 8, 8, VHU_BLK_SEG_F_UNMAP);
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 16, false, NULL), VHU_BLK_S_OK);
	CHECK(last_cmd(&s, "Zero", line, sizeof(line)));
	CHECK(strstr(line, "trim=1") != NULL);

	/* write-through (the guest turns its cache off): FUA */
	CHECK_EQ(vhu_fe_set_config(c.fe, VHU_BLK_CONFIG_WCE_OFFSET, &zero, 1, 0), 0);
	CHECK(!vhu_blk_wce(c.blk));
	fill(c.data, 4096, 9);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 16, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK(last_cmd(&s, "Write", line, sizeof(line)));
	CHECK(strstr(line, "fua=1") != NULL);
	ctx_close(&c);
	server_stop(&s);
}

/* An export that cannot write zeroes: VIRTIO_BLK_F_WRITE_ZEROES is not
 * offered (one that can: offered); a driver that sends WRITE_ZEROES all
 * the same is answered UNSUPP, never OK, and the data stays as it was
 * (nothing sent to the server). */
TEST(nbd_write_zeroes_unsupported_is_unsupp)
{
	struct server s;
	struct vhu_blk_opts o = { .reconnect_timeout = 5 };
	struct ctx c;
	uint8_t want[4096];
	char line[512];

	server_start(&s);
	o.path = s.uri;
	ctx_open(&c, &o, true);
	CHECK(vhu_fe_features_offered(c.fe) & VHU_BIT(VHU_BLK_F_WRITE_ZEROES));
	CHECK(vhu_fe_features_offered(c.fe) & VHU_BIT(VHU_BLK_F_DISCARD));
	ctx_close(&c);
	server_stop(&s);

	server_start_with(&s, true);
	o.path = s.uri;
	ctx_open(&c, &o, true);
	CHECK(!(vhu_fe_features_offered(c.fe) & VHU_BIT(VHU_BLK_F_WRITE_ZEROES)));
	CHECK(vhu_fe_features_offered(c.fe) & VHU_BIT(VHU_BLK_F_DISCARD));
	fill(c.data, 4096, 3);
	memcpy(want, c.data, 4096);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	put_seg(c.data, 8, 8, 0);
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
		 VHU_BLK_S_UNSUPP);
	put_seg(c.data, 8, 8, VHU_BLK_SEG_F_UNMAP);
	CHECK_EQ(one(&c, VHU_BLK_T_WRITE_ZEROES, 0, 16, false, NULL),
		 VHU_BLK_S_UNSUPP);
	CHECK(!last_cmd(&s, "Zero", line, sizeof(line)));
	memset(c.data, 0, 4096);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 8, 4096, true, NULL), VHU_BLK_S_OK);
	CHECK_MEM(c.data, want, 4096);
	ctx_close(&c);
	server_stop(&s);
}

/* Writes a server acknowledged, then lost with the connection (killed
 * with them in its cache): the next FLUSH fails (IOERR), once, so the
 * guest learns they may not be durable; a FLUSH must not report them
 * durable because it went to the new connection.  A loss with nothing
 * unflushed fails nothing. */
TEST(nbd_flush_after_lost_writes_fails_once)
{
	struct server s;
	struct vhu_blk_opts o = { .reconnect_timeout = 10 };
	struct ctx c;

	server_start(&s);
	o.path = s.uri;
	ctx_open(&c, &o, true);
	fill(c.data, 4096, 5);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	server_crash(&s);
	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_IOERR);
	/* once: the queue works on the new connection */
	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
	/* everything flushed when the server dies: nothing to fail */
	server_crash(&s);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 8, 4096, true, NULL), VHU_BLK_S_OK);
	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
	/* a read-only connection lost: nothing either */
	server_crash(&s);
	CHECK_EQ(one(&c, VHU_BLK_T_IN, 8, 4096, true, NULL), VHU_BLK_S_OK);
	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
	ctx_close(&c);
	server_stop(&s);
}

/* The operator says the server's cache survives it
 * (--nbd-persistent-cache): the FLUSH after the loss succeeds. */
TEST(nbd_flush_after_loss_persistent_cache)
{
	struct server s;
	struct vhu_blk_opts o = { .reconnect_timeout = 10,
				  .nbd_persistent_cache = true };
	struct ctx c;

	server_start(&s);
	o.path = s.uri;
	ctx_open(&c, &o, true);
	fill(c.data, 4096, 5);
	CHECK_EQ(one(&c, VHU_BLK_T_OUT, 8, 4096, false, NULL), VHU_BLK_S_OK);
	server_crash(&s);
	CHECK_EQ(one(&c, VHU_BLK_T_FLUSH, 0, 0, false, NULL), VHU_BLK_S_OK);
	ctx_close(&c);
	server_stop(&s);
}

/* No server: opening fails with the reason. */
TEST(nbd_no_server)
{
	char err[200] = "";
	struct vhu_blk_opts o = {
		.path = "nbd+unix:///?socket=/nonexistent/nbd.sock",
		.num_queues = 1, .err = err, .err_len = sizeof(err),
	};
	struct vhu_blk *blk = NULL;

	CHECK(vhu_blk_new(&o, &blk) < 0);
	CHECK(strstr(err, "cannot connect to") != NULL);
}

int main(void)
{
	return tap_run();
}
