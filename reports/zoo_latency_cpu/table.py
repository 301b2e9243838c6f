"""The sweep's run directories as one Markdown table, in the sweep's order: python table.py RUNS_DIR."""
import json
import sys
from pathlib import Path

print("| model | unpruned ms | pruned ms | x target (back to back) | against the start | MACs kept | groups cut / groups | "
      "channel multiple | allocation probes | parity rel. |")
print("|---|---|---|---|---|---|---|---|---|---|")
MODELS = ("resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "proxyless_gpu",
          "proxyless_mobile", "proxyless_cpu")
for run in (Path(sys.argv[1]) / name for name in MODELS):
    report = json.loads((run / "report.json").read_text())
    allocation = json.loads((run / "allocation.json").read_text())
    selection = json.loads((run / "selection.json").read_text())
    full = {g["id"]: g["width"] for g in selection["groups"]}
    cut = sum(allocation["widths"][gid] < width for gid, width in full.items())
    verdict = report["latency_verdict"]
    print(f"| {run.name} | {report['before']['median_ms']:.3f} | {report['after']['median_ms']:.3f} | "
          f"{verdict['ratio']:.3f} | {verdict['against_start_target']:.3f} | {report['macs_kept']:.1%} | {cut} / {len(full)} | "
          f"{allocation['align']} | {len(allocation['probes'])} | {report['parity']['rel_diff']:.1e} |")
