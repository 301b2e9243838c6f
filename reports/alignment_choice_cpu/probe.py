"""How steady is the channel-multiple probe, and does its choice predict capacity kept at a latency target?

Part A: the unpruned network and every (multiple, keep ratio) network take turns in one interleaved measurement, for
several rounds; each round gives every multiple's score (ms saved per million MACs removed), as
compress.budget.best_alignment computes it, at each keep ratio. "half" is the probe best_alignment uses (each group's
half width rounded down to the multiple); the other ratios round to the nearest multiple, as the allocation does.
Part B: for each multiple, the uniform keep ratio bisected on measured latency to the target, timed as the allocation
times it (in turns with the unpruned network), and the MACs it keeps: the capacity each multiple leaves at equal latency.

    python probe.py [MODEL STEM SIDE CHANNELS CLASSES BATCH]   # default: mobilenet_v2 small 28 1 10 8 (the demo's shape)
Random weights: latency only. ort-cpu, fp32, 1 thread.
"""
import datetime
import json
import sys

import numpy as np

from bench import latency
from compress import budget, graph, macs, zoo

name, stem, side, channels, classes, batch = (sys.argv[1:] + ["mobilenet_v2", "small", "28", "1", "10", "8"][len(sys.argv) - 1:])[:6]
input_size, batch = (int(channels), int(side), int(side)), int(batch)
BACKEND, PRECISION, THREADS = "ort-cpu", "fp32", 1
MULTIPLES, RATIOS, ROUNDS, TARGET = (8, 16, 32), ("half", 0.6, 0.7), 5, 0.5


def build(widths=None):
    model = zoo.build_model(name, num_classes=int(classes), in_chans=int(channels), stem=stem).eval()
    if widths:
        graph.prune(model, input_size, {gid: list(range(w)) for gid, w in widths.items() if w < full[gid]})
    return model


unpruned = build()
groups = graph.list_groups(unpruned, input_size)
full = {g.id: g.width for g in groups}
cost = macs.width_cost_model(unpruned, input_size, groups)
full_macs = cost(full)[0]


def widths_at(align, ratio):
    if ratio == "half":  # best_alignment's probe
        return {gid: max(align, (w // 2) // align * align) if w > align else w for gid, w in full.items()}
    return budget.aligned_widths(full, ratio, align, full)


print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {' '.join(sys.argv)}")
print(f"# {name} stem {stem} input {list(input_size)} batch {batch}, {BACKEND} {PRECISION} {THREADS} thread, {latency.cpu_name()}")
print("## Part A: scores, ms saved per million MACs removed, one line per round")
configs = [(a, r) for r in RATIOS for a in MULTIPLES]
candidates = {key: widths_at(*key) for key in configs}
for key, widths in candidates.items():
    print(f"# {key}: {cost(widths)[0] / full_macs:.3f} of the MACs")
rounds = latency.measure_rounds([unpruned] + [build(w) for w in candidates.values()], BACKEND, batch, PRECISION, input_size,
                                rounds=ROUNDS, min_iters=30, min_seconds=6.0, warmup_seconds=1.0, threads=THREADS)
scores = {key: [] for key in configs}
for i in range(ROUNDS):
    full_ms = rounds[0][i]["median_ms"]
    for key, per_round in zip(configs, rounds[1:]):
        saved = full_ms - per_round[i]["median_ms"]
        scores[key].append(saved / ((full_macs - cost(candidates[key])[0]) / 1e6))
    line = "  ".join(f"{a}@{r}: {scores[(a, r)][-1]:.4f}" for a, r in configs)
    print(f"round {i}: unpruned {full_ms:.3f} ms  {line}")
for ratio in RATIOS:
    picks = [max(MULTIPLES, key=lambda a: scores[(a, ratio)][i]) for i in range(ROUNDS)]
    summary = "  ".join(f"{a}: median {np.median(scores[(a, ratio)]):.4f} (range {min(scores[(a, ratio)]):.4f}-{max(scores[(a, ratio)]):.4f})"
                        for a in MULTIPLES)
    print(f"ratio {ratio}: {summary}; best per round {picks}")

print(f"## Part B: uniform keep ratio bisected to {TARGET}x the unpruned latency, timed in turns with it, 7 steps")
for repeat in range(2):
    for align in MULTIPLES:
        def measure_ms(ratio):
            pair = latency.measure_rounds([unpruned, build(budget.aligned_widths(full, ratio, align, full))], BACKEND, batch,
                                          PRECISION, input_size, rounds=1, min_iters=30, min_seconds=1.0, warmup_seconds=0.3,
                                          threads=THREADS)
            return pair[1][0]["median_ms"] / pair[0][0]["median_ms"]

        ratio, measured = budget.bisect_ratio(measure_ms, TARGET, steps=7)
        kept = cost(budget.aligned_widths(full, ratio, align, full))[0] / full_macs if ratio else None
        print(json.dumps({"repeat": repeat, "align": align, "ratio": ratio, "measured_x": measured, "macs_kept": kept}))
