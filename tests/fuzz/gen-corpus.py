#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).

    tests/fuzz/gen-corpus.py [OUTDIR]

Each seed is a well-formed input in the format documented at the top of
the target's source: a QEMU-like vhost-user handshake for fuzz-msg, small
split rings for fuzz-virtq, virtio-blk requests for fuzz-blk-req.  The
files are committed; rerun this after changing an input format.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------- fuzz-msg
# Request ids and flags (vhost-user.rst, "Message types").
GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM = 15, 16, 17
SET_VRING_ENABLE, SET_BACKEND_REQ_FD, GET_CONFIG, SET_CONFIG = 18, 21, 24, 25
RESET_DEVICE, GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG = 34, 36, 37, 38
SET_STATUS, GET_STATUS = 39, 40
SET_LOG_BASE, SET_LOG_FD = 6, 7
V1, NEED_REPLY = 0x1, 0x8

F_LOG_ALL = 26
F_INDIRECT, F_EVENT_IDX, F_PROTOCOL, F_VERSION_1, F_RING_PACKED = 28, 29, 30, 32, 34
PF = [0, 3, 5, 9, 13, 15, 16]  # MQ REPLY_ACK BACKEND_REQ CONFIG RESET CONFIGURE_MEM_SLOTS STATUS

UVA = 0x7F0000000000
MEM_SIZE = 0x10000          # the target's memfd size
CFG_SIZE = 60


def bits(*b):
    v = 0
    for x in b:
        v |= 1 << x
    return v


def rec(req, payload=b"", flags=V1, nfds=0, kind=0, size=None):
    """size: a header size larger than the payload makes the record a
    truncated final message."""
    truncate = size is not None and size > len(payload)
    ctl = nfds | kind << 4 | (0x40 if truncate else 0)
    hsize = len(payload) if size is None else size
    return bytes([ctl]) + struct.pack("<III", req, flags, hsize) + payload


def memrec(off, data):
    out = b""
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        out += bytes([0x80]) + struct.pack("<HB", off + i, len(chunk)) + chunk
    return out


def event(what, extra=b""):
    """An event record: 0 config change (| 4: want an ack), 1 front-end
    answer on the back-end channel, 2 kick (| 4: queue 1), 3 process."""
    return bytes([0xC0, what]) + extra


def u64(v):
    return struct.pack("<Q", v)


def state(i, n):
    return struct.pack("<II", i, n)


def region(gpa, size, uva, off):
    return struct.pack("<QQQQ", gpa, size, uva, off)


def ring_base(q):
    return q * 0x4000


def ring_image():
    """Queue 0 holds one request: header (out), data (in), status (in)."""
    desc = struct.pack("<QIHH", 0x8000, 16, 1, 1)
    desc += struct.pack("<QIHH", 0x8100, 512, 3, 2)
    desc += struct.pack("<QIHH", 0x8400, 1, 2, 0)
    avail = struct.pack("<HHH", 0, 1, 0)
    hdr = struct.pack("<IIQ", 0, 0, 0)
    return (memrec(ring_base(0), desc) + memrec(ring_base(0) + 0x1000, avail) +
            memrec(0x8000, hdr))


def vring_setup(q, size=64, fl=V1, base=0):
    b = ring_base(q)
    addr = struct.pack("<IIQQQQ", q, 0, UVA + b, UVA + b + 0x2000,
                       UVA + b + 0x1000, 0)
    return (rec(SET_VRING_NUM, state(q, size), fl) +
            rec(SET_VRING_BASE, state(q, base), fl) +
            rec(SET_VRING_ADDR, addr, fl) +
            rec(SET_VRING_KICK, u64(q), fl, nfds=1) +
            rec(SET_VRING_CALL, u64(q), fl, nfds=1) +
            rec(SET_VRING_ENABLE, state(q, 1), fl))


def packed_ring_image():
    """Queue 0 as a packed ring (virtio 1.2, 2.8): the same request in
    descriptors 0-2, AVAIL set (wrap counters start at 1), buffer id 0."""
    desc = struct.pack("<QIHH", 0x8000, 16, 0, 0x80 | 1)
    desc += struct.pack("<QIHH", 0x8100, 512, 0, 0x80 | 3)
    desc += struct.pack("<QIHH", 0x8400, 1, 0, 0x80 | 2)
    return memrec(ring_base(0), desc) + memrec(0x8000, struct.pack("<IIQ", 0, 0, 0))


