"""The docstring examples of the public modules print what they claim (real runs).

fastinit.theory and fastinit._activations are run by test_theory.py, fastinit.sim and
fastinit._reference.sim by test_sim.py; this module runs the rest. Failures are printed by
doctest (expected vs got) and show in pytest's captured output.
"""

import doctest
import importlib

import pytest

MODULES = [
    "fastinit",  # the package docstring (the re-exported functions are tested in their own modules)
    "fastinit._generator",
    "fastinit._lib",
    "fastinit._fill",
    "fastinit.cli",
    "fastinit.init",
    "fastinit._fans", "fastinit._plain", "fastinit._scaling", "fastinit._matrices", "fastinit._constructors",
    "fastinit._docs", "fastinit._checks",
    "fastinit.linalg",
    "fastinit._orthogonal", "fastinit._block", "fastinit._orthogonal_block",
    "fastinit._reference.orthogonal",
    "fastinit.torch",
    "fastinit.torch._accelerate",
    "fastinit.torch._model",
    "fastinit.torch._plan",
    "fastinit.torch._recipes",
    "fastinit.torch._checkpoint",
    "fastinit._names",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name.startswith("fastinit.torch"):
        pytest.importorskip("torch")
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert res.failed == 0, f"{res.failed} of {res.attempted} doctest examples failed in {name}"
    assert res.attempted > 0, f"{name} has no docstring examples"
