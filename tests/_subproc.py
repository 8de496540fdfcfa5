"""Run a Python snippet in a fresh interpreter (forced SIMD level, thread count, signals)."""

import os
import subprocess
import sys
import tempfile

# Run outside the checkout: `python -c` puts the working directory first on sys.path, and the
# source tree's fastinit/ (without the compiled library) would shadow the installed package.
NEUTRAL_CWD = tempfile.gettempdir()


def run_python(code: str, env: dict | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    kw.setdefault("cwd", NEUTRAL_CWD)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                          timeout=timeout, **kw)
