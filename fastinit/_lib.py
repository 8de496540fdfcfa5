"""Load the compiled C core (``libfastinit``) with ctypes and declare its functions.

The library is found with :func:`importlib.resources.files`, never through ``__file__``.
A source checkout that was never built raises an ImportError that says how to build it.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import os
import sys

__all__ = ["lib", "simd_level", "SIMD_LEVELS", "SIGNATURES", "OUT_F32", "OUT_F16", "OUT_BF16", "OUT_STREAM"]

SIMD_LEVELS = ("scalar", "avx2", "avx512")
OUT_F32, OUT_F16, OUT_BF16 = 0, 1, 2
OUT_STREAM = 16  # or'ed into the output type: non-temporal stores (fastinit.h)

_NAMES = {"linux": "libfastinit.so", "darwin": "libfastinit.dylib", "win32": "fastinit.dll"}


def _find_library() -> str:
    name = _NAMES.get(sys.platform, "libfastinit.so")
    path = importlib.resources.files("fastinit") / name
    if not path.is_file():
        raise ImportError(
            f"fastinit's compiled core ({name}) was not found in {path.parent}. "
            "Did you build it? Install the package with `pip install .` (or `pip install -e .`), "
            "or for a source checkout run `cmake -S . -B build && cmake --build build`, "
            "which copies the library into fastinit/."
        )
    return str(path)


lib = ctypes.CDLL(_find_library())

# The C signatures (kernels/include/fastinit.h), written once for Python: name -> (result,
# arguments) in type codes. ctypes reads them here, the Numba layer (fastinit._numba) declares its
# external functions from them. "p" is a pointer (an address, uint64, in compiled code).
HEAD = ("u64", "u64", "u64", "u32", "i64", "p")  # seed, stream, block0, skip, n, out
SIGNATURES = {
    "fi_philox4x32_R": (None, ("u32", "p", "p", "p")),
    "fi_raw_u32": ("i32", HEAD),
    "fi_fill_uniform_f32": ("i32", HEAD + ("i32", "f32", "f32", "f32", "f32")),
    "fi_fill_uniform_f64": ("i32", HEAD + ("f64", "f64", "f64", "f64")),
    "fi_fill_normal_f32": ("i32", HEAD + ("i32", "f32", "f32")),
    "fi_fill_normal_f64": ("i32", HEAD + ("f64", "f64")),
    "fi_fill_trunc_f32": ("i32", HEAD + ("i32", "i32", "f64", "f64", "f64", "f64", "f64", "f32", "f32")),
    "fi_fill_trunc_f64": ("i32", HEAD + ("i32", "f64", "f64", "f64", "f64", "f64", "f64", "f64")),
    "fi_fill_trunc_table_f32": ("i32", HEAD + ("i32", "p", "f32", "f32")),
    "fi_trunc_table": ("f64", ("f64", "f64", "f64", "f64", "f64", "p")),
    "fi_fill_const_u16": ("i32", ("i64", "p", "u16")),
    "fi_fill_const_u32": ("i32", ("i64", "p", "u32")),
    "fi_fill_const_u64": ("i32", ("i64", "p", "u64")),
    "fi_fma_f32": ("i32", ("i64", "p", "p", "p", "p")),
    "fi_ndtri": ("f64", ("f64",)),
    "fi_prefault": ("i32", ("p", "i64")),
    "fi_resident": ("i32", ("p",)),
    "fi_simd_level": ("i32", ()),
    "fi_simd_set": ("i32", ("i32",)),
    "fi_simd_supported": ("i32", ("i32",)),
}
_CTYPES = {None: None, "i32": ctypes.c_int32, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32,
           "i64": ctypes.c_int64, "u64": ctypes.c_uint64, "f32": ctypes.c_float, "f64": ctypes.c_double,
           "p": ctypes.c_void_p}
for _name, (_res, _args) in SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _CTYPES[_res]
    _fn.argtypes = [_CTYPES[code] for code in _args]

if lib.fi_simd_level() < 0:
    raise ImportError(
        f"FASTINIT_SIMD={os.environ.get('FASTINIT_SIMD')!r} asks for a SIMD level that this CPU or build "
        f"cannot run; choose one of {[s for i, s in enumerate(SIMD_LEVELS) if lib.fi_simd_supported(i)]}"
    )


def simd_level() -> str:
    """Name of the SIMD level the C kernels run at: ``"scalar"``, ``"avx2"`` or ``"avx512"``.

    Chosen once at load time from CPUID/XGETBV; the environment variable ``FASTINIT_SIMD``
    overrides it. Every level produces the same bytes.

    Examples
    --------
    >>> import fastinit
    >>> fastinit.simd_level() in ("scalar", "avx2", "avx512")
    True
    """
    return SIMD_LEVELS[lib.fi_simd_level()]
