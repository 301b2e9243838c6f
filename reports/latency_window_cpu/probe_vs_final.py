"""Why the demo's final bench disagrees with its allocation probe for the same widths: is it the weights (the probe
times random weights, the final bench the fine-tuned ones) or the measurement itself?

Times four networks of one finished run on its own backend and settings, in interleaved rounds, each a fresh ONNX
export and session as the pipeline makes them: the unpruned network, the allocated widths with random weights (what
the allocator probed), the rebuilt network before fine-tuning and the fine-tuned model.pt.

    python reports/latency_window_cpu/probe_vs_final.py runs/demo --rounds 6
"""
import argparse
import statistics
from pathlib import Path

import yaml

from bench import latency
from compress import graph, io

parser = argparse.ArgumentParser()
parser.add_argument("run_dir")
parser.add_argument("--rounds", type=int, default=6)
parser.add_argument("--seconds", type=float, default=None, help="min seconds per measurement (default: the run's probes)")
args = parser.parse_args()

run = Path(args.run_dir)
config = yaml.safe_load((run / "config.yaml").read_text())
allocation = io.read_json(run / "allocation.json")
_, arch = graph.load_checkpoint(run / "model.pt")
networks = {
    "unpruned": graph.load_checkpoint(config["weights"])[0],
    "allocated widths, random weights": graph.build_from_arch({**arch, "widths": allocation["widths"]}),
    "rebuilt (before fine-tuning)": graph.load_checkpoint(run / "rebuilt.pt")[0],
    "model.pt (fine-tuned)": graph.load_checkpoint(run / "model.pt")[0],
}
seconds = args.seconds or config["bench_seconds"]
print(f"run {run}: {config['backend']}, batch {config['batch_size']}, {config['threads']} thread(s), "
      f"{config['bench_iters']} iterations and {seconds} s at least, {config['bench_warmup']} s warm-up; "
      f"target {allocation['target_ms']:.3f} ms")
medians = {name: [] for name in networks}
for round_index in range(args.rounds):
    for name, network in networks.items():
        result = latency.measure(network.eval(), config["backend"], config["batch_size"], config["precision"],
                                 tuple(arch["input_size"]), min_iters=config["bench_iters"], min_seconds=seconds,
                                 warmup_seconds=config["bench_warmup"], threads=config["threads"])
        medians[name].append(result["median_ms"])
        print(f"round {round_index}: {name:34s} median {result['median_ms']:.3f} ms, cv {result['cv']:.3f}", flush=True)
print()
print("| network | median of round medians (ms) | min | max | spread (max/min - 1) |")
print("|---|---|---|---|---|")
for name, values in medians.items():
    print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} | {max(values) / min(values) - 1:.1%} |")
