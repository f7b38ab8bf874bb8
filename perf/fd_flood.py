#!/usr/bin/env python3
"""Client flood over a low open-file limit: how many clients are served, refused or left hanging.

Starts a keep-alive HTTP backend (in this process) and ringproxy under
`prlimit --nofile=N:N` (soft = hard, so the proxy cannot raise it), then opens CLIENTS
connections at once. Each sends a keep-alive `GET /` and waits up to --hang-after seconds:

  served     200 response (the connection is then held open, as a browser's would be)
  503        refused with a 503 response
  closed     the connection was closed or reset without a response
  hung       connected, nothing at all within --hang-after seconds
  no-connect the connect itself failed or timed out (SYN dropped beyond the backlog)

Refusals also report how long they took (p50 and max, from the request being sent). When
every client is classified, all are closed and --after fresh clients must be served. The
proxy's stderr lines printed during the flood are counted and the distinct ones shown.

  perf/fd_flood.py --bin target/release/ringproxy --nofile 1024 --clients 2000 [--spread 2]
"""

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: flood\r\n\r\n"


async def backend_conn(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve_backend():
    """The backend, in its own process so that the flood's client work never delays it."""
    server = await asyncio.start_server(backend_conn, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def start_backend():
    backend = subprocess.Popen([sys.executable, __file__, "--serve-backend"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return backend, int(backend.stdout.readline())


async def read_status(reader):
    line = await reader.readline()
    if not line:
        return None
    parts = line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
    length = 0
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def one_client(addr, hang_after, held, delay=0.0):
    await asyncio.sleep(delay)
    start = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*addr), timeout=hang_after)
    except (OSError, asyncio.TimeoutError):
        return "no-connect", time.monotonic() - start
    # Answer times count from the request, not from the connect: with thousands of clients
    # in one event loop, connecting is mostly this script's own queueing.
    start = time.monotonic()
    try:
        writer.write(REQUEST)
        status = await asyncio.wait_for(read_status(reader), timeout=hang_after)
    except asyncio.TimeoutError:
        held.append(writer)
        return "hung", time.monotonic() - start
    except (OSError, asyncio.IncompleteReadError):
        writer.close()
        return "closed", time.monotonic() - start
    elapsed = time.monotonic() - start
    if status is None:
        writer.close()
        return "closed", elapsed
    if status == 200:
        held.append(writer)
        return "served", elapsed
    writer.close()
    return str(status), elapsed


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


async def flood(addr, clients, spread, hang_after, after):
    held = []
    results = await asyncio.gather(
        *(one_client(addr, hang_after, held, spread * i / clients) for i in range(clients)))
    counts = {}
    refusal_times = []
    for kind, elapsed in results:
        counts[kind] = counts.get(kind, 0) + 1
        if kind not in ("served", "hung"):
            refusal_times.append(elapsed)
    for writer in held:
        writer.close()
    await asyncio.sleep(0.5)
    later = await asyncio.gather(*(one_client(addr, hang_after, []) for _ in range(after)))
    served_after = sum(1 for kind, _ in later if kind == "served")
    return counts, refusal_times, served_after


def cpu_seconds(pid):
    """utime + stime of a process, from /proc (prlimit execs the proxy: same pid)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_proxy(args, backend_port):
    config = (f"[runtime]\nworkers = {args.workers}\npin = false\n\n"
              f"[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
              f"[upstream.app]\nbackends = [\"127.0.0.1:{backend_port}\"]\n")
    if args.max_fails is not None:
        config += f"\n[upstream.app.passive]\nmax_fails = {args.max_fails}\n"
    path = os.path.join(tempfile.mkdtemp(prefix="fd_flood-"), "ringproxy.toml")
    with open(path, "w") as f:
        f.write(config)
    cmd = ["prlimit", f"--nofile={args.nofile}:{args.nofile}", args.bin, "--config", path]
    proxy = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    lines = []
    addr = None
    for line in proxy.stderr:
        lines.append(line.rstrip("\n"))
        m = re.match(r"ringproxy: listening on (\S+):(\d+) ", line)
        if m:
            addr = (m.group(1), int(m.group(2)))
        if line.startswith("ringproxy: ready"):
            break
    if addr is None:
        proxy.kill()
        sys.exit("proxy did not start:\n" + "\n".join(lines))
    # Keep draining stderr so the proxy never blocks on a full pipe.
    log = []
    threading.Thread(target=lambda: log.extend(l.rstrip("\n") for l in proxy.stderr),
                     daemon=True).start()
    return proxy, addr, lines, log


async def main_async(args):
    backend, port = start_backend()
    proxy, addr, startup, log = start_proxy(args, port)
    try:
        for line in startup:
            if "open-file" in line:
                print(line)
        began = time.monotonic()
        cpu_before = cpu_seconds(proxy.pid)
        counts, refusal_times, served_after = await flood(
            addr, args.clients, args.spread, args.hang_after, args.after)
        cpu = cpu_seconds(proxy.pid) - cpu_before
        took = time.monotonic() - began
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
        backend.stdin.close()
        backend.wait()
    order = ["served", "503", "closed", "hung", "no-connect"]
    kinds = order + sorted(k for k in counts if k not in order)
    print(f"clients {args.clients} (over {args.spread:g} s) at nofile {args.nofile}, "
          f"{args.workers} worker(s), "
          f"flood classified in {took:.1f} s")
    print("  " + "  ".join(f"{k} {counts.get(k, 0)}" for k in kinds))
    if refusal_times:
        print(f"  refusals after the request: p50 {percentile(refusal_times, 0.5) * 1000:.0f} ms,"
              f" max {max(refusal_times) * 1000:.0f} ms")
    print(f"  after the flood: {served_after}/{args.after} new clients served")
    print(f"  proxy CPU time for all of it: {cpu * 1000:.0f} ms")
    shutdown = ("signal", "draining", "stopped")
    flood_log = [l for l in log if not any(word in l for word in shutdown)]
    print(f"  proxy stderr during the flood: {len(flood_log)} lines")
    distinct = {}
    for line in flood_log:
        key = re.sub(r"\d+", "N", line)
        distinct.setdefault(key, line)
    for line in list(distinct.values())[:10]:
        print(f"    {line}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release/ringproxy")
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--spread", type=float, default=0.0,
                        help="start the clients evenly over this many seconds (default 0: at once)")
    parser.add_argument("--hang-after", type=float, default=10.0,
                        help="seconds without an answer that count as hung (default 10)")
    parser.add_argument("--after", type=int, default=50,
                        help="fresh clients that must be served after the flood (default 50)")
    parser.add_argument("--max-fails", type=int,
                        help="upstream.app.passive.max_fails (default: the proxy's own)")
    parser.add_argument("--serve-backend", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.clients + args.after + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if args.serve_backend:
        asyncio.run(serve_backend())
        return
    if not os.path.exists(args.bin):
        sys.exit(f"no binary at {args.bin}")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
