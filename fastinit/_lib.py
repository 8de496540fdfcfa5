"""Load the compiled C core (``libfastinit``) with ctypes and declare its functions.

The library is found with :func:`importlib.resources.files`, never through ``__file__``.
A source checkout that was never built raises an ImportError that says how to build it.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import os
import sys

__all__ = ["lib", "simd_level", "SIMD_LEVELS", "OUT_F32", "OUT_F16", "OUT_BF16", "OUT_STREAM"]

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

_u64, _i64, _u32, _u16 = ctypes.c_uint64, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint16
_int, _uns, _f32, _f64, _vp = ctypes.c_int, ctypes.c_uint, ctypes.c_float, ctypes.c_double, ctypes.c_void_p
_head = [_u64, _u64, _u64, _uns, _i64, _vp]  # seed, stream, block0, skip, n, out

_SIGNATURES = {
    "fi_philox4x32_R": (None, [_uns, _vp, _vp, _vp]),
    "fi_raw_u32": (_int, _head),
    "fi_fill_uniform_f32": (_int, _head + [_int, _f32, _f32, _f32, _f32]),
    "fi_fill_uniform_f64": (_int, _head + [_f64, _f64, _f64, _f64]),
    "fi_fill_normal_f32": (_int, _head + [_int, _f32, _f32]),
    "fi_fill_normal_f64": (_int, _head + [_f64, _f64]),
    "fi_fill_trunc_f32": (_int, _head + [_int, _int, _f64, _f64, _f64, _f64, _f64, _f32, _f32]),
    "fi_fill_trunc_f64": (_int, _head + [_int, _f64, _f64, _f64, _f64, _f64, _f64, _f64]),
    "fi_fill_trunc_table_f32": (_int, _head + [_int, _vp, _f32, _f32]),
    "fi_trunc_table": (_f64, [_f64, _f64, _f64, _f64, _f64, _vp]),
    "fi_fill_const_u16": (_int, [_i64, _vp, _u16]),
    "fi_fill_const_u32": (_int, [_i64, _vp, _u32]),
    "fi_fill_const_u64": (_int, [_i64, _vp, _u64]),
    "fi_fma_f32": (_int, [_i64, _vp, _vp, _vp, _vp]),
    "fi_ndtri": (_f64, [_f64]),
    "fi_prefault": (_int, [ctypes.c_void_p, ctypes.c_int64]),
    "fi_resident": (_int, [ctypes.c_void_p]),
    "fi_simd_level": (_int, []),
    "fi_simd_set": (_int, [_int]),
    "fi_simd_supported": (_int, [_int]),
}
for _name, (_res, _args) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _res
    _fn.argtypes = _args

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
