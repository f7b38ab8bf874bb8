#!/usr/bin/env python3
"""A tiny HTTP/1.1 keep-alive backend for trying ringproxy by hand (Python stdlib only).

Usage: demo_backend.py PORT NAME
GET  /        -> "hello from NAME (GET /)\n"  (any path; HEAD: the same head, no body)
GET  /slow    -> the same, after one second
POST /echo    -> the request body back (Content-Length or chunked; PUT too, any path)

A request body that cannot be framed (Content-Length together with chunked, an invalid
Content-Length, a malformed chunked body) gets 400 and the connection is closed.
"""
import re
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Bounds for what a client can make the demo hold in memory or wait on.
MAX_BODY = 64 * 1024 * 1024
MAX_LINE = 8 * 1024
MAX_TRAILER_LINES = 100

DECIMAL = re.compile(r"[0-9]+")
HEX = re.compile(rb"[0-9A-Fa-f]+")


class BadBody(Exception):
    """The request body has no trustworthy framing: answered with `status`, then closed."""

    def __init__(self, message, status=HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo-backend"
    # Unbuffered, a response leaves in two writes (head, then body) and Nagle holds the second
    # until the client's delayed ACK of the first: about 40 ms per keep-alive request. Buffered,
    # head and body go out in one write (handle_one_request flushes after each request), and
    # without Nagle nothing waits even when they do not fit in one.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def handle_expect_100(self):
        # The buffered writer would hold the interim response back while the client waits
        # for it before sending the body.
        ok = super().handle_expect_100()
        self.wfile.flush()
        return ok

    def do_GET(self):
        if self._body() is None:
            return
        if self.path == "/slow":
            time.sleep(1)
        self._send(f"hello from {self.server.name} (GET {self.path})\n".encode())

    # What a GET would answer, Content-Length included; _send leaves the body out.
    do_HEAD = do_GET

    def do_POST(self):
        body = self._body()
        if body is not None:
            self._send(body)

    do_PUT = do_POST

    def _send(self, body, status=HTTPStatus.OK):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:
            # Also sets close_connection: what follows a body that could not be framed is
            # not a request.
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        """The request body, or None once the request has been answered with an error."""
        try:
            return self._read_body()
        except BadBody as e:
            self._send(f"{e}\n".encode(), e.status)
            return None

    def _read_body(self):
        lengths = [v.strip() for v in self.headers.get_all("Content-Length", [])]
        codings = ",".join(self.headers.get_all("Transfer-Encoding", []))
        if codings:
            if lengths:
                raise BadBody("both Content-Length and Transfer-Encoding")
            if codings.split(",")[-1].strip().lower() != "chunked":
                raise BadBody("Transfer-Encoding does not end with chunked")
            return self._read_chunked()
        if not lengths:
            return b""
        # int() alone would also take "+5", " 5" and "5_0".
        if len(set(lengths)) > 1 or not DECIMAL.fullmatch(lengths[0]):
            raise BadBody("invalid Content-Length")
        length = int(lengths[0])
        if length > MAX_BODY:
            raise BadBody("body too large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return self._read_exactly(length)

    def _read_chunked(self):
        body = bytearray()
        while True:
            size_field = self._read_line().split(b";", 1)[0].strip(b" \t")
            if not HEX.fullmatch(size_field):
                raise BadBody("invalid chunk size")
            size = int(size_field, 16)
            if size == 0:
                break
            if len(body) + size > MAX_BODY:
                raise BadBody("body too large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            body += self._read_exactly(size)
            if self._read_exactly(2) != b"\r\n":
                raise BadBody("chunk data not followed by CRLF")
        # Trailer fields are read to find where the message ends, and dropped.
        for _ in range(MAX_TRAILER_LINES):
            if not self._read_line():
                return bytes(body)
        raise BadBody("too many trailer lines")

    def _read_line(self):
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE or not line.endswith(b"\r\n"):
            raise BadBody("chunked body line too long, truncated or not ended by CRLF")
        return line[:-2]

    def _read_exactly(self, n):
        data = self.rfile.read(n)
        if len(data) < n:
            raise BadBody("body ended early")
        return data

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 refuses connections a proxy opens in a burst.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client that hung up (curl interrupted, the proxy closing a pooled connection) is
        # routine here, not a bug worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} PORT NAME")
    port, name = int(sys.argv[1]), sys.argv[2]
    try:
        server = Server(("127.0.0.1", port), Handler)
    except OSError as e:
        sys.exit(f"demo_backend: {name} cannot listen on 127.0.0.1:{port}: {e.strerror}")
    server.name = name
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
