"""Seeds and streams: :class:`Generator`, the default generator, and argument resolution."""

from __future__ import annotations

import os
import threading

from ._checks import seed as _check_seed

__all__ = ["Generator", "default_generator", "manual_seed", "initial_seed", "resolve_generator"]

_U64 = 1 << 64
# torch.default_generator starts from this seed too, so an unseeded program is reproducible.
DEFAULT_SEED = 67280421310721


class Generator:
    r"""Seed plus a stream counter: each call that takes the generator gets a fresh stream.

    Philox4x32-10 is counter based: the words of stream :math:`s` under seed :math:`k` are
    :math:`\mathrm{Philox}_k(b, s)` for blocks :math:`b = 0, 1, \dots`. A ``Generator`` hands out
    streams 0, 1, 2, ... in call order, so a sequence of initialisation calls is reproducible from
    one seed, and no two calls overlap. Like :class:`torch.Generator`, it holds state; unlike
    NumPy's generators, the state is two integers and is thread safe.

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
    """

    def __init__(self, seed: int | None = None):
        self._lock = threading.Lock()
        self.manual_seed(int.from_bytes(os.urandom(8), "little") if seed is None else seed)

    def manual_seed(self, seed: int) -> "Generator":
        """Restart from ``seed`` at stream 0; returns ``self`` (as torch does)."""
        seed = _check_seed(seed)
        with self._lock:
            self._seed, self._stream = seed, 0
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

    def set_state(self, state: tuple[int, int]) -> "Generator":
        """Restore a state returned by :meth:`get_state`."""
        seed, stream = state
        seed, stream = _check_seed(seed), _check_seed(stream, "stream")
        with self._lock:
            self._seed, self._stream = seed, stream
        return self

    def take_stream(self) -> tuple[int, int]:
        """Reserve the next stream: returns ``(seed, stream)`` and advances the counter."""
        with self._lock:
            s = self._stream
            self._stream = (s + 1) % _U64
            return self._seed, s

    def __repr__(self) -> str:
        return f"fastinit.Generator(seed={self._seed}, next_stream={self._stream})"


default_generator = Generator(DEFAULT_SEED)


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (used when ``generator=None``) and return it."""
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    """The seed of the default generator."""
    return default_generator.initial_seed()


def resolve_generator(generator, name: str = "generator") -> tuple[int, int]:
    """Turn a ``generator`` argument into ``(seed, stream)``.

    ``None`` takes the next stream of the default generator, a :class:`Generator` its next
    stream, and a plain integer is a seed used at stream 0 (the same numbers on every call).
    """
    if generator is None:
        return default_generator.take_stream()
    if isinstance(generator, Generator):
        return generator.take_stream()
    if isinstance(generator, bool):
        raise TypeError(f"{name} must be a fastinit.Generator, an int seed or None, got bool")
    try:
        return _check_seed(generator, name), 0
    except TypeError:
        raise TypeError(
            f"{name} must be a fastinit.Generator, an int seed or None, got {type(generator).__name__}"
        ) from None
