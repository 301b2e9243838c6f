"""Selection cost: stacked candidates on a cached prefix against one full forward per candidate."""
import time

import torch

from bench import latency
from compress import graph
from compress.select import engine


def synchronize(device):
    """Wait for a GPU's queued work, so a timer read after it counts that work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def compare(model, input_size, images, labels, *, candidates=50, steps=2):
    """Seconds of greedy steps over every group for both schemes, on the same inputs and masks.

    A step is what GFS repeats: score ``candidates`` masks of one group on one mini-batch (the
    batched scheme also records that batch's cache). Deep groups gain most from the cached prefix,
    so the comparison walks all of them, as a whole selection does.
    """
    model = model.eval()
    graph_module = engine.trace(model)
    dtype = engine.ranking_dtype(images.device)  # both schemes in the precision greedy steps use
    generator = torch.Generator().manual_seed(0)
    totals = {"batched": 0.0, "one_by_one": 0.0}
    max_difference = 0.0
    groups = graph.list_groups(model, input_size)
    for group in groups:
        masks = [(torch.rand(candidates, group.width, generator=generator) < 0.5).float().to(images.device) * 2
                 for _ in range(steps + 1)]
        plan = engine.suffix(graph_module, group.consumers)  # once per group, as a greedy selection plans it
        schemes = {
            "batched": lambda mask: engine.loss_per_mask(engine.masked_logits(
                graph_module, engine.record(graph_module, images, dtype, plan), plan, mask, dtype), labels),
            "one_by_one": lambda mask: engine.loss_per_mask(
                engine.masked_logits_one_by_one(model, images, group.consumers, mask, dtype), labels),
        }
        losses = {}
        for name, step in schemes.items():
            step(masks[0])  # warm-up (cudnn autotuning, allocator)
            synchronize(images.device)
            started = time.perf_counter()
            with torch.profiler.record_function(name):  # a row of its own in profile()'s table
                losses[name] = torch.stack([step(mask) for mask in masks[1:]])
                synchronize(images.device)
            totals[name] += time.perf_counter() - started
        max_difference = max(max_difference, float((losses["batched"] - losses["one_by_one"]).abs().max()))
    return {
        "groups": len(groups),
        "steps_per_group": steps,
        "candidates": candidates,
        "batch_size": len(images),
        "seconds_per_step_batched": totals["batched"] / (steps * len(groups)),
        "seconds_per_step_one_by_one": totals["one_by_one"] / (steps * len(groups)),
        "speedup": totals["one_by_one"] / totals["batched"],
        "max_loss_difference": max_difference,
        "precision": engine.ranking_precision(images.device),
        "device": latency.device_name(images.device),
    }


def profile(model, input_size, images, labels, *, candidates=50):
    """torch.profiler's operator table of one more step of each scheme per group (the rows ``batched`` and
    ``one_by_one`` hold each scheme's total): where a step's time goes, kept apart from the timed comparison."""
    on_gpu = images.device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
    with torch.profiler.profile(activities=activities) as profiler:
        compare(model, input_size, images, labels, candidates=candidates, steps=1)
    return profiler.key_averages().table(sort_by="self_device_time_total" if on_gpu else "self_cpu_time_total", row_limit=40)