def handshake(fl=V1, backend_channel=False, status=False, packed=False):
    feats = bits(F_VERSION_1, F_PROTOCOL, F_INDIRECT, F_EVENT_IDX)
    if packed:
        feats |= bits(F_RING_PACKED)
    s = packed_ring_image() if packed else ring_image()
    s += rec(GET_FEATURES)
    s += rec(GET_PROTOCOL_FEATURES)
    s += rec(SET_PROTOCOL_FEATURES, u64(bits(*PF)), fl)
    s += rec(GET_QUEUE_NUM)
    if backend_channel:
        s += rec(SET_BACKEND_REQ_FD, b"", fl, nfds=1)
    s += rec(SET_OWNER, b"", fl)
    s += rec(GET_CONFIG, struct.pack("<III", 0, CFG_SIZE, 0) + bytes(CFG_SIZE))
    s += rec(SET_FEATURES, u64(feats), fl)
    s += rec(SET_MEM_TABLE, struct.pack("<II", 1, 0) +
             region(0, MEM_SIZE, UVA, 0), fl, nfds=1)
    for q in (0, 1):
        # Packed SET_VRING_BASE: both wrap counters (bits 15, 31) at 1.
        s += vring_setup(q, size=60 if packed else 64, fl=fl,
                         base=0x80008000 if packed else 0)
    if status:
        s += rec(SET_STATUS, u64(0xF), fl)
        s += rec(GET_STATUS)
    s += rec(SET_CONFIG, struct.pack("<III", 32, 1, 0) + b"\x01", fl | NEED_REPLY)
    s += rec(GET_CONFIG, struct.pack("<III", 32, 1, 0) + b"\x00")
    if backend_channel:
        # The device announces a config change and wants an ack; the
        # front-end re-reads the config, then acks on the channel.
        s += event(0 | 4)
        s += rec(GET_CONFIG, struct.pack("<III", 0, CFG_SIZE, 0) + bytes(CFG_SIZE))
        s += event(1, struct.pack("<IIQ", 2, 0x5, 0))
        s += event(0)
        s += event(2) + event(2 | 4) + event(3)
    s += rec(GET_VRING_BASE, state(0, 0))
    s += rec(GET_VRING_BASE, state(1, 0))
    return s


def migrate(packed=False):
    """Dirty logging as QEMU starts and cancels it (project notes,
    section 7): the log, LOG_ALL, the rings' LOG flag, requests served
    meanwhile, then everything switched off."""
    feats = bits(F_VERSION_1, F_PROTOCOL, F_EVENT_IDX)
    if packed:
        feats |= bits(F_RING_PACKED)
    s = packed_ring_image() if packed else ring_image()
    s += rec(GET_FEATURES) + rec(GET_PROTOCOL_FEATURES)
    s += rec(SET_PROTOCOL_FEATURES, u64(bits(1, *PF)))
    s += rec(SET_FEATURES, u64(feats))
    s += rec(SET_MEM_TABLE, struct.pack("<II", 1, 0) +
             region(0, MEM_SIZE, UVA, 0), nfds=1)
    s += vring_setup(0, size=60 if packed else 64,
                     base=0x80008000 if packed else 0)
    s += rec(SET_LOG_BASE, struct.pack("<QQ", 64, 4096), nfds=1)
    s += rec(SET_LOG_FD, b"", nfds=1)
    s += rec(SET_FEATURES, u64(feats | bits(F_LOG_ALL)), V1 | NEED_REPLY)
    b = ring_base(0)
    log_gpa = b + 0x1000 if packed else b + 0x2000
    s += rec(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 1, UVA + b, UVA + b + 0x2000,
                                         UVA + b + 0x1000, log_gpa), V1 | NEED_REPLY)
    s += event(2) + event(3)
    s += rec(SET_LOG_BASE, struct.pack("<QQ", 16, 0), nfds=1)
    s += rec(SET_FEATURES, u64(feats), V1 | NEED_REPLY)
    s += rec(GET_VRING_BASE, state(0, 0))
    return s


