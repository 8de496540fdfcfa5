r"""Name-keyed streams: the stream of a tensor from its fully qualified name alone.

A model's tensor ``layers.7.mlp.fc1.weight`` is drawn from Philox stream

.. math::
    s(\text{name}) = \mathrm{int}_{le}\big(\mathrm{SHA256}(\mathrm{utf8}(\text{name}))[0:8]\big)

(the first 8 bytes of the SHA-256 digest read as a little-endian unsigned 64-bit integer) under
key ``seed``. The values of a tensor then depend only on ``(seed, name)``: not on what else the
model contains, the construction order, or which process computes it.

Collisions: two distinct names share a stream with probability :math:`2^{-64}`; among
:math:`n` names the birthday bound gives :math:`P \le n(n-1)/2^{65}`, about
:math:`2.7 \cdot 10^{-8}` for :math:`n = 10^6` tensors. Streams handed out in call order by
:class:`fastinit.Generator` are small integers; a name hash below :math:`2^{32}` has probability
:math:`2^{-32}`.

Sub-streams (a tensor filled in independent blocks, e.g. one orthogonal matrix per gate of an
LSTM's ``weight_hh``) hash ``name + "\0" + str(k)``: NUL never occurs in a module path, so no
sub-stream equals the stream of another tensor's name (up to hash collisions).

This module does not import torch; the Dask and shard layers use it too.

Examples
--------
>>> from fastinit import _names
>>> hex(stream_of("layers.7.mlp.fc1.weight"))
'0xfce08b0c0669b513'
>>> stream_of("w") == _names.stream_of("w"), stream_of("w") == substream_of("w", 0)
(True, False)
>>> canonical_name(["transformer.wte.weight", "lm_head.weight"])
'lm_head.weight'
"""

from __future__ import annotations

import hashlib

from ._generator import Generator

__all__ = ["STREAM_FORMAT", "stream_of", "substream_of", "canonical_name", "generator_at"]

# Version of the name -> stream derivation above. It goes into every plan fingerprint: a change
# of the derivation (hash, byte order, sub-stream suffix) must bump it.
STREAM_FORMAT = 1


def stream_of(name: str) -> int:
    """The 64-bit Philox stream of the tensor called ``name`` (see the module docstring)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def substream_of(name: str, k: int) -> int:
    """Stream of block ``k`` of the tensor ``name``: the hash of ``name + "\\0" + str(k)``."""
    return stream_of(f"{name}\0{int(k)}")


def canonical_name(names) -> str:
    """The canonical name of one tensor known under several names (tied parameters): the
    lexicographically smallest (Python ``str`` order, i.e. by code point), so it does not depend
    on construction or registration order."""
    names = list(names)
    if not names:
        raise ValueError("names must not be empty")
    return min(names)


def generator_at(seed: int, stream: int) -> Generator:
    """A fresh :class:`fastinit.Generator` whose next call draws ``(seed, stream)``."""
    return Generator(seed).set_state((seed, stream))
