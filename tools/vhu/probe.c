/* SPDX-License-Identifier: MIT */
/*
 * vhu probe: what a back-end offers (features by name, queues, memory
 * slots, config space).  vhu watch: wait for CONFIG_CHANGE_MSG on the
 * back-end channel and print the new capacity.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cli.h"

/* virtio-blk fields by offset (virtio 1.2, 5.2.4) */
struct blk_cfg {
	unsigned len;
	uint64_t capacity;
	uint32_t size_max, seg_max, blk_size;
	uint8_t wce;
	uint16_t num_queues;
	uint32_t max_discard_sectors, max_discard_seg, discard_align;
	uint32_t max_wz_sectors, max_wz_seg;
	uint8_t wz_may_unmap;
};

static void blk_decode(const uint8_t *b, unsigned len, struct blk_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->len = len;
	c->capacity = le64_at(b, 0);
	if (len >= 16) {
		c->size_max = le32_at(b, 8);
		c->seg_max = le32_at(b, 12);
	}
	if (len >= 24)
		c->blk_size = le32_at(b, 20);
	if (len >= 33)
		c->wce = b[32];
	if (len >= 36)
		c->num_queues = le16_at(b, 34);
	if (len >= 48) {
		c->max_discard_sectors = le32_at(b, 36);
		c->max_discard_seg = le32_at(b, 40);
		c->discard_align = le32_at(b, 44);
	}
	if (len >= 57) {
		c->max_wz_sectors = le32_at(b, 48);
		c->max_wz_seg = le32_at(b, 52);
		c->wz_may_unmap = b[56];
	}
}

static json_object *names_json(uint64_t bits, bool protocol, bool blk)
{
	json_object *a = json_object_new_array();
	for (unsigned i = 0; i < 64; i++) {
		if (!(bits & (1ull << i)))
			continue;
		const char *n = protocol ? tool_protocol_feature_name(i)
					 : tool_feature_name(i, blk);
		char tmp[24];
		if (!n) {
			snprintf(tmp, sizeof(tmp), "bit%u", i);
			n = tmp;
		}
		json_object_array_add(a, json_object_new_string(n));
	}
	return a;
}

static void print_names(const char *title, uint64_t bits, bool protocol, bool blk)
{
	printf("%s: 0x%016" PRIx64 "\n", title, bits);
	json_object *a = names_json(bits, protocol, blk);
	size_t n = json_object_array_length(a);
	for (size_t i = 0; i < n; i++)
		printf("  %s\n", json_object_get_string(json_object_array_get_idx(a, i)));
	json_object_put(a);
}

static void probe_help(FILE *f)
{
	fprintf(f,
		"usage: vhu probe SOCKET [--type blk|raw] [--json] [--timeout SEC]\n"
		"Connect to a vhost-user back-end and show the virtio and protocol\n"
		"features it offers, its queue count, memory slots and config space\n"
		"(decoded for virtio-blk, raw hex with --type raw).\n");
}

static json_object *blk_json(const struct blk_cfg *c)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "config_bytes", json_object_new_int(c->len));
	json_object_object_add(o, "capacity_sectors", json_object_new_uint64(c->capacity));
	json_object_object_add(o, "capacity_bytes", json_object_new_uint64(c->capacity * 512));
	json_object_object_add(o, "size_max", json_object_new_int64(c->size_max));
	json_object_object_add(o, "seg_max", json_object_new_int64(c->seg_max));
	json_object_object_add(o, "blk_size", json_object_new_int64(c->blk_size));
	json_object_object_add(o, "wce", json_object_new_int(c->wce));
	json_object_object_add(o, "num_queues", json_object_new_int(c->num_queues));
	json_object_object_add(o, "max_discard_sectors", json_object_new_int64(c->max_discard_sectors));
	json_object_object_add(o, "max_discard_seg", json_object_new_int64(c->max_discard_seg));
	json_object_object_add(o, "discard_sector_alignment", json_object_new_int64(c->discard_align));
	json_object_object_add(o, "max_write_zeroes_sectors", json_object_new_int64(c->max_wz_sectors));
	json_object_object_add(o, "max_write_zeroes_seg", json_object_new_int64(c->max_wz_seg));
	json_object_object_add(o, "write_zeroes_may_unmap", json_object_new_int(c->wz_may_unmap));
	return o;
}