def msg_seeds():
    feats = bits(F_VERSION_1, F_PROTOCOL)
    yield "migrate-log", migrate()
    yield "migrate-log-packed", migrate(packed=True)
    yield "handshake", handshake()
    yield "handshake-packed", handshake(packed=True)
    yield "handshake-reply-ack", handshake(V1 | NEED_REPLY, backend_channel=True,
                                           status=True)
    slots = (rec(GET_FEATURES) + rec(GET_PROTOCOL_FEATURES) +
             rec(SET_PROTOCOL_FEATURES, u64(bits(*PF))) +
             rec(SET_FEATURES, u64(feats)) + rec(GET_MAX_MEM_SLOTS) +
             rec(ADD_MEM_REG, u64(0) + region(0, MEM_SIZE, UVA, 0), nfds=1) +
             vring_setup(0) +
             rec(REM_MEM_REG, u64(0) + region(0, MEM_SIZE, UVA, 0)) +
             rec(RESET_DEVICE) + rec(GET_STATUS))
    yield "mem-slots", ring_image() + slots
    legacy = (rec(GET_FEATURES) + rec(SET_OWNER) +
              rec(SET_FEATURES, u64(bits(F_VERSION_1))) +
              rec(SET_MEM_TABLE, struct.pack("<II", 1, 0) +
                  region(0, MEM_SIZE, UVA, 0), nfds=1) +
              vring_setup(0)[:-len(rec(SET_VRING_ENABLE, state(0, 1)))] +
              rec(GET_VRING_BASE, state(0, 0)) + rec(RESET_OWNER))
    yield "no-protocol-features", ring_image() + legacy
    # Each refusal ends a connected session, so one per seed.
    refusals = {
        "id-0": rec(0), "id-unknown": rec(99),
        "reply-flag": rec(SET_OWNER, b"", 0x5),
        "vring-index": rec(SET_VRING_NUM, state(300, 64)),
        "vring-num-odd": rec(SET_VRING_NUM, state(0, 100)),
        "kick-nofd-bit": rec(SET_VRING_KICK, u64(0x100)),
        "config-beyond": rec(GET_CONFIG, struct.pack("<III", 40, 30, 0) + bytes(30)),
        "config-readonly": rec(SET_CONFIG, struct.pack("<III", 0, 4, 0) + bytes(4)),
        # Windows that include the writable byte 32 and a read-only one.
        "config-readonly-after": rec(SET_CONFIG, struct.pack("<III", 32, 2, 0) + bytes(2)),
        "config-readonly-before": rec(SET_CONFIG, struct.pack("<III", 31, 2, 0) + bytes(2)),
        "config-flags-unknown": rec(SET_CONFIG, struct.pack("<III", 32, 1, 2) + b"\x01"),
        "memtable-9": rec(SET_MEM_TABLE, struct.pack("<II", 9, 0) +
                          region(0, MEM_SIZE, UVA, 0) * 8, nfds=8),
        "log-no-fd": rec(SET_LOG_BASE, struct.pack("<QQ", 64, 0)),
        "log-two-fds": rec(SET_LOG_BASE, struct.pack("<QQ", 64, 0), nfds=2),
        "log-size-8": rec(SET_LOG_BASE, u64(64), nfds=1),
        "log-beyond-fd": rec(SET_LOG_BASE, struct.pack("<QQ", 64, MEM_SIZE), nfds=1),
        "log-offset-wraps": rec(SET_LOG_BASE, struct.pack("<QQ", 64, (1 << 64) - 8),
                                nfds=1),
        "memtable-too-big": rec(SET_MEM_TABLE, struct.pack("<II", 1, 0) +
                                region(0, MEM_SIZE * 2, UVA, 0), nfds=1),
    }
    pre = (rec(GET_FEATURES) + rec(GET_PROTOCOL_FEATURES) +
           rec(SET_PROTOCOL_FEATURES, u64(bits(1, *PF))) +
           rec(SET_FEATURES, u64(feats)))
    for name, r in refusals.items():
        yield "refuse-" + name, pre + r + rec(GET_FEATURES)
    # A migration restore may write every byte.
    yield "config-migration", pre + rec(SET_CONFIG, struct.pack("<III", 0, CFG_SIZE, 1) +
                                        bytes(range(CFG_SIZE))) + \
        rec(GET_CONFIG, struct.pack("<III", 0, CFG_SIZE, 0) + bytes(CFG_SIZE))
    yield "truncated", rec(GET_FEATURES) + rec(SET_MEM_TABLE, b"\x01\x00\x00\x00",
                                               size=40)
    yield "fds-on-get", rec(GET_FEATURES, b"", V1, nfds=3) + rec(GET_QUEUE_NUM)


