"""Selection cost: stacked candidates on a cached prefix against one full forward per candidate."""
import time

import torch

from compress import graph
from compress.select import engine


def _synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def compare(model, input_size, images, labels, *, candidates=50, steps=10, group_id=None, warmup=2):
    """Seconds per greedy step for both schemes on the same inputs and masks, and their max loss gap.

    The step is the one GFS repeats: record the batch once, then score ``candidates`` masks.
    """
    model = model.eval()
    groups = graph.list_groups(model, input_size)
    group = next(g for g in groups if g.id == group_id) if group_id else groups[len(groups) // 4]
    graph_module = engine.trace(model)
    generator = torch.Generator().manual_seed(0)
    masks = [(torch.rand(candidates, group.width, generator=generator) < 0.5).float().to(images.device) * 2 for _ in range(steps + warmup)]

    def batched(mask):
        cache = engine.record(graph_module, images)
        return engine.loss_per_mask(engine.masked_logits(graph_module, cache, group.consumers, mask), labels)

    def one_by_one(mask):
        return engine.loss_per_mask(engine.masked_logits_one_by_one(model, images, group.consumers, mask), labels)

    timings, losses = {}, {}
    for name, step in (("batched", batched), ("one_by_one", one_by_one)):
        for mask in masks[:warmup]:
            step(mask)
        _synchronize(images.device)
        started = time.perf_counter()
        losses[name] = torch.stack([step(mask) for mask in masks[warmup:]])
        _synchronize(images.device)
        timings[name] = (time.perf_counter() - started) / steps
    return {
        "group": group.id,
        "group_width": group.width,
        "candidates": candidates,
        "batch_size": len(images),
        "steps": steps,
        "seconds_per_step_batched": timings["batched"],
        "seconds_per_step_one_by_one": timings["one_by_one"],
        "speedup": timings["one_by_one"] / timings["batched"],
        "max_loss_difference": float((losses["batched"] - losses["one_by_one"]).abs().max()),
        "device": str(images.device),
    }
