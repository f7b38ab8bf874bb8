#!/usr/bin/env python3
"""Opens N keep-alive TLS (or plain) connections one after the other, makes one request on
each, reads its whole answer, prints "held N" and holds them idle for S seconds.

    perf/idle_tls_clients.py --port PORT --count N [--plain] [--hold S] [--path /]

Sequential and blocking: simple, and a few thousand handshakes take seconds. Certificates
are not verified (a test certificate is expected). Used by hand for the TLS idle-memory
figures in perf/2026-12-07-tls-idle-memory.md.
"""
import argparse
import socket
import ssl
import sys
import time


def response_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError("response without Content-Length")


def one(args, context):
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname=args.name)
    sock.sendall(f"GET {args.path} HTTP/1.1\r\nHost: {args.name}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    while len(body) < response_length(head):
        body += sock.recv(65536)
    return sock


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--path", default="/")
    parser.add_argument("--name", default="a.test")
    args = parser.parse_args()
    context = None
    if not args.plain:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        held = [one(args, context) for _ in range(args.count)]
    except (OSError, RuntimeError) as err:
        print(f"idle_tls_clients: {err}", file=sys.stderr)
        return 1
    print(f"held {len(held)}", flush=True)
    time.sleep(args.hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