static void blk_print(const struct blk_cfg *c, uint64_t features)
{
	printf("config (virtio-blk, %u bytes read):\n", c->len);
	printf("  capacity: %" PRIu64 " sectors (%" PRIu64 " bytes, %.2f GiB)\n",
	       c->capacity, c->capacity * 512,
	       (double)c->capacity * 512 / (1024.0 * 1024 * 1024));
	if (c->len >= 16) {
		printf("  size_max: %" PRIu32 "%s\n", c->size_max,
		       features & VHU_BIT(BLK_F_SIZE_MAX) ? "" : " (feature not offered)");
		printf("  seg_max: %" PRIu32 "%s\n", c->seg_max,
		       features & VHU_BIT(BLK_F_SEG_MAX) ? "" : " (feature not offered)");
	}
	if (c->len >= 24)
		printf("  blk_size: %" PRIu32 "%s\n", c->blk_size,
		       features & VHU_BIT(BLK_F_BLK_SIZE) ? "" : " (feature not offered)");
	if (c->len >= 33)
		printf("  wce: %u (%s)\n", c->wce, c->wce ? "writeback" : "writethrough");
	if (c->len >= 36)
		printf("  num_queues: %u\n", c->num_queues);
	if (c->len >= 48)
		printf("  discard: max_sectors %" PRIu32 ", max_seg %" PRIu32
		       ", sector_alignment %" PRIu32 "%s\n",
		       c->max_discard_sectors, c->max_discard_seg, c->discard_align,
		       features & VHU_BIT(BLK_F_DISCARD) ? "" : " (feature not offered)");
	if (c->len >= 57)
		printf("  write_zeroes: max_sectors %" PRIu32 ", max_seg %" PRIu32
		       ", may_unmap %u%s\n", c->max_wz_sectors, c->max_wz_seg,
		       c->wz_may_unmap,
		       features & VHU_BIT(BLK_F_WRITE_ZEROES) ? "" : " (feature not offered)");
}

int cmd_probe(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "type", required_argument, NULL, 't' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	bool json = false, blk = true;
	double timeout = 5;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "jt:T:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 't':
			if (!strcmp(optarg, "blk")) blk = true;
			else if (!strcmp(optarg, "raw")) blk = false;
			else { fprintf(stderr, "vhu probe: --type blk|raw\n"); return EXIT_USAGE; }
			break;
		case 'T':
			if (!parse_timeout("probe", optarg, &timeout))
				return EXIT_USAGE;
			break;
		case 'h': probe_help(stdout); return 0;
		default: probe_help(stderr); return EXIT_USAGE;
		}
	}
	const char *path;
	struct vhu_fe *fe;
	int rc = tool_connect_arg(argc, argv, probe_help, (int)(timeout * 1000),
				  &path, &fe);
	if (rc)
		return rc;

	uint64_t f = vhu_fe_features_offered(fe);
	uint64_t pf = vhu_fe_protocol_features_offered(fe);
	uint8_t cfg[256];
	int clen = -EOPNOTSUPP;
	if (vhu_fe_protocol_features(fe) & VHU_BIT(VHU_PF_CONFIG)) {
		if (blk) {
			clen = blk_read_config(fe, cfg, sizeof(cfg));
		} else {
			static const unsigned sizes[] = { 256, 128, 96, 64, 60, 32, 16, 8, 4 };
			for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
				clen = vhu_fe_get_config(fe, 0, cfg, sizes[i]);
				if (clen == 0)
					clen = (int)sizes[i];
				if (clen != -EIO)
					break;
			}
		}
	}

	json_object *o = json_object_new_object();
	json_object_object_add(o, "socket", json_object_new_string(path));
	json_object_object_add(o, "features", json_object_new_uint64(f));
	json_object_object_add(o, "feature_names", names_json(f, false, blk));
	json_object_object_add(o, "protocol_features", json_object_new_uint64(pf));
	json_object_object_add(o, "protocol_feature_names", names_json(pf, true, false));
	json_object_object_add(o, "queues", json_object_new_int(vhu_fe_queue_num(fe)));
	json_object_object_add(o, "mem_slots", json_object_new_int(vhu_fe_max_mem_slots(fe)));
	struct blk_cfg bc;
	if (clen > 0 && blk) {
		blk_decode(cfg, (unsigned)clen, &bc);
		json_object_object_add(o, "config", blk_json(&bc));
	} else if (clen > 0) {
		char hex[2 * 256 + 1];
		for (int i = 0; i < clen; i++)
			snprintf(hex + 2 * i, 3, "%02x", cfg[i]);
		json_object_object_add(o, "config_hex", json_object_new_string(hex));
	} else {
		json_object_object_add(o, "config_error",
				       json_object_new_string(strerror(-clen)));
	}

	if (json) {
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
	} else {
		printf("socket: %s\n", path);
		print_names("virtio features", f, false, blk);
		print_names("protocol features", pf, true, false);
		printf("queues: %u%s\n", vhu_fe_queue_num(fe),
		       pf & VHU_BIT(VHU_PF_MQ) ? "" : " (no MQ: 1 assumed)");
		printf("memory slots: %u%s\n", vhu_fe_max_mem_slots(fe),
		       pf & VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS) ? ""
		       : " (no CONFIGURE_MEM_SLOTS: 8 via SET_MEM_TABLE)");
		if (clen > 0 && blk) {
			blk_print(&bc, f);
		} else if (clen > 0) {
			printf("config (%d bytes):", clen);
			for (int i = 0; i < clen; i++)
				printf("%s%02x", i % 16 ? " " : "\n  ", cfg[i]);
			printf("\n");
		} else {
			printf("config: unavailable (%s)\n", strerror(-clen));
		}
	}
	json_object_put(o);
	vhu_fe_close(fe);
	return 0;
}

/* ------------------------------------------------------------- watch */

struct watch {
	bool json;
	unsigned seen;
	int err;
};

