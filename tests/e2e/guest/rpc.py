#!/usr/bin/env python3
"""Small clients for the e2e scripts.

  rpc.py jsonrpc SOCKET METHOD [PARAMS_JSON] [--get KEY]
      One JSON-RPC 2.0 request over a unix stream socket, one JSON object
      per line each way.  Prints the "result" member as JSON, or with
      --get the first value found under KEY anywhere inside the result.
      Exit status 1 on an "error" reply, a transport error or a timeout.

  rpc.py qmp SOCKET COMMAND [ARGS_JSON]
      One QMP command (after the capabilities handshake); prints "return".
"""
import json
import socket
import sys

TIMEOUT = 10.0


def find_key(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return True, obj[key]
        for v in obj.values():
            found, val = find_key(v, key)
            if found:
                return True, val
    elif isinstance(obj, list):
        for v in obj:
            found, val = find_key(v, key)
            if found:
                return True, val
    return False, None


class LineSocket:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("peer closed the connection")
            self.buf += chunk
            if len(self.buf) > 1 << 20:
                raise ValueError("reply line too long")
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def jsonrpc(path, method, params, get):
    s = LineSocket(path)
    req = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        req["params"] = params
    s.send(req)
    while True:
        rep = s.recv()
        if rep.get("id") == 1:
            break
    if "error" in rep:
        print(json.dumps(rep["error"]), file=sys.stderr)
        return 1
    res = rep.get("result")
    if get:
        found, val = find_key(res, get)
        if not found:
            print("key %r not in result %s" % (get, json.dumps(res)),
                  file=sys.stderr)
            return 1
        res = val
    print(json.dumps(res))
    return 0


def qmp(path, command, args):
    s = LineSocket(path)
    s.recv()  # greeting
    s.send({"execute": "qmp_capabilities"})
    while "return" not in s.recv():
        pass
    req = {"execute": command}
    if args is not None:
        req["arguments"] = args
    s.send(req)
    while True:
        rep = s.recv()
        if "error" in rep:
            print(json.dumps(rep["error"]), file=sys.stderr)
            return 1
        if "return" in rep:
            print(json.dumps(rep["return"]))
            return 0


def main(argv):
    get = None
    if "--get" in argv:
        i = argv.index("--get")
        if i + 1 >= len(argv):
            print(__doc__, file=sys.stderr)
            return 2
        get = argv[i + 1]
        del argv[i:i + 2]
    if len(argv) < 4 or argv[1] not in ("jsonrpc", "qmp"):
        print(__doc__, file=sys.stderr)
        return 2
    params = json.loads(argv[4]) if len(argv) > 4 else None
    try:
        if argv[1] == "jsonrpc":
            return jsonrpc(argv[2], argv[3], params, get)
        return qmp(argv[2], argv[3], params)
    except (OSError, ValueError, ConnectionError) as e:
        print("rpc: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
