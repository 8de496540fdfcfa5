"""How much memory a new allocation can still take: the one home of that rule, for ``fastinit bench``'s
size check and the simulator's estimates (:mod:`fastinit.sim`).

Private module.
"""

from __future__ import annotations

import os

__all__ = ["available_memory"]


def _read(path, size=1 << 14):
    """The first ``size`` bytes of ``path`` (one ``read``: /proc and cgroup files are generated per read),
    or None when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_int(path):
    text = _read(path, 64)
    text = text.strip() if text is not None else b""
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def available_memory(proc="/proc", cgroup_root="/sys/fs/cgroup"):
    """Bytes that can still be allocated without swapping, or None when unknown.

    Linux's ``MemAvailable`` (/proc/meminfo), capped by the memory limit of the process's cgroup
    (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) less what the cgroup already uses; elsewhere
    the free pages ``os.sysconf`` reports, if it does. Every run of a simulator sweep asks, so the
    files are read as bytes in one call each. ``proc`` and ``cgroup_root``: where those file systems
    are mounted (tests give a fake tree).
    """
    data = _read(os.path.join(proc, "meminfo"))
    i = data.find(b"MemAvailable:") if data is not None else -1
    if i < 0:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        avail = int(data[i + 13:data.index(b"kB", i)]) << 10
    except ValueError:
        return None
    cgroup = _read(os.path.join(proc, "self", "cgroup")) or b""
    groups = {}
    for line in cgroup.decode(errors="replace").splitlines():  # "id:controllers:path"; v2 has no controllers
        parts = line.split(":", 2)
        if len(parts) == 3:
            groups[parts[1]] = parts[2]
    root = cgroup_root
    candidates = [(os.path.join(root, groups.get("", "/").lstrip("/")), "memory.max", "memory.current"),  # v2
                  (os.path.join(root, "memory", groups.get("memory", "/").lstrip("/")), "memory.limit_in_bytes",
                   "memory.usage_in_bytes")]  # v1
    for d, limit_file, usage_file in candidates:
        limit, usage = _read_int(os.path.join(d, limit_file)), _read_int(os.path.join(d, usage_file))
        if limit is not None and usage is not None:
            avail = min(avail, max(limit - usage, 0))
    return avail
