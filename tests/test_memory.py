"""fastinit._memory.available_memory: MemAvailable capped by the cgroup's limit, on a fake /proc and cgroup tree."""

import os

import pytest

from fastinit._memory import available_memory

MEMINFO = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\nBuffers: 1 kB\n"


def _tree(tmp_path, cgroup_line, files):
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "self" / "cgroup").write_text(cgroup_line)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return str(proc), str(root)


def test_mem_available_without_a_limit(tmp_path):
    proc, root = _tree(tmp_path, "0::/user.slice\n", {"user.slice/memory.max": "max\n",
                                                       "user.slice/memory.current": "5000\n"})
    assert available_memory(proc, root) == 20000000 * 1024


def test_cgroup_v2_limit_less_usage(tmp_path):
    proc, root = _tree(tmp_path, "0::/box\n", {"box/memory.max": str(3 << 30), "box/memory.current": str(1 << 30)})
    assert available_memory(proc, root) == 2 << 30


def test_cgroup_v1_limit_less_usage(tmp_path):
    proc, root = _tree(tmp_path, "4:memory:/job\n3:cpu:/job\n",
                       {"memory/job/memory.limit_in_bytes": str(4 << 30),
                        "memory/job/memory.usage_in_bytes": str(5 << 30)})
    assert available_memory(proc, root) == 0                      # over its limit: nothing left


def test_without_meminfo_the_free_pages_or_none(tmp_path):
    got = available_memory(str(tmp_path / "no-proc"), str(tmp_path))
    try:
        expected = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        expected = None
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, rel=0.2)           # free memory moves a little between calls

