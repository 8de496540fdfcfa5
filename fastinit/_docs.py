"""Docstring sections shared by the public functions, written once and substituted.

A line of a docstring that holds only ``%(name)s`` is replaced by section ``name`` of
:data:`SECTIONS`, indented like that line (as scipy's ``doccer`` does). Only whole lines are
substituted, so the LaTeX braces and percent signs elsewhere in a docstring need no escaping.

Examples
--------
>>> @fill_doc
... def f(tensor, generator=None):
...     '''Do nothing.
...
...     Parameters
...     ----------
...     %(generator)s
...     '''
>>> print(f.__doc__.splitlines()[4])
    generator : fastinit.Generator, int or None
"""

from __future__ import annotations

import re
import textwrap

__all__ = ["SECTIONS", "fill_doc"]

SECTIONS = {
    "tensor": """\
tensor : numpy.ndarray or torch.Tensor
    Any shape (0-D included) and writable layout; float16, bfloat16, float32 or float64.
    Overwritten in place (a torch tensor through a NumPy view of its memory).""",
    "tensor_fans": """\
tensor : numpy.ndarray or torch.Tensor
    At least 2-D, any writable layout; float16, bfloat16, float32 or float64. Fans as in
    :func:`calculate_fan_in_and_fan_out` unless the axes are given.""",
    "generator": """\
generator : fastinit.Generator, int or None
    Source of the call's one stream: a ``Generator`` gives its next stream (and takes it back
    if the call raises), an int is a seed used at stream 0 (the same values on every call),
    ``None`` the default generator.""",
    "offset": """\
offset : int, keyword-only
    Logical index of the first element, for filling shards of one larger tensor: element
    ``i`` gets the value of element ``offset + i``. ``offset + size`` must fit in one stream
    (:math:`2^{66}` elements for the 32-bit family, :math:`2^{65}` for float64).""",
    "block": """\
block : fastinit.Block, keyword-only
    The array is the block ``full[block.index]`` of a logical tensor of shape
    ``block.global_shape``: its values equal that block of the full call's result, bit for bit
    (fans from the global shape), and the stream is taken as the full call takes it. Its shape
    must be ``block.shape``; a block and a non-zero ``offset`` cannot be combined.""",
    "axes": """\
in_axis, out_axis : int, keyword-only
    Axes holding the input and output sizes; all other axes are the receptive field. The
    defaults ``1, 0`` are torch's OIHW convention; pass ``in_axis=-2, out_axis=-1`` for
    JAX/Keras HWIO kernels and ``(in, out)`` Dense kernels.""",
    "returns": """\
Returns
-------
numpy.ndarray or torch.Tensor
    ``tensor`` itself.""",
    "range": """\
InitArgumentError
    The values asked for cannot all be finite in the tensor's dtype (the rule is stated in this
    docstring and in ``docs/api.md``), checked before anything is written or any stream is taken.""",
    "normal_range": """\
Values must be finite in the dtype: a call is refused when :math:`|\\text{mean}| + r\\,\\text{std}`
exceeds the largest finite value of the dtype (65504 for float16), with :math:`r` the largest
:math:`|z|` the kernel produces, :math:`r = \\Phi^{-1}(1 - 2^{-33}) = 6.34` for float32, float16
and bfloat16 and :math:`r = \\sqrt{108 \\ln 2} = 8.65` for float64.""",
    "scaling_range": """\
The values must be finite in the dtype: the normal's std, the uniform's bound or the truncated
normal's :math:`\\pm 2\\sigma` derived from scale, gain and fan obey the rules of :func:`normal_`,
:func:`uniform_` and :func:`trunc_normal_`, checked before a stream is taken.""",
    "shape": """\
shape : int or tuple of int
    Shape of the result.""",
    "dtype": """\
dtype : numpy dtype or torch.dtype, keyword-only
    float32 (default), float64, float16 or bfloat16 (``ml_dtypes.bfloat16`` or
    ``"bfloat16"``). A ``torch.dtype`` returns a CPU ``torch.Tensor`` instead of an array.""",
    "new": """\
Returns
-------
numpy.ndarray or torch.Tensor
    A new array (or tensor) holding what the in-place function writes into
    ``np.empty(shape, dtype)`` with the same generator state.""",
}

_PLACEHOLDER = re.compile(r"^([ \t]*)%\((\w+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(func):
    """Substitute the ``%(name)s`` lines of ``func.__doc__`` with :data:`SECTIONS`; returns ``func``."""
    if func.__doc__:
        func.__doc__ = _PLACEHOLDER.sub(lambda m: textwrap.indent(SECTIONS[m.group(2)], m.group(1)), func.__doc__)
    return func
