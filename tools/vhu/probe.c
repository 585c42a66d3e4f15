/* SPDX-License-Identifier: MIT */
/*
 * vhu probe: what a back-end offers (features by name, queues, memory
 * slots, config space decoded by the device's module in tools/devices).
 * vhu watch: wait for CONFIG_CHANGE_MSG on the back-end channel and print
 * the new virtio-blk capacity.
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

static json_object *names_json(uint64_t bits, bool protocol,
			       const struct vhu_tool_device *dev)
{
	json_object *a = json_object_new_array();
	for (unsigned i = 0; i < 64; i++) {
		if (!(bits & (1ull << i)))
			continue;
		const char *n = protocol ? tool_protocol_feature_name(i)
					 : tool_feature_name(i, dev);
		char tmp[24];
		if (!n) {
			snprintf(tmp, sizeof(tmp), "bit%u", i);
			n = tmp;
		}
		json_object_array_add(a, json_object_new_string(n));
	}
	return a;
}

static void print_names(const char *title, uint64_t bits, bool protocol,
			const struct vhu_tool_device *dev)
{
	printf("%s: 0x%016" PRIx64 "\n", title, bits);
	json_object *a = names_json(bits, protocol, dev);
	size_t n = json_object_array_length(a);
	for (size_t i = 0; i < n; i++)
		printf("  %s\n", json_object_get_string(json_object_array_get_idx(a, i)));
	json_object_put(a);
}

static void probe_help(FILE *f)
{
	fprintf(f,
		"usage: vhu probe SOCKET [--device blk|rng|vsock|generic] [--json]\n"
		"                        [--timeout SEC]\n"
		"Connect to a vhost-user back-end and show the virtio and protocol\n"
		"features it offers, its queue count, memory slots and config space.\n"
		"--device (default blk) says which device it is: the device's feature\n"
		"bits are named and its config space decoded (blk, vsock; rng has\n"
		"none); generic shows the config space as raw hex (--type raw is the\n"
		"same).  A back-end without a config space is shown as such.\n");
}

static void emit_json(void *ctx, const char *name, uint64_t v)
{
	json_object_object_add(ctx, name, json_object_new_uint64(v));
}

int cmd_probe(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "type", required_argument, NULL, 't' },
		{ "device", required_argument, NULL, 'd' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	bool json = false;
	const struct vhu_tool_device *dev = &vhu_tool_dev_blk;
	double timeout = 5;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "jt:d:T:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 't': /* the older spelling of --device blk|generic */
			if (!strcmp(optarg, "blk")) dev = &vhu_tool_dev_blk;
			else if (!strcmp(optarg, "raw")) dev = &vhu_tool_dev_generic;
			else { fprintf(stderr, "vhu probe: --type blk|raw\n"); return EXIT_USAGE; }
			break;
		case 'd':
			dev = vhu_tool_device_arg("probe", optarg);
			if (!dev)
				return EXIT_USAGE;
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
	/* No config space is a normal state of many devices, not an error:
	 * say why there is none.  Only other failures are errors. */
	int clen = 0;
	const char *none = NULL;
	if (!dev->config_sizes)
		none = "the device has no config space";
	else if (!(vhu_fe_protocol_features(fe) & VHU_BIT(VHU_PF_CONFIG)))
		none = "the back-end offers no CONFIG protocol feature";
	else {
		clen = tool_read_config(fe, dev, cfg, sizeof(cfg));
		if (clen == -EIO)
			none = "the back-end refuses GET_CONFIG: it has no config space";
	}

	json_object *o = json_object_new_object();
	json_object_object_add(o, "socket", json_object_new_string(path));
	json_object_object_add(o, "device", json_object_new_string(dev->name));
	json_object_object_add(o, "features", json_object_new_uint64(f));
	json_object_object_add(o, "feature_names", names_json(f, false, dev));
	json_object_object_add(o, "protocol_features", json_object_new_uint64(pf));
	json_object_object_add(o, "protocol_feature_names", names_json(pf, true, NULL));
	json_object_object_add(o, "queues", json_object_new_int(vhu_fe_queue_num(fe)));
	json_object_object_add(o, "mem_slots", json_object_new_int(vhu_fe_max_mem_slots(fe)));
	if (none) {
		json_object_object_add(o, "config", NULL);
		json_object_object_add(o, "config_none", json_object_new_string(none));
	} else if (clen > 0 && dev->config_fields) {
		json_object *cj = json_object_new_object();
		dev->config_fields(cfg, (unsigned)clen, emit_json, cj);
		json_object_object_add(o, "config", cj);
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
		printf("device: %s (as --device %s)\n", dev->title, dev->name);
		print_names("virtio features", f, false, dev);
		print_names("protocol features", pf, true, NULL);
		printf("queues: %u%s\n", vhu_fe_queue_num(fe),
		       pf & VHU_BIT(VHU_PF_MQ) ? "" : " (no MQ: 1 assumed)");
		printf("memory slots: %u%s\n", vhu_fe_max_mem_slots(fe),
		       pf & VHU_BIT(VHU_PF_CONFIGURE_MEM_SLOTS) ? ""
		       : " (no CONFIGURE_MEM_SLOTS: 8 via SET_MEM_TABLE)");
		if (none) {
			printf("config: none (%s)\n", none);
		} else if (clen > 0 && dev->config_print) {
			dev->config_print(stdout, cfg, (unsigned)clen, f);
		} else if (clen > 0) {
			printf("config (%d bytes):", clen);
			for (int i = 0; i < clen; i++)
				printf("%s%02x", i % 16 ? " " : "\n  ", cfg[i]);
			printf("\n");
		} else {
			printf("config: unreadable (%s)\n", strerror(-clen));
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
		"                        [--device blk]\n"
		"Watches a virtio-blk back-end's capacity (other devices: refused\n"
		"with a message naming the device).\n"
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
		{ "device", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct watch w = { 0 };
	const struct vhu_tool_device *dev;
	uint64_t count = 1;
	double timeout = 30;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "jc:T:d:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': w.json = true; break;
		case 'd':
			dev = vhu_tool_device_arg("watch", optarg);
			if (!dev)
				return EXIT_USAGE;
			if (!dev->blk) {
				/* It prints capacities: another device's config
				 * change would be shown as a nonsense capacity. */
				fprintf(stderr, "vhu watch: follows a virtio-blk "
					"capacity only; --device %s (%s) is not "
					"supported (vhu probe --device %s shows its "
					"config space)\n", dev->name, dev->title,
					dev->name);
				return EXIT_USAGE;
			}
			break;
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
		fprintf(stderr, "vhu watch: %s: back-end lacks the %s protocol feature%s\n",
			path, (pf & VHU_BIT(VHU_PF_CONFIG)) ? "BACKEND_REQ" : "CONFIG",
			(pf & VHU_BIT(VHU_PF_CONFIG)) ? "" :
			" (no config space: vhu watch follows a virtio-blk capacity)");
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
