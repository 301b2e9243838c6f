"""Checkpoints of MobileNetV2 (small stem, 28 px) at about 50% of its MACs: one keep ratio in every group, the channel
counts left as they fall (align 1) or rounded to 8 / 16; the unpruned network beside them."""
import torch
from compress import budget, graph, macs, zoo

input_size = (1, 28, 28)
model = zoo.build_model("mobilenet_v2", num_classes=10, in_chans=1, stem="small").eval()
groups = graph.list_groups(model, input_size)
full = {g.id: g.width for g in groups}
cost = macs.width_cost_model(model, input_size, groups)
arch = graph.make_arch("mobilenet_v2", 10, 1, "small", input_size)
graph.save_checkpoint("unpruned.pt", model, arch)
for align in (1, 8, 16):
    measure = lambda r: cost(budget.aligned_widths(full, r, align, full))[0]
    ratio, _ = budget.bisect_ratio(measure, 0.5 * cost(full)[0], steps=12)
    widths = budget.aligned_widths(full, ratio, align, full)
    pruned = zoo.build_model("mobilenet_v2", num_classes=10, in_chans=1, stem="small").eval()
    keep = {gid: list(range(w)) for gid, w in widths.items() if w < full[gid]}
    graph.prune(pruned, input_size, keep)
    graph.save_pruned(f"align{align}.pt", pruned, arch)
    print(align, round(ratio, 4), f"{cost(widths)[0] / cost(full)[0]:.3f} of the MACs", sorted(set(widths.values()))[:8])
