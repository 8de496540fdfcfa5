"""Seeds and streams: :class:`Generator`, the default generator, and argument resolution."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import TypeAlias

from . import _checks

__all__ = ["Generator", "default_generator", "manual_seed", "initial_seed", "resolve_generator", "taken_stream",
           "check_generator", "GeneratorLike"]

# torch.default_generator starts from this seed too, so an unseeded program is reproducible.
DEFAULT_SEED = 67280421310721


class Generator:
    r"""Seed plus a stream counter: each call that takes the generator gets a fresh stream.

    Philox4x32-10 is counter based: the words of stream :math:`s` under seed :math:`k` are
    :math:`\mathrm{Philox}_k(b, s)` for blocks :math:`b = 0, 1, \dots`. A ``Generator`` hands out
    streams 0, 1, 2, ... in call order, so a sequence of initialisation calls is reproducible from
    one seed, and no two calls overlap. Like :class:`torch.Generator`, it holds state; unlike
    NumPy's generators, the state is two integers and is thread safe.

    A call that raises gives its stream back (see :func:`taken_stream`), so after an error or a
    Ctrl-C the next call draws what it would have drawn in a fresh run. ``copy.copy``,
    ``copy.deepcopy`` and pickling give an independent generator (its own lock) that continues
    the identical sequence of streams.

    Parameters
    ----------
    seed : int, optional
        64-bit seed (negative values are taken modulo :math:`2^{64}`). ``None`` draws one from
        the operating system.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> g = fastinit.Generator(42)
    >>> a = fastinit.uniform_(np.empty(3, np.float32), generator=g)   # stream 0
    >>> b = fastinit.uniform_(np.empty(3, np.float32), generator=g)   # stream 1
    >>> bool((a != b).all())
    True
    >>> g.manual_seed(42).get_state()
    (42, 0)
    >>> import copy
    >>> h = copy.deepcopy(g)                                   # same state, its own lock
    >>> bool((fastinit.uniform_(np.empty(3, np.float32), generator=h) == a).all())
    True
    """

    def __init__(self, seed: int | None = None):
        self._lock = threading.Lock()
        self._epoch = 0  # bumped by every re-seed, so a stale stream is never given back
        self.manual_seed(int.from_bytes(os.urandom(8), "little") if seed is None else seed)

    def manual_seed(self, seed: int) -> Generator:
        """Restart from ``seed`` at stream 0; returns ``self`` (as torch does)."""
        seed = _checks.seed(seed)
        with self._lock:
            self._seed, self._stream = seed, 0
            self._epoch += 1
        return self

    def seed(self) -> int:
        """Re-seed from the operating system's entropy and return the new seed."""
        s = int.from_bytes(os.urandom(8), "little")
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        """The seed this generator was last seeded with."""
        return self._seed

    def get_state(self) -> tuple[int, int]:
        """``(seed, next_stream)``: everything needed to replay the following calls."""
        with self._lock:
            return self._seed, self._stream

    def set_state(self, state: tuple[int, int]) -> Generator:
        """Restore a state returned by :meth:`get_state`."""
        seed, stream = state
        seed, stream = _checks.seed(seed), _checks.seed(stream, "stream")
        with self._lock:
            self._seed, self._stream = seed, stream
            self._epoch += 1
        return self

    def take_stream(self) -> tuple[int, int]:
        """Reserve the next stream: returns ``(seed, stream)`` and advances the counter."""
        return self._take()[:2]

    def _take(self) -> tuple[int, int, int]:
        with self._lock:
            s = self._stream
            self._stream = (s + 1) % _checks.U64
            return self._seed, s, self._epoch

    def _give_back(self, seed: int, stream: int, epoch: int) -> bool:
        """Undo the :meth:`_take` that returned ``(seed, stream, epoch)`` if nothing took a stream
        or re-seeded since; returns whether it did."""
        with self._lock:
            if (self._seed, self._stream, self._epoch) != (seed, (stream + 1) % _checks.U64, epoch):
                return False
            self._stream = stream
            return True

    # copies and pickles carry (seed, next stream) and get a lock of their own
    def __getstate__(self) -> dict:
        with self._lock:
            return {"seed": self._seed, "stream": self._stream}

    def __setstate__(self, state: dict) -> None:
        self._lock = threading.Lock()
        self._epoch = 0
        self._seed, self._stream = _checks.seed(state["seed"]), _checks.seed(state["stream"], "stream")

    def __repr__(self) -> str:
        return f"fastinit.Generator(seed={self._seed}, next_stream={self._stream})"


default_generator = Generator(DEFAULT_SEED)

#: what a ``generator`` argument accepts: a Generator (its next stream), an int seed (stream 0), None
GeneratorLike: TypeAlias = Generator | int | None


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (used when ``generator=None``) and return it.

    Examples
    --------
    >>> import fastinit
    >>> fastinit.manual_seed(7).get_state()
    (7, 0)
    """
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    """The seed of the default generator.

    Examples
    --------
    >>> import fastinit
    >>> _ = fastinit.manual_seed(11)
    >>> fastinit.initial_seed()
    11
    """
    return default_generator.initial_seed()


def check_generator(generator, name: str = "generator") -> Generator | int:
    """A ``generator`` argument checked without taking a stream: the :class:`Generator` to draw
    from (the default one for ``None``) or an int seed in ``[0, 2**64)``."""
    if generator is None:
        return default_generator
    if isinstance(generator, Generator):
        return generator
    if isinstance(generator, bool):
        raise TypeError(f"{name} must be a fastinit.Generator, an int seed or None, got bool")
    try:
        return _checks.seed(generator, name)
    except TypeError:
        raise TypeError(
            f"{name} must be a fastinit.Generator, an int seed or None, got {type(generator).__name__}"
        ) from None


def resolve_generator(generator, name: str = "generator") -> tuple[int, int]:
    """Turn a ``generator`` argument into ``(seed, stream)``.

    ``None`` takes the next stream of the default generator, a :class:`Generator` its next
    stream, and a plain integer is a seed used at stream 0 (the same numbers on every call).
    """
    g = check_generator(generator, name)
    return g.take_stream() if isinstance(g, Generator) else (g, 0)


@contextlib.contextmanager
def taken_stream(generator, name: str = "generator") -> Iterator[tuple[int, int]]:
    """Take one stream as :func:`resolve_generator` does, for the body of a ``with`` block, and
    give it back if the block raises (an error, ``KeyboardInterrupt``, ``MemoryError``).

    The stream is given back only if no other call took a stream from (or re-seeded) the same
    generator in the meantime; otherwise it stays used, so the concurrent call keeps its own
    stream and the generator ends one stream further than an uninterrupted run would.

    Examples
    --------
    >>> g = Generator(5)
    >>> try:
    ...     with taken_stream(g) as (seed, stream):
    ...         raise KeyboardInterrupt
    ... except KeyboardInterrupt:
    ...     pass
    >>> g.get_state()
    (5, 0)
    """
    g = check_generator(generator, name)
    if not isinstance(g, Generator):
        yield g, 0
        return
    seed, stream, epoch = g._take()
    try:
        yield seed, stream
    except BaseException:
        g._give_back(seed, stream, epoch)
        raise
