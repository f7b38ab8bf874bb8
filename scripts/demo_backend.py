#!/usr/bin/env python3
"""A tiny HTTP/1.1 keep-alive backend for trying ringproxy by hand.

Usage: demo_backend.py PORT NAME
GET  /        -> "hello from NAME\n"
POST /echo    -> the request body back
GET  /slow    -> answers after one second
"""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo-backend"

    def _send(self, body, status=200):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(1)
        self._send(f"hello from {self.server.name} ({self.command} {self.path})\n".encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self._send(self.rfile.read(length))

    do_PUT = do_POST

    def log_message(self, *args):
        pass


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.name = name
    server.serve_forever()


if __name__ == "__main__":
    main()
