"""Phone number normalisation cost: `normalize_phones` over N numbers, CPU time.

Each distinct value is parsed once (libphonenumber: parse, then validate against the
country's numbering plan), so the cost follows the distinct numbers, not the rows.

    python benchmarks/phones.py --rows 100000
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from reconcile.engine.phones import normalize_phones


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    n = ap.parse_args().rows
    cases = {
        "national, all distinct (some invalid area codes)": [f"({200 + i % 700}) 555-{i % 10000:04d}" for i in range(n)],
        "E.164, 9,000 distinct": [f"+1{[201, 202, 203, 205, 206][i % 5]}555{1000 + i % 9000:04d}" for i in range(n)],
    }
    for name, values in cases.items():
        series = pd.Series(values)
        start = time.process_time()
        out, bad = normalize_phones(series, "US")
        cpu = time.process_time() - start
        distinct = series.nunique()
        print(f"{name}: {n} rows, {distinct} distinct, {int(out.notna().sum())} valid, {len(bad)} refused: "
              f"{cpu:.2f} s CPU, {cpu / distinct * 1e6:.0f} µs a distinct value")


if __name__ == "__main__":
    main()
