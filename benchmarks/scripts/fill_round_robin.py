"""The four 1 GiB float32 fills of ``fastinit bench`` timed round-robin, so that the machine's slow
spells hit every row alike: constant fill, uniform_, normal_, trunc_normal_(0.02, +-0.04), again,
for ``rounds`` rounds; medians and every single round are printed.

    python benchmarks/scripts/fill_round_robin.py [rounds]       # default 9
"""

import statistics
import sys
import time

import numpy as np

from fastinit import _fill
from fastinit._bench import TRUNC


def main(rounds: int = 9) -> None:
    buf = np.empty((1 << 30) // 4, np.float32)
    fills = {"fill": lambda: _fill.fill_constant(buf, 1.0),
             "uniform": lambda: _fill.fill_uniform(buf, 0.0, 1.0, 1, 0),
             "normal": lambda: _fill.fill_normal(buf, 0.0, 1.0, 1, 1),
             "trunc": lambda: _fill.fill_trunc_normal(buf, **TRUNC, seed=1, stream=2)}
    for fn in fills.values():
        fn()  # JIT load, first touch
    times = {k: [] for k in fills}
    for _ in range(rounds):
        for k, fn in fills.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    gib = {k: 1 / statistics.median(v) for k, v in times.items()}
    print("  ".join(f"{k} {gib[k]:.2f} GiB/s ({gib[k] / gib['fill']:.0%})" for k in fills))
    print(" ".join(f"{k}:" + ",".join(f"{1 / x:.1f}" for x in v) for k, v in times.items()))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
