/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk's listening sockets (the vhost-user one and the control one),
 * created with their final owner and mode before anyone can reach them,
 * and the service manager's readiness protocol (sd_notify).
 *
 * A socket is bound in a fresh private directory (mode 0700) next to its
 * path, with mode 0 (fchmod before bind: Linux gives the new file the
 * socket inode's mode), then chown'd, chmod'ed, listening, and only then
 * renamed into place.  No client ever sees it with wider rights than
 * asked for, nor sees it before it accepts connections.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vhu-blk-daemon.h"

static int parse_num(const char *s, unsigned long max, int base, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, base);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int vhu_blk_parse_mode(const char *s, unsigned *mode)
{
	unsigned long v;

	if (parse_num(s, 0777, 8, &v) < 0)
		return -EINVAL;
	*mode = (unsigned)v;
	return 0;
}

int vhu_blk_parse_user(const char *s, long *uid)
{
	struct passwd *pw = getpwnam(s);
	unsigned long v;

	if (pw) {
		*uid = (long)pw->pw_uid;
		return 0;
	}
	if (parse_num(s, INT_MAX, 10, &v) < 0)
		return -ENOENT;
	*uid = (long)v;
	return 0;
}

int vhu_blk_parse_group(const char *s, long *gid)
{
	struct group *gr = getgrnam(s);
	unsigned long v;

	if (gr) {
		*gid = (long)gr->gr_gid;
		return 0;
	}
	if (parse_num(s, INT_MAX, 10, &v) < 0)
		return -ENOENT;
	*gid = (long)v;
	return 0;
}

/* Is gid one of the user's groups (primary or supplementary)? */
static bool user_in_group(uid_t uid, gid_t primary, gid_t gid)
{
	struct passwd pw, *res = NULL;
	gid_t groups[256];
	int n = 256;
	char buf[4096];

	if (primary == gid)
		return true;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return false;
	if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
		return false;
	for (int i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

bool vhu_blk_sock_perm_allows(const struct vhu_blk_sock_perm *p, const struct ucred *cr)
{
	uid_t owner = p->uid >= 0 ? (uid_t)p->uid : geteuid();
	gid_t group = p->gid >= 0 ? (gid_t)p->gid : getegid();

	/* root and the daemon's own user always may (as with the file). */
	if (cr->uid == 0 || cr->uid == geteuid())
		return true;
	/* The classes as the kernel checks them: owner, then group, then
	 * others; connecting needs write permission. */
	if (cr->uid == owner)
		return p->mode & 0200;
	if (user_in_group(cr->uid, cr->gid, group))
		return p->mode & 0020;
	return p->mode & 0002;
}

/*
 * What is at path?  0: nothing, or a stale socket (connect refused: its
 * server is gone), which may be replaced (*stale then holds its identity);
 * -EADDRINUSE: a socket something accepts on; -EEXIST: not a socket (a
 * regular file, a directory...), never touched; other -errno when it
 * cannot be told.
 */
static int path_state(const struct sockaddr_un *sa, struct stat *stale)
{
	struct stat st;
	int fd, r, e;

	memset(stale, 0, sizeof(*stale));
	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	e = errno;
	close(fd);
	/* A full backlog (EAGAIN) is a live server too. */
	if (r == 0 || e == EAGAIN || e == EINPROGRESS)
		return -EADDRINUSE;
	if (e != ECONNREFUSED)
		return -e;
	*stale = st;
	return 0;
}

/* st is still the stale socket seen before.  Inode numbers are reused
 * at once on some file systems: a file put in its place may carry the
 * same one, so the type is checked too (a socket file holds no data). */
static bool same_file(const struct stat *st, const struct stat *stale)
{
	return S_ISSOCK(st->st_mode) && st->st_dev == stale->st_dev &&
	       st->st_ino == stale->st_ino;
}

/*
 * Move our socket from tmp to path, never over anything but the stale
 * socket path_state() found (*stale, st_ino 0: none).  The check and the
 * move are apart in time: whatever appeared at path in between (a file an
 * operator or another program created) must survive.  With nothing there,
 * the move is RENAME_NOREPLACE; over a stale socket it is RENAME_EXCHANGE,
 * after which the old entry, now at tmp, is checked: the stale socket is
 * removed, anything else is exchanged back and the start refused.
 */
static int move_into_place(const char *tmp, const char *path,
			   const struct stat *stale)
{
	struct stat st;

	if (stale->st_ino == 0) {
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
		/* A file system without renameat2's flags: link() fails
		 * as well when the name exists. */
		if (link(tmp, path) < 0)
			return -errno;
		unlink(tmp);
		return 0;
	}
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) < 0) {
		if (errno == ENOENT) /* the stale socket went away meanwhile */
			return move_into_place(tmp, path, &(struct stat){ 0 });
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
		/* No exchange here: remove the stale socket only if it is
		 * still the one seen (a window remains, on such file systems
		 * only), then move without replacing. */
		if (lstat(path, &st) == 0) {
			if (!same_file(&st, stale))
				return -EEXIST;
			unlink(path);
		}
		return move_into_place(tmp, path, &(struct stat){ 0 });
	}
	if (lstat(tmp, &st) == 0 && same_file(&st, stale)) {
		unlink(tmp);
		return 0;
	}
	/* Something else took the stale socket's place: put it back. */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) < 0)
		return -errno;
	return -EEXIST;
}

