"""Checkpoints of a zoo model at about half its MACs: one keep ratio in every group, the channel counts left as they
fall (align 1) or rounded to 8 / 16; the unpruned network beside them. Random weights: for timing only.

    python make.py [MODEL STEM SIDE CHANNELS CLASSES]   # default: mobilenet_v2 small 28 1 10, into ./MODEL_SIDE/
"""
import sys
from pathlib import Path

from compress import budget, graph, macs, zoo

name, stem, side, channels, classes = (sys.argv[1:] + ["mobilenet_v2", "small", "28", "1", "10"][len(sys.argv) - 1:])[:5]
input_size, channels, classes = (int(channels), int(side), int(side)), int(channels), int(classes)
out = Path(f"{name}_{side}")
out.mkdir(exist_ok=True)
build = lambda: zoo.build_model(name, num_classes=classes, in_chans=channels, stem=stem).eval()
model = build()
groups = graph.list_groups(model, input_size)
full = {g.id: g.width for g in groups}
cost = macs.width_cost_model(model, input_size, groups)
arch = graph.make_arch(name, classes, channels, stem, input_size)
graph.save_checkpoint(out / "unpruned.pt", model, arch)
for align in (1, 8, 16):
    ratio, _ = budget.bisect_ratio(lambda r: cost(budget.aligned_widths(full, r, align, full))[0], 0.5 * cost(full)[0], steps=12)
    widths = budget.aligned_widths(full, ratio, align, full)
    pruned = build()
    graph.prune(pruned, input_size, {gid: list(range(w)) for gid, w in widths.items() if w < full[gid]})
    graph.save_pruned(out / f"align{align}.pt", pruned, arch)
    print(name, align, round(ratio, 4), f"{cost(widths)[0] / cost(full)[0]:.3f} of the MACs", sorted(set(widths.values()))[:8])