static int on_change(struct vhu_fe *fe, void *opaque)
{
	struct watch *w = opaque;
	uint8_t b[8];
	/* Re-read from inside the callback, before the acknowledgement
	 * (the order QEMU uses, vhost-user.rst CONFIG_CHANGE_MSG). */
	int r = vhu_fe_get_config(fe, 0, b, sizeof(b));
	if (r < 0) {
		fprintf(stderr, "vhu watch: GET_CONFIG after change: %s\n", strerror(-r));
		w->err = r;
		return r;
	}
	uint64_t cap = le64_at(b, 0);
	w->seen++;
	if (w->json)
		printf("{\"event\": \"config_change\", \"capacity_sectors\": %" PRIu64
		       ", \"capacity_bytes\": %" PRIu64 "}\n", cap, cap * 512);
	else
		printf("config change: capacity %" PRIu64 " sectors (%" PRIu64 " bytes)\n",
		       cap, cap * 512);
	fflush(stdout);
	return 0;
}

static void watch_help(FILE *f)
{
	fprintf(f,
		"usage: vhu watch SOCKET [--count N] [--timeout SEC] [--json]\n"
		"Connect (negotiating BACKEND_REQ and CONFIG), print the capacity,\n"
		"then wait for CONFIG_CHANGE_MSG from the back-end and print the new\n"
		"capacity each time.  Exits 0 after N changes (default 1), 3 when\n"
		"--timeout (default 30 s, 0 = forever) passes first.\n");
}

int cmd_watch(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "count", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct watch w = { 0 };
	uint64_t count = 1;
	double timeout = 30;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "jc:T:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': w.json = true; break;
		case 'c':
			if (!parse_uint(optarg, 1, 1000000, &count)) {
				fprintf(stderr, "vhu watch: bad --count\n");
				return EXIT_USAGE;
			}
			break;
		case 'T':
			if (!parse_seconds(optarg, &timeout)) {
				fprintf(stderr, "vhu watch: bad --timeout\n");
				return EXIT_USAGE;
			}
			break;
		case 'h': watch_help(stdout); return 0;
		default: watch_help(stderr); return EXIT_USAGE;
		}
	}
	const char *path;
	struct vhu_fe *fe;
	int rc = tool_connect_arg(argc, argv, watch_help, 5000, &path, &fe);
	if (rc)
		return rc;
	uint64_t pf = vhu_fe_protocol_features(fe);
	if (!(pf & VHU_BIT(VHU_PF_CONFIG)) || vhu_fe_backend_fd(fe) < 0) {
		fprintf(stderr, "vhu watch: %s: back-end lacks the %s protocol feature\n",
			path, (pf & VHU_BIT(VHU_PF_CONFIG)) ? "BACKEND_REQ" : "CONFIG");
		vhu_fe_close(fe);
		return 1;
	}
	rc = 1;
	int r = vhu_fe_set_features(fe, vhu_fe_features_offered(fe) &
				    (VHU_BIT(VHU_F_VERSION_1) |
				     VHU_BIT(BLK_F_CONFIG_WCE)));
	uint8_t b[8];
	if (r == 0)
		r = vhu_fe_get_config(fe, 0, b, sizeof(b));
	if (r < 0) {
		fprintf(stderr, "vhu watch: %s: %s\n", path, strerror(-r));
		goto out;
	}
	uint64_t cap = le64_at(b, 0);
	if (w.json)
		printf("{\"event\": \"initial\", \"capacity_sectors\": %" PRIu64
		       ", \"capacity_bytes\": %" PRIu64 "}\n", cap, cap * 512);
	else
		printf("capacity %" PRIu64 " sectors (%" PRIu64 " bytes); waiting for "
		       "config changes\n", cap, cap * 512);
	fflush(stdout);
	vhu_fe_set_config_change_cb(fe, on_change, &w);

	int64_t deadline = timeout > 0 ?
			   tool_mono_ms() + (int64_t)(timeout * 1000) : -1;
	while (w.seen < count) {
		int t = -1;
		if (deadline >= 0) {
			int64_t left = deadline - tool_mono_ms();
			if (left <= 0) {
				fprintf(stderr, "vhu watch: no config change within %.1f s\n",
					timeout);
				rc = EXIT_TIMEOUT;
				goto out;
			}
			t = (int)left;
		}
		/* The main socket too: a back-end that goes away ends the wait. */
		int bfd = vhu_fe_backend_fd(fe);
		if (bfd < 0) {
			fprintf(stderr, "vhu watch: back-end channel closed\n");
			goto out;
		}
		struct pollfd p = { .fd = bfd, .events = POLLIN };
		int n = poll(&p, 1, t);
		if (n < 0 && errno != EINTR) {
			perror("vhu watch: poll");
			goto out;
		}
		if (n > 0) {
			r = vhu_fe_process_backend(fe);
			if (r < 0) {
				fprintf(stderr, "vhu watch: back-end channel: %s\n",
					r == -ENOTCONN ? "closed by the back-end"
						       : strerror(-r));
				goto out;
			}
			if (w.err)
				goto out;
		}
	}
	rc = 0;
out:
	vhu_fe_close(fe);
	return rc;
}
