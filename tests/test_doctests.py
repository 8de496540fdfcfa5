"""Every docstring example in fastinit prints what it claims (real runs), run from this one place.

The modules are found with ``pkgutil.walk_packages`` (subpackages such as ``fastinit._reference``
included), not from a hand-kept list; ``fastinit.torch*`` is left out when torch is not installed.
Each example runs with ``np`` (NumPy) and ``fastinit`` already imported, as a reader would have
them. A failure shows doctest's report: the example, what it expected and what it got.
"""

import doctest
import importlib
import importlib.machinery
import importlib.util
import inspect
import pkgutil

import numpy as np
import pytest

import fastinit

HAS_TORCH = importlib.util.find_spec("torch") is not None
NOT_RUN = {"fastinit.__main__"}  # importing it runs the command line
GLOBS = {"np": np, "fastinit": fastinit}
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _needs_missing_torch(name: str) -> bool:
    return not HAS_TORCH and (name == "fastinit.torch" or name.startswith("fastinit.torch."))


def module_names() -> list[str]:
    """fastinit and every module and package below it, in walk order."""

    def onerror(name):
        if not _needs_missing_torch(name):
            raise  # the import error of a package that should import (pkgutil calls this in its except)

    found = [m.name for m in pkgutil.walk_packages(fastinit.__path__, "fastinit.", onerror=onerror)
             if not _is_library(m)]
    return [n for n in ["fastinit", *found] if n not in NOT_RUN and not _needs_missing_torch(n)]


def _is_library(info: pkgutil.ModuleInfo) -> bool:
    # libfastinit.so has an importable suffix, but it is the C core that ctypes loads, not a module
    spec = info.module_finder.find_spec(info.name.rpartition(".")[2])
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def doctests(name: str) -> list[doctest.DocTest]:
    """The docstring examples defined in module `name` (not those of names it re-exports)."""
    tests = doctest.DocTestFinder().find(importlib.import_module(name), extraglobs=GLOBS)
    return [t for t in tests if t.examples]


def _has_examples(name: str) -> bool:
    try:
        return bool(doctests(name))
    except Exception:  # collected all the same, so that the test reports the import error
        return True


MODULES = module_names()
WITH_EXAMPLES = [n for n in MODULES if _has_examples(n)]


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for test in doctests(name):
        runner.run(test, out=report.append)
    res = runner.summarize(verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}:\n" + "".join(report)


def test_discovery_reaches_every_example_of_the_public_api():
    # each public name with an example is defined in a module that test_docstring_examples runs
    public = [getattr(fastinit, n) for n in fastinit.__all__ if n != "torch" or HAS_TORCH]
    defined_in = {
        obj.__name__ if inspect.ismodule(obj) else obj.__module__
        for obj in public
        if ">>>" in (inspect.getdoc(obj) or "")
    }
    assert defined_in, "no public name of fastinit has a docstring example"
    assert defined_in <= set(WITH_EXAMPLES), defined_in - set(WITH_EXAMPLES)
