"""How far the final bench lands from the allocation's last re-timing of the same widths, over recorded runs.

    python reports/latency_window_cpu/confirm_vs_final.py reports/demo_cpu/* reports/equal_latency_cpu/run_* ...

Both are ratios to the target, each timed back to back with the unpruned network in 3 interleaved rounds; a run
directory without confirmations (before stop 19) is skipped.
"""
import json
import math
import statistics
import sys
from pathlib import Path

rows = []
for run in map(Path, sys.argv[1:]):
    if not (run / "allocation.json").is_file() or not (run / "report.json").is_file():
        continue
    allocation, report = (json.loads((run / name).read_text()) for name in ("allocation.json", "report.json"))
    if not allocation.get("confirmations") or report.get("latency_vs_target") is None:
        continue
    confirmed = allocation["measured_ms"] / allocation["target_ms"]
    rows.append((str(run), confirmed, report["latency_vs_target"]))

print("| run | last re-timing / target | final bench / target | difference |")
print("|---|---|---|---|")
for run, confirmed, final in rows:
    print(f"| {run} | {confirmed:.3f} | {final:.3f} | {final - confirmed:+.3f} |")
differences = [final - confirmed for _, confirmed, final in rows]
spread = statistics.stdev(differences)
print(f"\nruns: {len(rows)}; difference: mean {statistics.mean(differences):+.4f}, standard deviation {spread:.4f}, "
      f"median absolute {statistics.median(abs(d) for d in differences):.4f}")
# If the final bench were the re-timing plus normal noise of that spread, a choice re-timed at r lands outside
# [0.90, 1.00] with this probability.
outside = lambda r: 0.5 * math.erfc((1.0 - r) / spread / math.sqrt(2)) + 0.5 * math.erfc((r - 0.9) / spread / math.sqrt(2))
print("chance outside the window by noise alone, for a choice re-timed at: "
      + ", ".join(f"{r:.2f} -> {outside(r):.0%}" for r in (0.90, 0.92, 0.95, 0.98, 1.00)))
observed = sum(not 0.9 <= final <= 1.0 for _, _, final in rows)
print(f"outside the window: {observed} of {len(rows)} observed; {sum(outside(c) for _, c, _ in rows):.1f} expected from each "
      "run's re-timing and that spread")