# ----------------------------------------------------------- fuzz-virtq
GPA_A, REGION = 0x10000, 0x8000
GPA_END = GPA_A + 2 * REGION
NEXT, WRITE, INDIRECT = 1, 2, 4


def ring_sizes(size, packed=False):
    if packed:
        return 16 * size, 4, 4
    return 16 * size, 6 + 2 * size, 6 + 8 * size


def ring_layout(size, layout, packed=False):
    """0: rings at the start of region A; 1: one exact-size region per
    ring; 2: rings at the end of region B."""
    db, ab, ub = ring_sizes(size, packed)
    if layout == 1:
        return 0x40000, 0x50000, 0x60000
    if layout == 2:
        used = (GPA_END - ub) & ~3
        avail = (used - ab) & ~1
        desc = (avail - db) & ~15
    else:
        desc = GPA_A
        avail = desc + db
        used = (avail + ab + 3) & ~3
    return desc, avail, used


def virtq_input(size_log, flags, cap, base, ops, descs, heads, extra=None):
    """descs: {index: (addr, len, flags, next)} (packed: (addr, len, id,
    flags)); heads: avail ring entries (split only); extra: {gpa: bytes}
    placed in the image."""
    packed = bool(flags & 16)
    size = 1 + (size_log & 0x7F) if packed and size_log & 0x80 else 8 << (size_log % 6)
    layout = (flags >> 2) % 3
    desc, avail, used = ring_layout(size, layout, packed)
    db, ab, ub = ring_sizes(size, packed)
    img = bytearray()
    # The image runs through guest memory in gpa order from the table
    # on, then from the lowest address up to the table (as fz_fill()).
    regions = [(GPA_A, REGION), (GPA_A + REGION, REGION)]
    if layout == 1:
        regions += [(desc, db), (avail, ab), (used, ub)]
    regions.sort()
    segs = [(max(lo, desc), lo + n) for lo, n in regions if max(lo, desc) < lo + n]
    segs += [(lo, min(lo + n, desc)) for lo, n in regions if lo < min(lo + n, desc)]

    def put(gpa, data):
        off = 0
        for a, b in segs:
            if a <= gpa < b:
                off += gpa - a
                break
            off += b - a
        else:
            raise ValueError("gpa 0x%x not mapped" % gpa)
        if len(img) < off + len(data):
            img.extend(bytes(off + len(data) - len(img)))
        img[off:off + len(data)] = data

    for i, d in descs.items():
        put(desc + 16 * i, struct.pack("<QIHH", *d))
    if not packed:
        put(avail, struct.pack("<HH", 0, (base + len(heads)) & 0xFFFF))
        for k, h in enumerate(heads):
            put(avail + 4 + 2 * ((base + k) % size), struct.pack("<H", h))
    put(used, bytes(4))
    for gpa, data in (extra or {}).items():
        put(gpa, data)
    hdr = bytes([flags, size_log, cap - 1, len(ops)]) + struct.pack("<H", base)
    return hdr + b"".join(bytes(o) for o in ops) + bytes(img)


