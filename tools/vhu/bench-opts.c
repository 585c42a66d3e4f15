/* SPDX-License-Identifier: MIT */
/* vhu bench: the command line. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

const char *const pattern_names[] = {
	"read", "write", "randread", "randwrite", "rw", "randrw",
};

static void bench_help(FILE *f)
{
	fprintf(f,
		"usage: vhu bench SOCKET [options]\n"
		"A virtio-blk load generator; other devices have none.\n"
		"  --device NAME     the back-end's device: only blk (the default)\n"
		"                    is served; any other is refused with a message\n"
		"  --pattern P       read|write|randread|randwrite|rw|randrw (randread)\n"
		"  --rwmix-read PCT  share of reads for rw/randrw (50)\n"
		"  --bs BYTES        request size, multiple of 512, suffixes k/m (4k)\n"
		"  --iodepth N       requests in flight per queue (32)\n"
		"  --queues N        queues, each driven by its own thread (1)\n"
		"  --queue-size N    descriptors per queue (smallest power of two >= 3*iodepth;\n"
		"                    with --packed any size)\n"
		"  --time SEC        run time (10), or\n"
		"  --count N         total requests, then stop\n"
		"  --size BYTES      use only the first BYTES of the disk\n"
		"  --pid PID, --backend-pid PID\n"
		"                    back-end process: report its CPU time (and\n"
		"                    IOPS per back-end CPU-second)\n"
		"  --poll            poll the used rings instead of sleeping on the\n"
		"                    call eventfd (a core per queue while running)\n"
		"  --hold SEC        keep the queues started SEC seconds after the run\n"
		"                    (idle: the back-end's idle CPU can be watched)\n"
		"  --verify          write a pattern (offset + seed), check it on read\n"
		"  --seed N          pattern seed (1)\n"
		"  --no-event-idx    do not negotiate VIRTIO_F_EVENT_IDX\n"
		"  --packed          use packed virtqueues (VIRTIO_F_RING_PACKED)\n"
		"  --dirty-log       have the back-end log dirty pages as during a live\n"
		"                    migration (bitmap read and cleared every 50 ms)\n"
		"  --quiet           no progress line\n"
		"  --json            result as JSON\n"
		"Read-only patterns with --verify check every block: write it first\n"
		"with the same --bs, --seed and range.\n");
}

static bool parse_pattern(const char *s, enum pattern *p)
{
	for (unsigned i = 0; i < sizeof(pattern_names) / sizeof(pattern_names[0]); i++) {
		if (!strcmp(s, pattern_names[i])) {
			*p = (enum pattern)i;
			return true;
		}
	}
	return false;
}

int bench_parse_opts(int argc, char **argv, struct opts *o, const char **path)
{
	static const struct option lo[] = {
		{ "pattern", required_argument, NULL, 'p' },
		{ "rwmix-read", required_argument, NULL, 'm' },
		{ "bs", required_argument, NULL, 'b' },
		{ "iodepth", required_argument, NULL, 'd' },
		{ "queues", required_argument, NULL, 'q' },
		{ "queue-size", required_argument, NULL, 'Q' },
		{ "time", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "pid", required_argument, NULL, 'P' },
		{ "backend-pid", required_argument, NULL, 'P' },
		{ "poll", no_argument, NULL, 'O' },
		{ "hold", required_argument, NULL, 'H' },
		{ "verify", no_argument, NULL, 'v' },
		{ "seed", required_argument, NULL, 'S' },
		{ "no-event-idx", no_argument, NULL, 'E' },
		{ "packed", no_argument, NULL, 'K' },
		{ "dirty-log", no_argument, NULL, 'L' },
		{ "quiet", no_argument, NULL, 'z' },
		{ "json", no_argument, NULL, 'j' },
		{ "device", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	*o = (struct opts){
		.pattern = P_RANDREAD, .rwmix_read = 50, .bs = 4096, .iodepth = 32,
		.queues = 1, .time_s = 10, .pid = -1, .seed = 1, .progress = true,
		.stall_s = 10,
	};
	uint64_t v;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (!parse_pattern(optarg, &o->pattern))
				goto bad;
			break;
		case 'm':
			if (!parse_uint(optarg, 0, 100, &v)) goto bad;
			o->rwmix_read = (unsigned)v;
			break;
		case 'b':
			if (!parse_size(optarg, &v) || v == 0 || v % SECTOR ||
			    v > 64 * 1024 * 1024) goto bad;
			o->bs = v;
			break;
		case 'd':
			if (!parse_uint(optarg, 1, 4096, &v)) goto bad;
			o->iodepth = (unsigned)v;
			break;
		case 'q':
			if (!parse_uint(optarg, 1, 64, &v)) goto bad;
			o->queues = (unsigned)v;
			break;
		case 'Q':
			/* a power of two unless --packed (checked below) */
			if (!parse_uint(optarg, 1, 32768, &v)) goto bad;
			o->queue_size = (unsigned)v;
			break;
		case 't':
			if (!parse_seconds(optarg, &o->time_s) || o->time_s <= 0) goto bad;
			break;
		case 'c':
			if (!parse_uint(optarg, 1, UINT64_MAX / 2, &o->count)) goto bad;
			break;
		case 's':
			if (!parse_size(optarg, &o->size)) goto bad;
			break;
		case 'P':
			if (!parse_uint(optarg, 1, 1u << 30, &v)) goto bad;
			o->pid = (int)v;
			break;
		case 'v': o->verify = true; break;
		case 'S':
			if (!parse_uint(optarg, 0, UINT64_MAX, &o->seed)) goto bad;
			break;
		case 'E': o->no_event_idx = true; break;
		case 'K': o->packed = true; break;
		case 'O': o->poll = true; break;
		case 'H':
			if (!parse_seconds(optarg, &o->hold_s) || o->hold_s < 0) goto bad;
			break;
		case 'L': o->dirty_log = true; break;
		case 'z': o->progress = false; break;
		case 'j': o->json = true; break;
		case 'D': {
			const struct vhu_tool_device *d =
				vhu_tool_device_arg("bench", optarg);
			if (!d)
				return -1;
			if (!d->blk) {
				/* Said before connecting: a block request sent to
				 * another device would only fail obscurely. */
				fprintf(stderr, "vhu bench: generates virtio-blk "
					"load only; --device %s (%s) has no load "
					"generator (see vhu probe and vhu check "
					"--device %s)\n", d->name, d->title,
					d->name);
				return -1;
			}
			break;
		}
		case 'h': bench_help(stdout); return 1;
		default: bench_help(stderr); return -1;
		}
	}
	if (optind + 1 != argc) {
		bench_help(stderr);
		return -1;
	}
	*path = argv[optind];
	if (o->queue_size && !o->packed && (o->queue_size & (o->queue_size - 1))) {
		fprintf(stderr, "vhu bench: --queue-size %u: split rings need a power "
			"of two (or use --packed)\n", o->queue_size);
		return -1;
	}
	if (!o->queue_size) {
		unsigned need = 3 * o->iodepth, qs = 8;
		while (qs < need)
			qs *= 2;
		o->queue_size = qs > 32768 ? 32768 : qs;
	}
	if (3u * o->iodepth > o->queue_size) {
		fprintf(stderr, "vhu bench: --queue-size %u is too small for --iodepth %u "
			"(3 descriptors per request)\n", o->queue_size, o->iodepth);
		return -1;
	}
	return 0;
bad:
	for (const struct option *l = lo; l->name; l++) {
		if (l->val == c) {
			fprintf(stderr, "vhu bench: bad value for --%s: '%s'\n",
				l->name, optarg);
			break;
		}
	}
	return -1;
}
