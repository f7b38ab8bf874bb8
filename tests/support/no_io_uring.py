#!/usr/bin/env python3
"""Runs a command with io_uring_setup(2) denied (EPERM) by a seccomp filter, as in a
container whose seccomp profile blocks io_uring. x86_64 only.

Usage: no_io_uring.py PROGRAM [ARGS...]
"""
import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH_X86_64 = 0xC000003E
NR_IO_URING_SETUP = 425
RET_ALLOW = 0x7FFF0000
RET_EPERM = 0x00050000 | 1

LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
program = [
    (LD_W_ABS, 0, 0, 4),                   # architecture
    (JEQ_K, 0, 3, AUDIT_ARCH_X86_64),      # other architectures: allow
    (LD_W_ABS, 0, 0, 0),                   # syscall number
    (JEQ_K, 0, 1, NR_IO_URING_SETUP),
    (RET_K, 0, 0, RET_EPERM),
    (RET_K, 0, 0, RET_ALLOW),
]
filters = b"".join(struct.pack("HBBI", *ins) for ins in program)
buf = ctypes.create_string_buffer(filters, len(filters))
fprog = struct.pack("HxxxxxxP", len(program), ctypes.addressof(buf))
fprog_buf = ctypes.create_string_buffer(fprog, len(fprog))

libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
    sys.exit(f"prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}")
if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog_buf), 0, 0) != 0:
    sys.exit(f"prctl(SECCOMP) failed: errno {ctypes.get_errno()}")
os.execv(sys.argv[1], sys.argv[1:])
