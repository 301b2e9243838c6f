"""How often each rule picks each channel multiple, on the demo's network and backend, repeated back to back.

old: compress.budget.best_alignment before this change: each candidate at half width timed in its own pair with the
     unpruned network (one round), the finest multiple within 3% of the best score.
new: best_alignment as it is: every candidate at 0.6 of its width and every narrowest network timed in one measurement,
     in turns (three rounds, the final bench's count), the finest within 1% of the best among those that reach the
     target.
Both through compress.timing.latency_against_unpruned with the demo's CPU settings (ort-cpu, batch 8, fp32, 1 thread,
30 iterations and 1 s per round, 0.3 s warm-up). Random weights and every group shrinkable: latency only.

    python choice.py [REPEATS]   # default 6
"""
import datetime
import json
import sys
import tempfile
from pathlib import Path

from bench import latency
from compress import budget, graph, macs, timing, zoo

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 6
input_size = (1, 28, 28)
config = {"backend": "ort-cpu", "batch_size": 8, "precision": "fp32", "threads": 1, "bench_iters": 30, "bench_seconds": 1.0,
          "bench_warmup": 0.3, "bench_rounds": 3}
model = zoo.build_model("mobilenet_v2", num_classes=10, in_chans=1, stem="small").eval()
arch = graph.make_arch("mobilenet_v2", 10, 1, "small", input_size)
groups = graph.list_groups(model, input_size)
full = {g.id: g.width for g in groups}
cost = macs.width_cost_model(model, input_size, groups)
selection = {"groups": [{"id": gid, "width": w} for gid, w in full.items()]}
build = lambda widths: graph.build_from_arch({**arch, "widths": widths})


def old_rule(measure_widths, candidates=(8, 16, 32), tolerance=0.03):
    full_ms, full_macs = measure_widths(full), cost(full)[0]
    scores = {}
    for align in candidates:
        widths = {gid: max(align, (w // 2) // align * align) if w > align else w for gid, w in full.items()}
        scores[align] = (full_ms - measure_widths(widths)) / max((full_macs - cost(widths)[0]) / 1e6, 1e-9)
    best = max(scores.values())
    return min(a for a in candidates if scores[a] >= best - abs(best) * tolerance), scores


print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ} choice.py {repeats}; mobilenet_v2 small stem "
      f"{list(input_size)}, {json.dumps(config)}, {latency.cpu_name()}")
with tempfile.TemporaryDirectory() as scratch:
    unpruned_ms = 1.0  # scores are ratios to the unpruned network here: ms saved per MMAC, in units of the unpruned latency
    with timing.latency_against_unpruned(config, model, input_size, unpruned_ms, Path(scratch) / "cache.json") as measure:
        for repeat in range(repeats):
            old, old_scores = old_rule(lambda widths: measure(lambda: [build(widths)], key=[repeat, widths])[0])
            target = 0.5 * unpruned_ms
            new, new_measured = budget.best_alignment(
                model, input_size, selection,
                lambda configs: measure(lambda: [build(w) for w in configs], key=[repeat, "new", configs], rounds=3), target)
            fmt = lambda scores: ", ".join(f"{a}: {s:.4f}" for a, s in scores.items())
            print(f"repeat {repeat}: old picks {old} ({fmt(old_scores)}); new picks {new} ({fmt(new_measured['ms_saved_per_mmac'])}; "
                  f"floors {fmt(new_measured['floor_ms'])})", flush=True)
