#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Record exactly what a vhost-user-blk back-end sends when its disk is
resized: the raw CONFIG_CHANGE_MSG header (request, flags, size, fds) on
the back-end channel, and what GET_CONFIG returns afterwards.

    cfgchange.py SOCKET QMP_SOCKET NEW_SIZE [--no-reply-ack] [--timeout S]

A minimal front-end speaking the wire format of vhost-user.rst directly,
independent of libvhu, so that the test can tell the peer's behaviour
apart from the library's.  Negotiates CONFIG, BACKEND_REQ and (unless
--no-reply-ack) REPLY_ACK, hands over the back-end channel, reads the
capacity, issues QMP block_resize and waits for the channel.  When the
message asks for a reply (NEED_REPLY) it acks with 0.  Prints one JSON
object; exit 0 when the exchange completed (message or timeout), 1 on
a protocol error.
"""
import array
import json
import select
import socket
import struct
import sys
import time

VERSION, REPLY, NEED_REPLY = 0x1, 0x4, 0x8
GET_FEATURES, SET_FEATURES, SET_OWNER = 1, 2, 3
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES = 15, 16
SET_BACKEND_REQ_FD, GET_CONFIG = 21, 24
F_REPLY_ACK, F_BACKEND_REQ, F_CONFIG = 3, 5, 9
F_VERSION_1, F_PROTOCOL_FEATURES = 32, 30
CONFIG_CHANGE_MSG = 2
CFG_LEN = 60  # virtio-blk config up to and including write_zeroes fields


def recv_exact(s, n, deadline):
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            raise TimeoutError("no reply")
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


def recv_msg(s, timeout):
    """One message: (request, flags, payload, nfds)."""
    deadline = time.monotonic() + timeout
    if not select.select([s], [], [], timeout)[0]:
        raise TimeoutError("no message")
    fds = array.array("i")
    hdr, anc, _, _ = s.recvmsg(12, socket.CMSG_SPACE(8 * 4))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % 4])
    if len(hdr) == 0:
        raise ConnectionError("peer closed")
    hdr += recv_exact(s, 12 - len(hdr), deadline)
    req, flags, size = struct.unpack("<III", hdr)
    payload = recv_exact(s, size, deadline) if size else b""
    for fd in fds:
        socket.close(fd)
    return req, flags, payload, len(fds)


def send_msg(s, req, payload=b"", flags=VERSION, fds=None):
    data = struct.pack("<III", req, flags, len(payload)) + payload
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    s.sendmsg([data], anc)


def call(s, req, payload=b"", fds=None):
    send_msg(s, req, payload, fds=fds)
    r, flags, pl, _ = recv_msg(s, 5)
    if r != req or not flags & REPLY:
        raise ValueError("reply to %d: request %d flags 0x%x" % (req, r, flags))
    return pl


def get_capacity(s):
    pl = call(s, GET_CONFIG, struct.pack("<III", 0, CFG_LEN, 0) + bytes(CFG_LEN))
    off, size, _ = struct.unpack_from("<III", pl)
    if size < 8 or len(pl) < 12 + 8:
        raise ValueError("GET_CONFIG reply of %d bytes (size field %d)" % (len(pl), size))
    return struct.unpack_from("<Q", pl, 12)[0]


def qmp(path, cmd, args):
    q = socket.socket(socket.AF_UNIX)
    q.connect(path)
    f = q.makefile("rw")
    f.readline()
    for c in ({"execute": "qmp_capabilities"}, {"execute": cmd, "arguments": args}):
        f.write(json.dumps(c) + "\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "return" in r or "error" in r:
                break
        if "error" in r:
            raise RuntimeError("QMP %s: %s" % (c["execute"], r["error"]))
    q.close()


def main():
    argv = [a for a in sys.argv[1:] if not a.startswith("--")]
    reply_ack = "--no-reply-ack" not in sys.argv
    timeout = 3.0
    if "--timeout" in sys.argv:
        timeout = float(sys.argv[sys.argv.index("--timeout") + 1])
        argv.remove(sys.argv[sys.argv.index("--timeout") + 1])
    sock, qmp_path, new_size = argv[0], argv[1], int(argv[2])
    out = {"reply_ack_negotiated": reply_ack}
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    feats = struct.unpack("<Q", call(s, GET_FEATURES))[0]
    send_msg(s, SET_OWNER)
    pf = struct.unpack("<Q", call(s, GET_PROTOCOL_FEATURES))[0]
    want = (1 << F_CONFIG) | (1 << F_BACKEND_REQ) | ((1 << F_REPLY_ACK) if reply_ack else 0)
    if pf & want != want:
        out["error"] = "back-end lacks protocol features 0x%x" % (want & ~pf)
        print(json.dumps(out))
        return 1
    send_msg(s, SET_PROTOCOL_FEATURES, struct.pack("<Q", want))
    # The driver's features: VERSION_1 and PROTOCOL_FEATURES only.
    send_msg(s, SET_FEATURES, struct.pack("<Q", feats & ((1 << F_VERSION_1) | (1 << F_PROTOCOL_FEATURES))))
    fe_end, be_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    send_msg(s, SET_BACKEND_REQ_FD, struct.pack("<Q", 0), fds=[be_end.fileno()])
    be_end.close()
    out["capacity_before"] = get_capacity(s)
    qmp(qmp_path, "block_resize", {"node-name": "disk0", "size": new_size})
    t0 = time.monotonic()
    try:
        req, flags, pl, nfds = recv_msg(fe_end, timeout)
    except TimeoutError:
        out["message"] = None
    else:
        out["message"] = {"request": req, "flags": flags,
                          "need_reply": bool(flags & NEED_REPLY),
                          "size": len(pl), "fds": nfds,
                          "after_s": round(time.monotonic() - t0, 3)}
        if flags & NEED_REPLY:
            send_msg(fe_end, req, struct.pack("<Q", 0), flags=VERSION | REPLY)
    out["capacity_after"] = get_capacity(s)
    # The connection is still usable: one more request round-trips.
    out["features_after"] = struct.unpack("<Q", call(s, GET_FEATURES))[0] == feats
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, RuntimeError, struct.error, IndexError) as e:
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
        sys.exit(1)
