/* SPDX-License-Identifier: MIT */
/*
 * probe: connect to any vhost-user back-end as a front-end and print what
 * it offers: virtio features, protocol features, queues, memory slots and
 * its config space.  Built on libvhu's public front-end API alone.
 *
 *   probe /tmp/ramdisk.sock [blk]
 *
 * vhost-user does not say which device a back-end is, nor how large its
 * config space is: this reads the largest prefix the back-end accepts and
 * prints it in hex; told the device is a block device ("blk"), it also
 * prints what the first 8 bytes mean there (the capacity).  It never
 * negotiates features or sets up queues.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <vhu/frontend.h>
#include <vhu/vhu.h>

/* List the bits of mask by name (numbers for bits the library cannot name,
 * such as device-specific ones). */
static void print_bits(const char *title, uint64_t mask, bool protocol)
{
	printf("%s: 0x%" PRIx64 "\n", title, mask);
	for (unsigned bit = 0; bit < 64; bit++) {
		if (!(mask & VHU_BIT(bit)))
			continue;
		const char *name = protocol ? vhu_protocol_feature_name(bit)
					    : vhu_feature_name(bit);
		if (name)
			printf("  %s\n", name);
		else
			printf("  bit %u\n", bit);
	}
}

/* Read the config space from offset 0: the largest size the back-end
 * answers.  A back-end refuses a range past its end with an error reply
 * (-EIO) and keeps the connection; anything else ends the search. */
static int read_config(struct vhu_fe *fe, uint8_t *buf)
{
	static const uint32_t sizes[] = { 256, 128, 96, 64, 60, 40, 32, 16, 8 };
	int r = -EIO;

	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		r = vhu_fe_get_config(fe, 0, buf, sizes[i]);
		if (r == 0)
			return (int)sizes[i];
		if (r != -EIO)
			break;
	}
	return r;
}

int main(int argc, char **argv)
{
	bool blk = argc == 3 && strcmp(argv[2], "blk") == 0;
	if (argc != 2 && !blk) {
		fprintf(stderr, "usage: %s SOCKET [blk]\n"
			"Print what the vhost-user back-end on SOCKET offers "
			"(blk: decode its config space as virtio-blk's).\n", argv[0]);
		return 2;
	}

	/* Wait up to 2 s for a back-end that is still starting. */
	struct vhu_fe_opts opts = { .connect_timeout_ms = 2000 };
	struct vhu_fe *fe;
	int r = vhu_fe_connect(&fe, argv[1], &opts);
	if (r < 0) {
		fprintf(stderr, "probe: %s: %s\n", argv[1], strerror(-r));
		return 1;
	}

	print_bits("features", vhu_fe_features_offered(fe), false);
	print_bits("protocol features", vhu_fe_protocol_features_offered(fe), true);
	printf("queues: %u\n", vhu_fe_queue_num(fe));
	printf("memory slots: %u\n", vhu_fe_max_mem_slots(fe));

	int ret = 0;
	if (!(vhu_fe_protocol_features(fe) & VHU_BIT(VHU_PF_CONFIG))) {
		printf("config: not offered\n");
	} else {
		uint8_t cfg[256];
		int len = read_config(fe, cfg);
		if (len < 0) {
			printf("config: unavailable (%s)\n", strerror(-len));
			ret = 1;
		} else {
			printf("config: %d bytes\n", len);
			for (int i = 0; i < len; i++)
				printf("%s%02x", i % 16 == 0 ? (i ? "\n  " : "  ") : " ", cfg[i]);
			printf("\n");
			uint64_t cap = 0;
			for (int i = 7; i >= 0; i--)   /* little-endian u64 */
				cap = cap << 8 | cfg[i];
			if (blk && len >= 8)
				printf("as virtio-blk: capacity %" PRIu64 " sectors (%"
				       PRIu64 " bytes)\n", cap, cap * 512);
		}
	}
	vhu_fe_close(fe);
	return ret;
}
