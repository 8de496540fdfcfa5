"""Command line: ``fastinit info``, ``fastinit bench``, ``fastinit simulate`` and ``fastinit plan``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile

__all__ = ["make_parser", "main"]


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        n = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except (ValueError, IndexError, OverflowError):  # OverflowError: "infGiB"
        raise argparse.ArgumentTypeError(f"size must look like 1GiB, 256MiB or a byte count, got {text!r}") from None
    if n < 4096:
        raise argparse.ArgumentTypeError(f"size must be at least 4096 bytes, got {text!r}")
    return n


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def make_parser() -> argparse.ArgumentParser:
    """The parser of the ``fastinit`` command, apart from :func:`main` so it can be tested alone.

    Examples
    --------
    >>> args = make_parser().parse_args(["bench", "--size", "64MiB", "--repeat", "1"])
    >>> args.command, args.size, args.repeat, args.no_torch
    ('bench', 67108864, 1, False)
    """
    p = argparse.ArgumentParser(prog="fastinit", description="Fast, reproducible weight initialization on CPU.")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, SIMD level, threads, cache directory")
    info.add_argument("--json", action="store_true", help="print JSON")
    bench = sub.add_parser("bench", help="fill throughput vs NumPy (and torch), next to the write bandwidth")
    bench.add_argument("--size", type=_size, default=1 << 30, help="buffer size, e.g. 1GiB (default), 64MiB")
    bench.add_argument("--repeat", type=_positive_int, default=3, help="timed runs per row; the median is shown")
    bench.add_argument("--no-torch", action="store_true", help="skip torch even if installed")
    bench.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    try:
        from ._simulate_cli import add_simulate_parser
    except ImportError:
        pass
    else:
        add_simulate_parser(sub)
    from ._phase_cli import add_phase_parser  # `phase`: numpy only at import

    add_phase_parser(sub)
    from .torch._cli import add_plan_parser  # `plan` lives with the torch integration (torch-free import)

    add_plan_parser(sub)
    from .torch._inspect import add_inspect_parser  # `inspect` and `lint`: torch-free imports, as `plan`
    from .torch._lint import add_lint_parser

    add_inspect_parser(sub)
    add_lint_parser(sub)
    return p


def _info(args) -> int:
    from ._bench import machine_info

    info = machine_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


@contextlib.contextmanager
def replace_on_success(path):
    """A text file that replaces `path` when the block completes, and is removed when it raises.

    Opened before any work, so a path that cannot be written fails at once (OSError), and an
    interrupted run leaves the old file, never a half-written one.
    """
    if os.path.isdir(path):
        raise IsADirectoryError(21, "Is a directory")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise PermissionError(13, "Permission denied")
    parent, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{name}.", suffix=".tmp", text=True)
    try:
        with os.fdopen(fd, "w") as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the mode a plain open() would give, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _bench_error(message: str, status: int = 2) -> int:
    print(f"fastinit bench: error: {message}", file=sys.stderr)
    return status


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def _bench(args) -> int:
    # lazy: NumPy, Numba and the kernels load only for the commands that use them; the module (not
    # its names) so that the tests can replace available_memory and fill_rows
    from . import _bench as bench

    need, avail = bench.peak_memory(args.size, torch_too=not args.no_torch), bench.available_memory()
    if avail is not None and need > avail:
        return _bench_error(f"argument --size: a buffer of {_gib(args.size)} needs about {_gib(need)} of memory "
                            f"(the buffer, NumPy's and torch's temporaries), but {_gib(avail)} is available")
    try:
        with contextlib.ExitStack() as stack:
            try:
                out = stack.enter_context(replace_on_success(args.json)) if args.json else None
            except OSError as e:
                return _bench_error(f"argument --json: cannot write {args.json}: {e.strerror or e}")
            _bench_run(args, bench, out)
    except MemoryError:  # a limit the estimate cannot see (ulimit -v, another process's growth)
        return _bench_error(f"out of memory with a buffer of {_gib(args.size)}: try a smaller --size", status=1)
    return 0


def _bench_run(args, bench, out) -> None:
    fill_rows, machine_info = bench.fill_rows, bench.machine_info
    info = machine_info()
    print(f"fastinit {info['fastinit']}  simd={info['simd_level']}  threads={info['numba_threads']} "
          f"({info['threading_layer']})  cpus={info['cpu_count']}  torch={info['torch']}")
    print(f"float32 buffer of {args.size / 2**30:.3g} GiB, median of {args.repeat} runs\n")
    rows = fill_rows(args.size, args.repeat, torch_too=not args.no_torch)
    head = f"{'operation':<15} {'implementation':<28} {'time s':>8} {'GiB/s':>7} {'of fill bw':>10} {'vs numpy 1t':>11}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['op']:<15} {r['impl']:<28} {r['seconds']:>8.3f} {r['gib_per_s']:>7.2f} "
              f"{100 * r['vs_bandwidth']:>9.0f}% {r['speedup_vs_numpy_1thread']:>10.1f}x")
    if out is not None:
        json.dump({"machine": info, "size_bytes": args.size, "rows": rows}, out, indent=2)


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    if args.command == "info":
        return _info(args)
    if args.command == "bench":
        return _bench(args)
    if args.command == "phase":
        from ._phase_cli import run_phase

        return run_phase(args)
    if args.command == "plan":
        from .torch._cli import run_plan

        return run_plan(args)
    if args.command == "inspect":
        from .torch._inspect import run_inspect

        return run_inspect(args)
    if args.command == "lint":
        from .torch._lint import run_lint

        return run_lint(args)
    from ._simulate_cli import run_simulate

    return run_simulate(args)


if __name__ == "__main__":
    sys.exit(main())
