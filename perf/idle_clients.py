#!/usr/bin/env python3
"""Opens N keep-alive connections to a proxy, makes one request on each, and holds them idle.

    perf/idle_clients.py --port PORT --count N [--path /12b] [--batch 256]

At most --batch connections are connecting or waiting for their answer at a time, so the
backend sees a bounded burst. When every connection has had its whole response, prints
"held N" and waits; SIGTERM or SIGINT closes them all at once (the process exits).
Used by perf/idle-memory.sh; any failure exits with status 1 and says why.
"""

import argparse
import errno
import selectors
import signal
import socket
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--path", default="/12b")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for all of them")
    return parser.parse_args()


class Conn:
    """One connection's request, and the response received so far."""

    def __init__(self, sock, request):
        self.sock = sock
        self.unsent = request
        self.received = b""

    def response_complete(self):
        head_end = self.received.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = self.received[:head_end].decode("latin-1").lower()
        if not head.startswith("http/1.1 200"):
            raise RuntimeError(f"unexpected response: {head.splitlines()[0]!r}")
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip() == "content-length":
                return len(self.received) - head_end - 4 >= int(value)
        raise RuntimeError("response without Content-Length")


def open_one(sel, args, request):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    code = sock.connect_ex((args.host, args.port))
    if code not in (0, errno.EINPROGRESS):
        raise OSError(code, f"connect: {errno.errorcode.get(code, code)}")
    conn = Conn(sock, request)
    sel.register(sock, selectors.EVENT_WRITE, conn)


def step(sel, key, mask):
    """Advances one connection; True once its response is complete."""
    conn = key.data
    if mask & selectors.EVENT_WRITE:
        code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"connect: {errno.errorcode.get(code, code)}")
        sent = conn.sock.send(conn.unsent)
        conn.unsent = conn.unsent[sent:]
        if not conn.unsent:
            sel.modify(conn.sock, selectors.EVENT_READ, conn)
        return False
    chunk = conn.sock.recv(65536)
    if not chunk:
        raise RuntimeError("connection closed before its response")
    conn.received += chunk
    if not conn.response_complete():
        return False
    sel.unregister(conn.sock)
    return True


def main():
    args = parse_args()
    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    held = []
    opened = 0
    in_flight = 0
    deadline = time.monotonic() + args.timeout
    try:
        while len(held) < args.count:
            while in_flight < args.batch and opened < args.count:
                open_one(sel, args, request)
                opened += 1
                in_flight += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(held)} of {args.count} answered in {args.timeout} s")
            for key, mask in sel.select(timeout=1.0):
                if step(sel, key, mask):
                    held.append(key.data.sock)
                    in_flight -= 1
    except (OSError, RuntimeError) as err:
        print(f"idle_clients: after {len(held)} held: {err}", file=sys.stderr)
        return 1
    print(f"held {len(held)}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
