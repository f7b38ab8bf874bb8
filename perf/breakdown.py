#!/usr/bin/env python3
"""Splits each proxy's CPU time per request into user space, the kernel's TCP sends and
receives, and the event machinery around them (io_uring or epoll and system calls).

    perf/breakdown.py NAME=US_PER_REQ=PERF_SCRIPT_FILE ...

Each PERF_SCRIPT_FILE is `perf script -F comm,tid,ip,sym` of a `perf record -g` on the
proxy core; the busiest thread in it is taken as the proxy's worker. US_PER_REQ is the
proxy's CPU time per request from /proc (exact); the samples only split it.
"""

import collections
import re
import sys

# A sample belongs to the first category whose pattern matches a frame of its call chain.
SENDS = re.compile(r"^(io_send|io_sendmsg|__sys_sendto|__sys_sendmsg|do_writev|sock_write_iter)$")
RECEIVES = re.compile(r"^(io_recv|io_recvmsg|__sys_recvfrom|__sys_recvmsg|do_readv|sock_read_iter)$")
# Parts of the machinery worth seeing on their own (inclusive; they overlap nothing above).
DETAILS = [
    ("poll arming", re.compile(r"^(io_arm_poll_handler|__io_arm_poll_handler|io_arm_apoll)$")),
    ("file lookup (fget/fput)", re.compile(r"^(fget|fput|io_file_get_normal)$")),
    ("epoll_wait", re.compile(r"^do_epoll_wait$")),
    ("scheduling", re.compile(r"^__schedule$")),
]


def samples(path):
    """Yields (tid, [symbols leaf first], leaf_is_user) per sample."""
    tid, chain, user = None, [], False
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if tid is not None and chain:
                    yield tid, chain, user
                tid, chain = None, []
                continue
            if not line.startswith("\t"):
                fields = line.split()
                tid = fields[1] if len(fields) > 1 else None
                chain = []
                continue
            parts = line.split(None, 1)
            if not chain:
                user = not parts[0].startswith("ffffffff")
            symbol = parts[1].strip() if len(parts) > 1 else "?"
            chain.append(re.sub(r"\+0x[0-9a-f]+$", "", symbol.split(" (")[0]))
    if tid is not None and chain:
        yield tid, chain, user


def split(path):
    per_tid = collections.defaultdict(collections.Counter)
    for tid, chain, user in samples(path):
        if tid == "0":
            continue
        counts = per_tid[tid]
        counts["all"] += 1
        if user:
            counts["user space"] += 1
        elif any(SENDS.match(s) for s in chain):
            counts["kernel: sends"] += 1
        elif any(RECEIVES.match(s) for s in chain):
            counts["kernel: receives"] += 1
        else:
            counts["kernel: event machinery and the rest"] += 1
            for name, pattern in DETAILS:
                if any(pattern.match(s) for s in chain):
                    counts["  of which " + name] += 1
    if not per_tid:
        sys.exit(f"{path}: no samples")
    return max(per_tid.values(), key=lambda c: c["all"])


def main():
    runs = []
    for arg in sys.argv[1:]:
        name, us, path = arg.split("=", 2)
        runs.append((name, float(us), split(path)))
    rows = ["user space", "kernel: sends", "kernel: receives", "kernel: event machinery and the rest"]
    rows += ["  of which " + name for name, _ in DETAILS]
    print("| µs per request | " + " | ".join(name for name, _, _ in runs) + " |")
    print("|---" * (len(runs) + 1) + "|")
    print("| all (CPU time from /proc) | " + " | ".join(f"{us:.2f}" for _, us, _ in runs) + " |")
    for row in rows:
        cells = [f"{us * c[row] / c['all']:.2f}" for _, us, c in runs]
        print(f"| {row} | " + " | ".join(cells) + " |")
    print("| samples | " + " | ".join(str(c["all"]) for _, _, c in runs) + " |")


if __name__ == "__main__":
    main()
