"""Greedy forward selection (Ye et al., ICML 2020): grow each group from empty.

At every step a fresh training mini-batch is drawn, up to ``candidates`` channels not yet chosen
are tried, and the one whose addition gives the lowest loss of the *whole network's output* is
kept. Kept channels are scaled by (full width) / (kept count). A group stops growing when the
held-out top-1 is back within ``tolerance`` of the group's starting top-1, or at ``max_keep``.
"""
import math

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


def tries_per_step(candidates, adds):
    """Channels a greedy step tries: ``candidates``, and at least twice the ``adds`` it keeps."""
    return max(candidates, 2 * adds)


def greedy_steps(width, score, keep, *, candidates, per_step=1, generator=None, device="cpu"):
    """The greedy loop both papers share, yielding the chosen channels (one list, grown in place) after every step.

    A step tries up to ``candidates`` random channels not yet chosen (at least twice the channels it adds);
    ``score(chosen, trial)`` rates each channel of ``trial`` added to ``chosen``, lower is better, and the
    best ``per_step`` join ``chosen``. The loop ends at ``keep`` channels, or when the caller stops reading.
    """
    chosen, remaining = [], torch.arange(width, device=device)
    while len(chosen) < keep:
        adds = min(per_step, keep - len(chosen))
        picks = torch.randperm(len(remaining), generator=generator)[: tries_per_step(candidates, adds)].to(device)
        scores = score(chosen, remaining[picks]).to(device)
        best = picks[scores.argsort(stable=True)[:adds]]  # stable: ties go to the first tried, as argmin does
        chosen += remaining[best].tolist()
        left = torch.ones(len(remaining), dtype=torch.bool, device=device)
        left[best] = False
        remaining = remaining[left]
        yield chosen


def _network_loss(graph_module, plan, width, draw_batch, rows):
    """GFS's score: the whole network's loss on a fresh mini-batch with each trial channel added to the chosen ones
    (uniformly re-weighted), every trial stacked into one pass of the group's suffix ``plan``.

    The stack is padded to ``rows`` masks (a step's ``tries_per_step``), so the steps keep one shape as a group's
    channels run out. On an H200 (reports/h200_2026-11-29/, the imitation curves) the 32-channel stem, whose steps
    stacked 32, 31, ... 5 candidates, took 46.6 s of 113 s, and a 64-channel group stacking 50 and then 49 down to 19
    took 11.7 s, against 0.4-4.4 s for groups of 144 to 1280 channels that stacked 50 at every step; the cause, a new
    cuDNN plan for each convolution at each new batch shape, is inferred, not yet measured."""

    @torch.no_grad()
    def score(chosen, trial):
        images, labels, teacher = draw_batch()
        device = images.device
        dtype = engine.ranking_dtype(device)
        cache = engine.record(graph_module, images, dtype, plan)
        masks = torch.zeros(max(rows, len(trial)), width, device=device)  # the padding keeps the chosen channels only
        masks[:, chosen] = 1.0
        masks[torch.arange(len(trial), device=device), trial] = 1.0
        masks *= width / (len(chosen) + 1)
        logits = engine.masked_logits(graph_module, cache, plan, masks, dtype)
        return engine.loss_per_mask(logits, labels, teacher)[:len(trial)]

    return score


@torch.no_grad()
def heldout_scores(graph_module, heldout_cache, heldout_labels, plan, masks, teacher_logits=None):
    logits = engine.masked_logits(graph_module, heldout_cache, plan, masks)
    return engine.loss_per_mask(logits, heldout_labels, teacher_logits), engine.top1_per_mask(logits, heldout_labels)


@torch.no_grad()
def select_group(graph_module, group, draw_batch, heldout, *, candidates=50, tolerance=0.02, max_keep=None,
                 generator=None, tail_scores=None):
    """Order a group's channels greedily; returns (order, curve with the held-out loss/top-1 per visited k, the k at
    which the stop was met: the tolerance, or ``max_keep``).

    ``draw_batch()`` gives (images, labels, teacher_logits or None) on the model's device;
    ``heldout`` is (images, labels, teacher_logits or None), fixed for the whole selection.
    """
    images, labels, teacher = heldout
    device = images.device
    width = group.width
    max_keep = width if max_keep is None else min(max_keep, width)
    check_every = max(1, width // 32)  # a held-out pass every 1/32 of the width, about 32 curve points
    plan = engine.suffix(graph_module, group.consumers)
    heldout_cache = engine.record(graph_module, images, plan=plan)
    full = torch.full((1, width), 1.0, device=device)
    start_loss, start_top1 = heldout_scores(graph_module, heldout_cache, labels, plan, full, teacher)
    chosen, curve = [], {"k": [], "loss": [], "top1": []}
    score = _network_loss(graph_module, plan, width, draw_batch, rows=tries_per_step(candidates, 1))
    for chosen in greedy_steps(width, score, max_keep, candidates=candidates, generator=generator, device=device):
        if len(chosen) % check_every == 0 or len(chosen) == max_keep:
            loss, top1 = heldout_scores(graph_module, heldout_cache, labels, plan, uniform_mask(width, chosen, device)[None],
                                        teacher)
            curve["k"].append(len(chosen))
            curve["loss"].append(float(loss))
            curve["top1"].append(float(top1))
            if float(top1) >= float(start_top1) - tolerance:
                break
    order = complete_order(chosen, width, tail_scores)
    stop = curve["k"][-1] if curve["k"] else width
    curve["k"].append(width)
    curve["loss"].append(float(start_loss))
    curve["top1"].append(float(start_top1))
    return order, curve, stop


@torch.no_grad()
def grow_to(graph_module, group, draw_batch, keep, *, candidates=50, steps=24, generator=None):
    """Exactly ``keep`` channels of ``group`` chosen greedily, in order of choice.

    As ``select_group``, but the stop is a width, and a wide group adds the best ceil(keep / steps)
    candidates of each step instead of one, so every group costs at most ``steps`` stacked passes.
    """
    per_step = max(1, math.ceil(keep / steps))
    score = _network_loss(graph_module, engine.suffix(graph_module, group.consumers), group.width, draw_batch,
                          rows=tries_per_step(candidates, per_step))
    chosen = []
    for chosen in greedy_steps(group.width, score, keep, candidates=candidates, per_step=per_step, generator=generator,
                               device=next(graph_module.parameters()).device):
        pass
    return chosen
