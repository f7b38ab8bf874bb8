#!/usr/bin/env python3
"""Runs a program under the seccomp half of a systemd unit's sandbox, built the way systemd
builds it, for a machine where systemd is not PID 1 and the unit cannot be started.

Usage: systemd_sandbox.py UNIT [SETTING=VALUE ...] -- PROGRAM [ARGS...]

From the [Service] section of UNIT (then the extra SETTING=VALUE arguments, as if appended
to it) it applies, through libseccomp as systemd does:
  SystemCallFilter=        groups expanded by `systemd-analyze syscall-filter`, so the
                           groups are this machine's systemd's; the first entry decides
                           allow-list or deny-list, later entries add or (with ~) remove
  SystemCallErrorNumber=   the action for a filtered call (else the process is killed)
  SystemCallArchitectures=native   always: each filter is for the native architecture
  RestrictAddressFamilies= socket() of any other family fails with EAFNOSUPPORT
  MemoryDenyWriteExecute=yes       no writable and executable mapping
  NoNewPrivileges=yes      set for every seccomp filter anyway
The mount-namespace options (ProtectSystem=, PrivateTmp=, ...), users and capabilities are
not applied: they change what files and privileges the process has, not which system
calls it may make.
"""
import ctypes
import errno
import os
import socket
import subprocess
import sys

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE = 0x2
PROT_EXEC = 0x4
SHM_EXEC = 0o100000
AF_MAX = 64  # above every family a kernel defines; the range below is checked one by one


def scmp_act_errno(number):
    return 0x00050000 | (number & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.argtypes = [
    ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]


class Filter:
    """One seccomp filter; the kernel applies every loaded filter, the strictest wins."""

    def __init__(self, default_action):
        self.ctx = lib.seccomp_init(default_action)
        if not self.ctx:
            sys.exit("systemd_sandbox: seccomp_init failed")

    def rule(self, action, name, *comparisons):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a system call of this architecture: systemd skips it too
        array = (ArgCmp * len(comparisons))(*comparisons) if comparisons else None
        rc = lib.seccomp_rule_add_array(self.ctx, action, number, len(comparisons), array)
        if rc < 0:
            sys.exit(f"systemd_sandbox: rule for {name}: error {-rc}")

    def load(self):
        rc = lib.seccomp_load(self.ctx)
        if rc < 0:
            sys.exit(f"systemd_sandbox: seccomp_load: error {-rc}")


def service_settings(unit, extra):
    settings, section = [], None
    with open(unit) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line:
                key, value = line.split("=", 1)
                settings.append((key.strip(), value.strip()))
    settings += [tuple(s.split("=", 1)) for s in extra]
    return settings


GROUPS = {}


def expand(item):
    """A system call name, or every call of a @group as this machine's systemd defines it."""
    if not item.startswith("@"):
        return {item}
    if item not in GROUPS:
        listing = subprocess.run(["systemd-analyze", "syscall-filter", item],
                                 capture_output=True, text=True, check=True).stdout
        names = set()
        for line in listing.splitlines():
            entry = line.strip()
            if line[:1].isspace() and entry and not entry.startswith("#"):
                names |= expand(entry)
        GROUPS[item] = names
    return GROUPS[item]


def syscall_filter(values, action):
    if not values:
        return None
    allow_list = not values[0].startswith("~")
    listed = set()
    for value in values:
        names = set().union(*(expand(i) for i in value.lstrip("~").split()))
        takes_out = value.startswith("~") == allow_list
        listed = listed - names if takes_out else listed | names
    f = Filter(action if allow_list else SCMP_ACT_ALLOW)
    for name in sorted(listed):
        f.rule(SCMP_ACT_ALLOW if allow_list else action, name)
    return f


def address_families(value):
    allowed = {getattr(socket, name) for name in value.split()}
    f = Filter(SCMP_ACT_ALLOW)
    refuse = scmp_act_errno(errno.EAFNOSUPPORT)
    for family in range(AF_MAX):
        if family not in allowed:
            f.rule(refuse, "socket", ArgCmp(0, SCMP_CMP_EQ, family, 0))
    f.rule(refuse, "socket", ArgCmp(0, SCMP_CMP_GE, AF_MAX, 0))
    return f


def deny_write_execute():
    f = Filter(SCMP_ACT_ALLOW)
    refuse = scmp_act_errno(errno.EPERM)
    both = PROT_WRITE | PROT_EXEC
    f.rule(refuse, "mmap", ArgCmp(2, SCMP_CMP_MASKED_EQ, both, both))
    for call in ("mprotect", "pkey_mprotect"):
        f.rule(refuse, call, ArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
    f.rule(refuse, "shmat", ArgCmp(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
    return f


def main():
    if "--" not in sys.argv[2:]:
        sys.exit(__doc__)
    split = sys.argv.index("--", 2)
    unit, extra, command = sys.argv[1], sys.argv[2:split], sys.argv[split + 1:]
    settings = service_settings(unit, extra)

    def values(key):
        return [v for k, v in settings if k == key]

    error_number = values("SystemCallErrorNumber")
    action = (scmp_act_errno(getattr(errno, error_number[-1])) if error_number
              else SCMP_ACT_KILL_PROCESS)
    filters = []
    if values("RestrictAddressFamilies"):
        filters.append(address_families(values("RestrictAddressFamilies")[-1]))
    if values("MemoryDenyWriteExecute")[-1:] == ["yes"]:
        filters.append(deny_write_execute())
    # Last, as systemd does: it may forbid loading another filter.
    filters.append(syscall_filter(values("SystemCallFilter"), action))
    for f in filters:
        if f is not None:
            f.load()
    os.execvp(command[0], command)


main()