/* Bind fd at where with mode 0, then give it its owner and mode, and
 * listen: the file never has wider rights than asked. */
static int bind_strict(int fd, const char *where, const struct vhu_blk_sock_perm *p,
		       int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memcpy(sa.sun_path, where, strlen(where) + 1);
	if (fchmod(fd, 0) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	if ((p->uid >= 0 || p->gid >= 0) &&
	    lchown(where, p->uid >= 0 ? (uid_t)p->uid : (uid_t)-1,
		   p->gid >= 0 ? (gid_t)p->gid : (gid_t)-1) < 0)
		goto fail;
	if (chmod(where, (mode_t)p->mode) < 0 || listen(fd, backlog) < 0)
		goto fail;
	return 0;
fail:;
	int r = -errno;
	unlink(where);
	return r;
}

/* A private directory next to path, "DIR/.vhu-blk-XXXXXX"; 0 or -errno
 * (-ENAMETOOLONG when the socket in it would not fit in sun_path). */
static int private_dir(const char *path, char *dir, size_t size)
{
	const char *slash = strrchr(path, '/');
	int n;

	if (slash)
		n = snprintf(dir, size, "%.*s/.vhu-blk-XXXXXX", (int)(slash - path), path);
	else
		n = snprintf(dir, size, "./.vhu-blk-XXXXXX");
	if (n < 0 || (size_t)n + 3 > size)
		return -ENAMETOOLONG;
	return mkdtemp(dir) ? 0 : -errno;
}

int vhu_blk_sock_listen(const char *path, const struct vhu_blk_sock_perm *perm,
			int backlog, struct vhu_blk_sock *out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)], tmp[sizeof(sa.sun_path) + 2];
	struct stat st, stale;
	int fd, r;

	out->fd = -1;
	out->path = NULL;
	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	r = path_state(&sa, &stale);
	if (r < 0)
		return r;
	out->path = strdup(path);
	if (!out->path)
		return -ENOMEM;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	r = private_dir(path, dir, sizeof(dir));
	if (r == 0) {
		snprintf(tmp, sizeof(tmp), "%s/s", dir);
		r = bind_strict(fd, tmp, perm, backlog);
		if (r == 0) {
			r = move_into_place(tmp, path, &stale);
			if (r < 0)
				unlink(tmp);
		}
		rmdir(dir);
	} else if (r == -ENAMETOOLONG) {
		/* No room for the private directory: bind in place (the
		 * path then exists a moment before it listens, mode 0).
		 * bind() fails if anything is at path; a stale socket is
		 * removed first only while it is still the one seen. */
		r = 0;
		if (stale.st_ino && lstat(path, &st) == 0) {
			if (!same_file(&st, &stale))
				r = -EEXIST;
			else if (unlink(path) < 0 && errno != ENOENT)
				r = -errno;
		}
		if (r == 0)
			r = bind_strict(fd, path, perm, backlog);
		if (r == -EADDRINUSE)
			r = -EEXIST;
	}
	if (r < 0)
		goto fail;
	if (lstat(path, &st) < 0) {
		r = -errno;
		goto fail;
	}
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	out->fd = fd;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	free(out->path);
	out->path = NULL;
	return r;
}

void vhu_blk_sock_remove(struct vhu_blk_sock *s)
{
	struct stat st;

	if (!s->path)
		return;
	/* Only our own socket: a path taken over since is left alone. */
	if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	free(s->path);
	s->path = NULL;
}

/* sd_notify(3)'s protocol: one datagram to the AF_UNIX socket named by
 * NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). */
int vhu_blk_notify(const char *state)
{
	static const char *addr;
	static bool read_env;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	size_t n;
	int fd, r = 0;

	if (!read_env) {
		const char *e = getenv("NOTIFY_SOCKET");

		read_env = true;
		addr = e && *e ? strdup(e) : NULL;
		unsetenv("NOTIFY_SOCKET");
	}
	if (!addr)
		return 0;
	n = strlen(addr);
	if ((addr[0] != '/' && addr[0] != '@') || n >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, addr, n);
	if (addr[0] == '@')
		sa.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
			  (addr[0] == '/'));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
		   (struct sockaddr *)&sa, len) < 0)
		r = -errno;
	close(fd);
	return r;
}
