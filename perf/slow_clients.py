#!/usr/bin/env python3
"""Trickling request bodies against ringproxy: how many backend connections they hold, and
when the proxy cuts them (issue 16, "Slow clients that hold backends").

    perf/slow_clients.py --bin target/release/ringproxy [--clients 200] [--interval 5]
                         [--body 1048576] [--burst 0] [--duration 160] [--config EXTRA.toml]

Starts a backend (in this script: it accepts, counts open connections and reads what comes)
and `BIN` in front of it with one unpinned worker, then opens CLIENTS connections that each
send a POST head with `Content-Length: BODY`, the first BURST body bytes at once, and then
one body byte every INTERVAL seconds.
Every 5 s it prints how many clients are still open and how many backend connections are
open; at the end, when the clients were cut and what they were answered. Everything runs on
127.0.0.1 and is stopped on exit. `--config` appends TOML (e.g. a `[limits]` section) to the
generated configuration.
"""

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


class BackendCounter:
    """A backend that only reads: counts connections open now, at most, and in total."""

    def __init__(self):
        self.open = 0
        self.peak = 0
        self.total = 0

    async def handle(self, reader, writer):
        self.open += 1
        self.total += 1
        self.peak = max(self.peak, self.open)
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()


class Trickler:
    """One client sending its body one byte per interval until the proxy cuts it."""

    def __init__(self, index):
        self.index = index
        self.started = None
        self.cut_at = None
        self.status = None
        self.bytes_sent = 0

    async def run(self, addr, body_len, burst, interval, stop_at):
        host, port = addr
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as error:
            self.status = f"connect failed: {error}"
            return
        self.started = time.monotonic()
        head = f"POST /upload/{self.index} HTTP/1.1\r\nHost: t\r\nContent-Length: {body_len}\r\n\r\n"
        writer.write(head.encode() + b"x" * burst)
        self.bytes_sent += burst
        listener = asyncio.ensure_future(self.listen(reader))
        try:
            while time.monotonic() < stop_at and not listener.done():
                writer.write(b"x")
                await writer.drain()
                self.bytes_sent += 1
                await asyncio.wait({listener}, timeout=interval)
        except (ConnectionError, OSError):
            pass
        if not listener.done():
            try:
                await asyncio.wait_for(listener, timeout=1)
            except asyncio.TimeoutError:
                listener.cancel()
        writer.close()

    async def listen(self, reader):
        """Waits for the proxy's answer or close; records when and what."""
        try:
            data = await reader.read(4096)
            while data and b"\r\n" not in data:
                more = await reader.read(4096)
                if not more:
                    break
                data += more
            match = re.match(rb"HTTP/1\.[01] (\d{3})", data or b"")
            self.status = match.group(1).decode() if match else ("closed" if not data else "garbage")
            while data:
                data = await reader.read(4096)
        except (ConnectionError, OSError):
            self.status = self.status or "reset"
        self.cut_at = time.monotonic() - self.started


def start_proxy(binary, backend_port, extra_config, workdir):
    config = os.path.join(workdir, "ringproxy.toml")
    with open(config, "w") as f:
        f.write(
            "[runtime]\nworkers = 1\npin = false\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
            f"[upstream.app]\nbackends = [\"127.0.0.1:{backend_port}\"]\n\n{extra_config}\n"
        )
    proxy = subprocess.Popen([binary, "--config", config], stderr=subprocess.PIPE, text=True)
    addr = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proxy.stderr.readline()
        if not line:
            break
        found = re.match(r"ringproxy: listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            addr = ("127.0.0.1", int(found.group(1)))
        if line.startswith("ringproxy: ready"):
            return proxy, addr
    proxy.kill()
    sys.exit("ringproxy did not start")


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--body", type=int, default=1 << 20)
    parser.add_argument("--burst", type=int, default=0)
    parser.add_argument("--duration", type=float, default=160.0)
    parser.add_argument("--config", help="TOML file appended to the generated config")
    args = parser.parse_args()
    extra = open(args.config).read() if args.config else ""

    counter = BackendCounter()
    server = await asyncio.start_server(counter.handle, "127.0.0.1", 0)
    backend_port = server.sockets[0].getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="ringproxy-slow-clients-")
    proxy, addr = start_proxy(args.bin, backend_port, extra, workdir)
    try:
        started = time.monotonic()
        stop_at = started + args.duration
        clients = [Trickler(i) for i in range(args.clients)]
        tasks = [
            asyncio.ensure_future(c.run(addr, args.body, args.burst, args.interval, stop_at)) for c in clients
        ]
        print(f"{args.bin}: {args.clients} clients, {args.burst} bytes at once, then 1 byte "
              f"every {args.interval:g} s, Content-Length {args.body}")
        print("   t  clients open  backend conns open  backend conns total")
        while time.monotonic() < stop_at and not all(t.done() for t in tasks):
            await asyncio.sleep(5)
            still_open = sum(1 for c in clients if c.started and c.cut_at is None)
            print(f"{time.monotonic() - started:4.0f}  {still_open:12}  {counter.open:18}"
                  f"  {counter.total:19}", flush=True)
        await asyncio.gather(*tasks, return_exceptions=True)
        cut = sorted(c.cut_at for c in clients if c.cut_at is not None)
        statuses = {}
        for c in clients:
            statuses[c.status or "open at the end"] = statuses.get(c.status or "open at the end", 0) + 1
        print(f"peak backend connections: {counter.peak}, total opened: {counter.total}")
        if cut:
            print(f"cut: {len(cut)} of {args.clients}; after min {cut[0]:.1f} s, "
                  f"median {statistics.median(cut):.1f} s, max {cut[-1]:.1f} s")
        else:
            print(f"cut: none within {args.duration:g} s")
        print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    finally:
        proxy.kill()
        proxy.wait()
        server.close()
        await asyncio.sleep(0.5)  # the backend's handlers see their connections close


if __name__ == "__main__":
    asyncio.run(main())
