#!/usr/bin/env python3
"""Does a proxy pay a pure ACK per backend response, and can it avoid it?

A client (the proxy's side of a backend connection) sends a request; the server answers
with a head and a body in two small segments (nginx serving a file with sendfile does
this). Reading the answer empties the receive queue after two pushed segments, so Linux
acks at once from the read (ICSK_ACK_PUSHED2 in __tcp_cleanup_rbuf). Peeking at the answer
instead (MSG_PEEK leaves the queue non-empty) and discarding it only after the next request
went out lets that request carry the ACK. Counts TCP segments per exchange from
/proc/net/snmp (all sockets: run it on a quiet machine).

    python3 perf/experiments/ack_piggyback.py [BODY_BYTES]
"""

import socket
import sys
import threading

EXCHANGES = 20000
HEAD = 240


def out_segments():
    with open("/proc/net/snmp") as snmp:
        rows = [line.split() for line in snmp if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("OutSegs")])


def serve(listener, body):
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while conn.recv(100):
            conn.send(b"H" * HEAD)
            conn.send(b"B" * body)
    except OSError:
        pass  # the client closed with an answer unread
    conn.close()


def run(peek, body):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    threading.Thread(target=serve, args=(listener, body), daemon=True).start()
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    answer = HEAD + body
    unread = 0
    before = out_segments()
    for _ in range(EXCHANGES):
        client.send(b"GET / HTTP/1.1\r\n\r\n")
        if unread:
            client.recv(unread)  # the previous answer, after the request carried the ACK
        got = 0
        while got < answer:
            if peek:
                got = len(client.recv(65536, socket.MSG_PEEK))
            else:
                got += len(client.recv(65536))
        unread = answer if peek else 0
    segments = (out_segments() - before) / EXCHANGES
    client.close()
    listener.close()
    return segments


def main():
    body = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    print(f"{HEAD} B head + {body} B body in two segments, segments per exchange:")
    print(f"  read (drains the queue):           {run(False, body):.2f}")
    print(f"  peek, discard after next request:  {run(True, body):.2f}")


if __name__ == "__main__":
    main()
