#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""blkload-gen.py IMAGE GEN: exit 0 when every 4 KiB block of IMAGE is a
blkload block (tests/e2e/guest/blkload.c) of generation GEN holding its own
block number and a good crc32; 1 otherwise (or when IMAGE has no block)."""
import struct
import sys
import zlib

MAGIC = 0x52554856


def main():
    path, gen = sys.argv[1], int(sys.argv[2])
    bad = b = 0
    with open(path, "rb") as f:
        while True:
            blk = f.read(4096)
            if len(blk) < 4096:
                break
            magic, g, num = struct.unpack_from("<IIQ", blk)
            (crc,) = struct.unpack_from("<I", blk, 4092)
            if magic != MAGIC or g != gen or num != b or zlib.crc32(blk[:4092]) != crc:
                bad += 1
            b += 1
    return 1 if bad or b == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