def virtq_seeds():
    blk = {0: (0x11000, 16, NEXT, 1), 1: (0x11100, 512, WRITE | NEXT, 2),
           2: (0x11400, 1, WRITE, 0),
           3: (0x17FF0, 0x20, NEXT, 4), 4: (0x11500, 1, WRITE, 0)}
    yield "two-chains", virtq_input(0, 0, 16, 0, [], blk, [0, 3])
    yield "wrap", virtq_input(0, 2, 16, 0xFFFE, [], blk, [3, 0])
    size = 16
    desc, avail, used = ring_layout(size, 0)
    table = (struct.pack("<QIHH", 0x11000, 16, NEXT, 1) +
             struct.pack("<QIHH", 0x11100, 4096, WRITE | NEXT, 2) +
             struct.pack("<QIHH", 0x12100, 1, WRITE, 0))
    ind = {0: (0x10600, len(table), INDIRECT, 0), 1: (0x11000, 16, 0, 0)}
    yield "indirect", virtq_input(1, 1, 16, 0, [], ind, [0, 1],
                                  {0x10600: table})
    ops = [(0, 1, 0, 2), (0, 1, 0, 0), (4, 2, 0, 0), (1, 1, 0, 0), (4, 0, 0, 0),
           (2, 1, 0, 0), (4, 3, 0, 0), (5, 0, 0, 0)]
    yield "ops-event-idx", virtq_input(0, 3, 16, 7, ops, blk, [0, 3])
    yield "end-of-b", virtq_input(3, 8 | 2, 4, 0, [(0, 0, 0, 0)], blk, [0, 3])
    yield "ring-regions", virtq_input(2, 4 | 1, 16, 0, [], blk, [0, 3])
    yield "ring-regions-256", virtq_input(5, 4 | 2, 8, 0, [(0, 0, 0, 0)], blk, [0, 3])
    yield "too-small-cap", virtq_input(0, 0, 2, 0, [], blk, [0])

    # Packed rings (virtio 1.2, 2.8): both wrap counters start at 1, so an
    # available descriptor has AVAIL set and USED clear; a chain's buffer
    # id is in its last descriptor.
    A = 0x80
    pk = {0: (0x11000, 16, 0, A | NEXT), 1: (0x11100, 512, 0, A | WRITE | NEXT),
          2: (0x11400, 1, 0, A | WRITE),
          3: (0x17FF0, 0x20, 0, A | NEXT), 4: (0x11500, 1, 1, A | WRITE)}
    yield "packed", virtq_input(0, 16, 16, 0x8000, [], pk, [])
    yield "packed-size-5-regions", virtq_input(0x80 | 4, 16 | 4 | 2, 16, 0x8000,
                                               [(0, 1, 0, 0), (1, 0, 0, 0),
                                                (4, 2, 0, 0), (4, 0, 0, 0)], pk, [])
    # An indirect table of packed descriptors: consecutive, no NEXT.
    ptable = (struct.pack("<QIHH", 0x11000, 16, 0, 0) +
              struct.pack("<QIHH", 0x11100, 4096, 0, WRITE) +
              struct.pack("<QIHH", 0x12100, 1, 0, WRITE))
    pk_ind = {0: (0x10600, len(ptable), 7, A | INDIRECT)}
    yield "packed-indirect", virtq_input(1, 16 | 8 | 1, 16, 0x8000, [], pk_ind, [],
                                         {0x10600: ptable})


# --------------------------------------------------------- fuzz-blk-req
def blk_input(outs, ins, cap=16, lf=0, capacity=1 << 20, max_dseg=32,
              max_wzseg=32, max_dsec=1 << 22, max_wzsec=1 << 22, done=0):
    bufs = outs + ins
    s = bytes([len(outs), len(ins), cap - 1, lf]) + struct.pack("<Q", capacity)
    s += bytes([max_dseg, max_wzseg]) + struct.pack("<III", max_dsec, max_wzsec, done)
    s += b"".join(struct.pack("<H", len(b)) for b in bufs)
    return s + b"".join(bufs)


def bhdr(t, sector):
    return struct.pack("<IIQ", t, 0, sector)


def blk_seeds():
    yield "in", blk_input([bhdr(0, 8)], [bytes(512), b"\xff"], done=512)
    yield "out", blk_input([bhdr(1, 16), bytes(512)], [b"\xff"])
    yield "out-split-header", blk_input([bhdr(1, 0)[:7], bhdr(1, 0)[7:] + bytes(512)],
                                        [b"\xff"])
    yield "in-4k", blk_input([bhdr(0, 8)], [bytes(512), bytes(512), b"\xff"], lf=2)
    yield "flush", blk_input([bhdr(4, 0)], [b"\xff"])
    yield "get-id", blk_input([bhdr(8, 0)], [bytes(20), b"\xff"], done=20)
    seg = struct.pack("<QII", 64, 8, 0)
    yield "discard", blk_input([bhdr(11, 0) + seg], [b"\xff"])
    yield "write-zeroes", blk_input([bhdr(13, 0), struct.pack("<QII", 0, 16, 1) + seg],
                                    [b"\xff"])
    yield "read-only-out", blk_input([bhdr(1, 0), bytes(512)], [b"\xff"], lf=1)
    yield "status-only", blk_input([bhdr(0, 0)], [b"\x00"])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    for target, seeds in (("fuzz-msg", msg_seeds), ("fuzz-virtq", virtq_seeds),
                          ("fuzz-blk-req", blk_seeds)):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
