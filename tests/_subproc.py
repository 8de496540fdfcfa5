"""Run a Python snippet in a fresh interpreter (forced SIMD level, thread count, signals)."""

import os
import signal
import subprocess
import sys
import tempfile
import time

# Run outside the checkout: `python -c` puts the working directory first on sys.path, and the
# source tree's fastinit/ (without the compiled library) would shadow the installed package.
NEUTRAL_CWD = tempfile.gettempdir()


def run_python(code: str, env: dict | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    kw.setdefault("cwd", NEUTRAL_CWD)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def run_interrupted(code: str, delay: float, timeout: float = 120) -> tuple[str, str]:
    """Run ``code``, wait for it to print a first line ("ready"), send SIGINT ``delay`` seconds
    later and return ``(stdout after that line, stderr)``."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=NEUTRAL_CWD)
    try:
        first = proc.stdout.readline().strip()
        assert first == "ready", first + proc.stderr.read()
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=timeout)
    finally:
        proc.kill()
