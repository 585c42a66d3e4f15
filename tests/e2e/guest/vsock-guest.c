/* SPDX-License-Identifier: MIT */
/*
 * The guest's side of tests/e2e/test-vsock.sh (built static, run from the
 * initramfs).  Streams are checked with CRC-32 (zlib's), which the host
 * side computes with Python's zlib.crc32.
 *
 *   vsock-guest listen PORT
 *       print "LISTENING PORT" once bound, then accept connections on
 *       vsock PORT forever, one process each: read
 *       to EOF, answer "<bytes> <crc32>\n", close.
 *   vsock-guest send PORT BYTES
 *       connect to the host (CID 2) on PORT, send BYTES pseudo-random
 *       bytes, shut the sending side, read the host's answer; prints
 *       "SENT <bytes> <crc32> GOT <answer>".
 *   vsock-guest refused PORT
 *       connect to host PORT; prints "REFUSED <errno name>" or
 *       "CONNECTED".
 *   vsock-guest seq PORT COUNT
 *       connect a SOCK_SEQPACKET socket to host PORT (an echo server) and
 *       send COUNT messages of 1 .. 60000 bytes, each read back whole and
 *       compared; prints "SEQ OK <count>", "SEQ FAIL <why>" or
 *       "SEQ UNSUPPORTED <errno name>" when the connection cannot be made
 *       for lack of seqpacket support.
 *   vsock-guest wait PORT SECONDS
 *       accept one connection on PORT (the host's "done"), at most
 *       SECONDS.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static int vsock_socket(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);

	if (fd < 0) {
		perror("socket(AF_VSOCK)");
		exit(1);
	}
	return fd;
}

static int listen_on(unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = port };
	int fd = vsock_socket();

	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0) {
		perror("bind/listen");
		exit(1);
	}
	return fd;
}

static int write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One accepted stream: read to EOF, answer size and CRC. */
static void serve(int fd)
{
	static uint8_t buf[65536];
	uint64_t total = 0;
	uint32_t crc = 0;
	ssize_t n;
	char line[64];

	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(line, sizeof(line), "ERROR %s\n", strerror(errno));
			write_all(fd, line, strlen(line));
			_exit(1);
		}
		crc = crc32_update(crc, buf, (size_t)n);
		total += (uint64_t)n;
	}
	snprintf(line, sizeof(line), "%llu %u\n", (unsigned long long)total, crc);
	write_all(fd, line, strlen(line));
	close(fd);
}

static int do_listen(unsigned port)
{
	int l = listen_on(port);

	signal(SIGCHLD, SIG_IGN);   /* no zombies */
	printf("LISTENING %u\n", port);
	for (;;) {
		int fd = accept(l, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			perror("accept");
			return 1;
		}
		pid_t p = fork();
		if (p == 0) {
			close(l);
			serve(fd);
			_exit(0);
		}
		close(fd);
	}
}

static int connect_host(unsigned port, int *err)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST,
				 .svm_port = port };
	int fd = vsock_socket();

	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

static int do_send(unsigned port, uint64_t bytes)
{
	static uint8_t buf[65536];
	uint64_t x = 0x9e3779b97f4a7c15ull, left = bytes;
	uint32_t crc = 0;
	int err = 0;
	int fd = connect_host(port, &err);

	if (fd < 0) {
		printf("SENT connect-failed %s\n", strerror(err));
		return 1;
	}
	while (left) {
		size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
		for (size_t i = 0; i < n; i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(buf + i, &x, n - i < 8 ? n - i : 8);
		}
		if (write_all(fd, buf, n) < 0) {
			printf("SENT write-failed %s\n", strerror(errno));
			return 1;
		}
		crc = crc32_update(crc, buf, n);
		left -= n;
	}
	shutdown(fd, SHUT_WR);
	char ans[128];
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(ans) - 1 && (n = read(fd, ans + got, sizeof(ans) - 1 - got)) > 0)
		got += (size_t)n;
	ans[got] = '\0';
	ans[strcspn(ans, "\n")] = '\0';
	printf("SENT %llu %u GOT %s\n", (unsigned long long)bytes, crc, ans);
	close(fd);
	return 0;
}

static int do_seq(unsigned port, unsigned count)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST,
				 .svm_port = port };
	static uint8_t msg[60000], back[65536];
	int fd = socket(AF_VSOCK, SOCK_SEQPACKET, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		if (e == ESOCKTNOSUPPORT || e == EPROTONOSUPPORT || e == EOPNOTSUPP)
			printf("SEQ UNSUPPORTED %s\n", strerror(e));
		else
			printf("SEQ FAIL connect: %s\n", strerror(e));
		return 1;
	}
	for (unsigned i = 0; i < count; i++) {
		size_t size = 1 + (size_t)i * 7919 % sizeof(msg);
		for (size_t k = 0; k < size; k++)
			msg[k] = (uint8_t)(i * 131 + k);
		ssize_t w = send(fd, msg, size, 0);
		if (w != (ssize_t)size) {
			printf("SEQ FAIL send %u: %zd of %zu (%s)\n", i, w, size, strerror(errno));
			return 1;
		}
		ssize_t r = recv(fd, back, sizeof(back), 0);
		if (r != (ssize_t)size || memcmp(back, msg, size)) {
			printf("SEQ FAIL message %u: %zd bytes back of %zu%s\n", i, r, size,
			       r == (ssize_t)size ? " (content differs)" : "");
			return 1;
		}
	}
	printf("SEQ OK %u\n", count);
	close(fd);
	return 0;
}

static int do_refused(unsigned port)
{
	int err = 0;
	int fd = connect_host(port, &err);

	if (fd >= 0) {
		printf("CONNECTED\n");
		close(fd);
		return 1;
	}
	printf("REFUSED %s\n", err == ECONNRESET ? "ECONNRESET" :
	       err == ECONNREFUSED ? "ECONNREFUSED" : strerror(err));
	return 0;
}

static int do_wait(unsigned port, unsigned secs)
{
	int l = listen_on(port);

	alarm(secs);
	int fd = accept(l, NULL, NULL);
	if (fd >= 0)
		close(fd);
	return fd >= 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	crc_init();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "listen"))
		return do_listen((unsigned)strtoul(argv[2], NULL, 10));
	if (argc == 4 && !strcmp(argv[1], "send"))
		return do_send((unsigned)strtoul(argv[2], NULL, 10),
			       strtoull(argv[3], NULL, 10));
	if (argc == 3 && !strcmp(argv[1], "refused"))
		return do_refused((unsigned)strtoul(argv[2], NULL, 10));
	if (argc == 4 && !strcmp(argv[1], "seq"))
		return do_seq((unsigned)strtoul(argv[2], NULL, 10),
			      (unsigned)strtoul(argv[3], NULL, 10));
	if (argc == 4 && !strcmp(argv[1], "wait"))
		return do_wait((unsigned)strtoul(argv[2], NULL, 10),
			       (unsigned)strtoul(argv[3], NULL, 10));
	fprintf(stderr, "usage: vsock-guest listen PORT | send PORT BYTES | "
		"refused PORT | seq PORT COUNT | wait PORT SECONDS\n");
	return 2;
}
