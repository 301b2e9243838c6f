"""Every recorded latency-target run, judged both ways: against the target fixed from the unpruned network measured at
the start of the run, and against the same share of the unpruned network measured back to back with the pruned one in
the final bench (what `compress.report.latency_verdict` now does for relative targets).

    python reports/latency_window_cpu/ratios.py reports/demo_cpu/* reports/equal_latency_cpu/run_* runs/eqlat_0.5x_stop17
"""
import csv
import json
import sys
from pathlib import Path

print("| run | unpruned at start (ms) | unpruned in the final bench (ms) | pruned (ms) | / target fixed at start | / target back to back |")
print("|---|---|---|---|---|---|")
for run in map(Path, sys.argv[1:]):
    try:
        baseline = json.loads((run / "baseline.json").read_text())
        allocation = json.loads((run / "allocation.json").read_text())
        bench = {row["model"]: float(row["median_ms"]) for row in csv.DictReader((run / "bench.csv").open())}
    except (FileNotFoundError, NotADirectoryError):
        continue
    if "target_ms" not in allocation:
        continue
    share = allocation["target_ms"] / baseline["latency_ms"]
    start, back_to_back = bench["pruned"] / allocation["target_ms"], bench["pruned"] / (share * bench["unpruned"])
    mark = lambda ratio: f"{ratio:.3f}" if 0.9 <= ratio <= 1.0 else f"**{ratio:.3f}**"
    print(f"| {run} | {baseline['latency_ms']:.3f} | {bench['unpruned']:.3f} | {bench['pruned']:.3f} | {mark(start)} | "
          f"{mark(back_to_back)} |")
