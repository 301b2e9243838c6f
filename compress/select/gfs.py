"""Greedy forward selection (Ye et al., ICML 2020): grow each group from empty.

At every step a fresh training mini-batch is drawn, up to ``candidates`` channels not yet chosen
are tried, and the one whose addition gives the lowest loss of the *whole network's output* is
kept. Kept channels are scaled by (full width) / (kept count). A group stops growing when the
held-out top-1 is back within ``tolerance`` of the group's starting top-1, or at ``max_keep``.
"""
import math
import time

import torch

from compress.select import engine


def uniform_mask(width, kept, device):
    """The GFS re-weighting: kept channels scaled by width / len(kept), the rest zero."""
    mask = torch.zeros(width, device=device)
    mask[kept] = width / max(len(kept), 1)
    return mask


def complete_order(chosen, width, tail_scores=None):
    """The greedy choices first, then the channels never chosen, best ``tail_scores`` first (index order without)."""
    taken = set(chosen)
    tail = [c for c in range(width) if c not in taken]
    if tail_scores is not None:
        tail.sort(key=lambda c: -float(tail_scores[c]))
    return list(chosen) + tail


@torch.no_grad()
def _add_best(graph_module, group, draw_batch, chosen, remaining, candidates, adds, generator):
    """One greedy step: on a fresh mini-batch, try ``candidates`` random channels of ``remaining`` one at a time on
    top of ``chosen`` (uniformly re-weighted), append the ``adds`` best to ``chosen``; returns the channels left."""
    device = remaining.device
    images, labels, teacher = draw_batch()
    dtype = engine.ranking_dtype(device)
    cache = engine.record(graph_module, images, dtype, consumers=group.consumers)
    picks = torch.randperm(len(remaining), generator=generator, device="cpu")[:candidates].to(device)
    trial = remaining[picks]
    masks = torch.zeros(len(trial), group.width, device=device)
    masks[:, chosen] = 1.0
    masks[torch.arange(len(trial), device=device), trial] = 1.0
    masks *= group.width / (len(chosen) + 1)
    losses = engine.loss_per_mask(engine.masked_logits(graph_module, cache, group.consumers, masks, dtype), labels, teacher)
    best = picks[losses.argsort(stable=True)[:adds]]  # stable: ties go to the first tried, as argmin does
    chosen += remaining[best].tolist()
    left = torch.ones(len(remaining), dtype=torch.bool, device=device)
    left[best] = False
    return remaining[left]


@torch.no_grad()
def heldout_scores(graph_module, heldout_cache, heldout_labels, consumers, masks, teacher_logits=None):
    logits = engine.masked_logits(graph_module, heldout_cache, consumers, masks)
    return engine.loss_per_mask(logits, heldout_labels, teacher_logits), engine.top1_per_mask(logits, heldout_labels)


@torch.no_grad()
def select_group(graph_module, group, draw_batch, heldout, *, candidates=50, tolerance=0.02, max_keep=None,
                 check_every=None, generator=None, tail_scores=None):
    """Order a group's channels greedily; returns (order, curve with the held-out loss/top-1 per visited k, seconds).

    ``draw_batch()`` gives (images, labels, teacher_logits or None) on the model's device;
    ``heldout`` is (images, labels, teacher_logits or None), fixed for the whole selection.
    """
    images, labels, teacher = heldout
    device = images.device
    width = group.width
    max_keep = width if max_keep is None else min(max_keep, width)
    check_every = check_every or max(1, width // 32)
    heldout_cache = engine.record(graph_module, images, consumers=group.consumers)
    full = torch.full((1, width), 1.0, device=device)
    start_loss, start_top1 = heldout_scores(graph_module, heldout_cache, labels, group.consumers, full, teacher)
    chosen, remaining = [], torch.arange(width, device=device)
    curve = {"k": [], "loss": [], "top1": []}
    started = time.perf_counter()
    while len(chosen) < max_keep:
        remaining = _add_best(graph_module, group, draw_batch, chosen, remaining, candidates, 1, generator)
        if len(chosen) % check_every == 0 or len(chosen) == max_keep:
            loss, top1 = heldout_scores(graph_module, heldout_cache, labels, group.consumers,
                                        uniform_mask(width, chosen, device)[None], teacher)
            curve["k"].append(len(chosen))
            curve["loss"].append(float(loss))
            curve["top1"].append(float(top1))
            if float(top1) >= float(start_top1) - tolerance:
                break
    order = complete_order(chosen, width, tail_scores)
    curve["k"].append(width)
    curve["loss"].append(float(start_loss))
    curve["top1"].append(float(start_top1))
    return order, curve, time.perf_counter() - started


@torch.no_grad()
def grow_to(graph_module, group, draw_batch, keep, *, candidates=50, steps=24, generator=None):
    """Exactly ``keep`` channels of ``group`` chosen greedily, in order of choice.

    As ``select_group``, but the stop is a width, and a wide group adds the best ceil(keep / steps)
    candidates of each step instead of one, so every group costs at most ``steps`` stacked passes.
    """
    per_step = max(1, math.ceil(keep / steps))
    chosen, remaining = [], torch.arange(group.width, device=next(graph_module.parameters()).device)
    while len(chosen) < keep:
        adds = min(per_step, keep - len(chosen))
        remaining = _add_best(graph_module, group, draw_batch, chosen, remaining, max(candidates, 2 * adds), adds, generator)
    return chosen
