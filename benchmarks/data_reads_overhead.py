"""What noting a step's data costs (issue 19), in this process, each against a baseline run in the same script:

- a step's own work (load its input, save its output, read a CSV) with the audit hook recording it, then
  fingerprinting what it read, against the same work without the hook;
- a data-change check over N unchanged files (`data_reads.changed`: a stat each, nothing read again) against a
  bare `os.stat` of the same files, and over N changed files (each hashed again) against reading them;
- the data checks' profile of a step's output (`data_checks.profile`) of ROWS x 50 floats and a text column,
  against pandas' own `describe()` of the same frame.

    python benchmarks/data_reads_overhead.py [--files 1000] [--rows 1000000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEP = """
import os, statistics, sys, time
import pandas as pd
from jupyter_mlops.artifacts import load_inputs, save_outputs
folder = sys.argv[1]
hooked = sys.argv[2] == "1"
if hooked:
    from jupyter_mlops import data_reads
save_outputs(folder + "/art", "s0", {"v0": [0] * 100})
times = []
for i in range(1, 201):
    start = time.perf_counter()
    if hooked:
        data_reads.watch(folder + "/art")
    load_inputs(folder + "/art", {f"v{i - 1}": f"s{i - 1}"})
    pd.read_csv(folder + "/data.csv")
    save_outputs(folder + "/art", f"s{i}", {f"v{i}": [i] * 100})
    if hooked:
        data_reads.report()
    times.append(time.perf_counter() - start)
print(statistics.median(times[20:]))
"""


def _step(folder: str, hooked: bool) -> float:
    # a process each: an audit hook cannot be removed once added
    done = subprocess.run([sys.executable, "-c", STEP, folder, "1" if hooked else "0"], capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from jupyter_mlops import data_reads

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "data.csv").write_text("a,b\n" + "\n".join(f"{i},{i * 2}" for i in range(1000)) + "\n")
        bare, hooked = [], []
        for _ in range(args.repeat):  # alternating, on this shared machine
            bare.append(_step(tmp, False))
            hooked.append(_step(tmp, True))
        b, h = statistics.median(bare), statistics.median(hooked)
        print(f"step with its data noted: {h * 1e3:.2f} ms vs {b * 1e3:.2f} ms bare: {h / b:.2f}x "
              f"(+{(h - b) * 1e3:.2f} ms per step)")

        files = Path(tmp, "files")
        files.mkdir()
        for i in range(args.files):
            (files / f"{i}.bin").write_bytes(os.urandom(4096))
        entries = [data_reads.fingerprint(str(p), "file") for p in files.iterdir()]
        stat_t, check_t = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for e in entries:
                os.stat(e["path"])
            stat_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert data_reads.changed(entries) == []
            check_t.append(time.perf_counter() - start)
        s, c = statistics.median(stat_t), statistics.median(check_t)
        print(f"check of {args.files} unchanged files: {c * 1e3:.1f} ms vs {s * 1e3:.1f} ms of bare stat: "
              f"{c / s:.2f}x")
        for p in files.iterdir():
            p.write_bytes(os.urandom(4096))
        read_t, check_t = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for e in entries:
                Path(e["path"]).read_bytes()
            read_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert len(data_reads.changed(entries)) == args.files
            check_t.append(time.perf_counter() - start)
        r, c = statistics.median(read_t), statistics.median(check_t)
        print(f"check of {args.files} changed files: {c * 1e3:.1f} ms vs {r * 1e3:.1f} ms of reading them: "
              f"{c / r:.2f}x")
    _profile(args.rows, args.repeat)


def _profile(rows: int, repeat: int) -> None:
    import numpy as np
    import pandas as pd

    from jupyter_mlops.data_checks import profile

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 50)), columns=[f"c{i}" for i in range(50)])
    frame["country"] = rng.choice(["DE", "FR", "NL"], rows)
    ours, theirs = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        frame.describe(include="all")
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        profile(frame, {"c0": [-1.0, 1.0]})
        ours.append(time.perf_counter() - start)
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f"profile of {rows:,} x 51: {o:.2f} s vs {t:.2f} s of DataFrame.describe(): {o / t:.2f}x")


if __name__ == "__main__":
    main()
