"""Channel selection: one interface for greedy forward selection and the classic criteria.

``select_channels`` returns, for every group, its channels *in order of choice* and the held-out
loss/top-1 of the whole network after keeping the first k of them (for every k it visited). Width
allocation reads those curves; ``apply_selection`` rebuilds the network at the chosen widths.

``imitation`` (Ye et al., NeurIPS 2020) orders each group twice, by global imitation (GFS against the
unpruned network's logits) and by local imitation (the group's readers re-fitted by least squares,
see ``imitation.py``), and keeps whichever imitates the unpruned network better on the held-out batch.

``select_at_widths`` is the other entry: given the widths, it selects groups input to output on the
network the earlier cuts left, and returns that network already pruned.
"""
import copy
import time

import torch
from tqdm import tqdm

from compress import data as datasets, finetune, graph
from compress.errors import UserError
from compress.select import baselines, engine, gfs, imitation

METHODS = ("gfs", "l1", "bnscale", "taylor", "random", "uniform", "imitation")
SEQUENTIAL_METHODS = ("gfs", "imitation")  # the methods select_at_widths runs: greedy, on the progressively cut network
DATA_FREE_METHODS = ("l1", "bnscale", "random", "uniform")  # orders read from the weights alone (order_channels)
SCALE = {"gfs": "uniform"}  # how kept channels are re-weighted; the baselines drop channels without re-weighting


def check_method(method):
    if method not in METHODS:
        raise UserError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
    return method


def check_data_free(method):
    """Random weights (latency-only runs) carry no signal for the greedy methods or Taylor: only weight orders apply."""
    if method not in DATA_FREE_METHODS:
        raise UserError(f"--method {method} needs trained weights and data; a latency-only run (random weights) orders "
                        f"channels by {', '.join(DATA_FREE_METHODS)}")
    return method


def _working_copies(model, device, kd):
    """(the copy selection masks and cuts, the unpruned teacher for KD losses or None), on ``device``."""
    on_device = dict(device=device, memory_format=torch.channels_last)  # channels_last halves the stacked suffix on CPU too
    teacher = copy.deepcopy(model).eval().to(**on_device) if kd else None
    return copy.deepcopy(model).eval().to(**on_device), teacher


def _with_teacher(draw_batch, teach):
    """draw_batch() -> (images, labels); this adds the unpruned network's logits (``teach(images)``) for KD losses."""

    @torch.no_grad()  # on a GPU ``teach`` is the module itself: no autograd graph for targets
    def draw():
        images, labels = draw_batch()
        return images, labels, teach(images) if teach is not None else None

    return draw


def _teacher_forward(teacher, input_size, device):
    """The unpruned network's forward for KD targets (ONNX Runtime on the CPU, see ``finetune.frozen_forward``)."""
    return finetune.frozen_forward(teacher, input_size, device) if teacher is not None else None


def geometric_ks(last, points=12):
    """About ``points`` widths from 1 to ``last``, denser where a curve bends most."""
    return sorted({int(round(k)) for k in torch.logspace(0, torch.log10(torch.tensor(float(last))), points).tolist()} | {last})


@torch.no_grad()
def prefix_curve(graph_module, group, order, heldout):
    """Held-out loss/top-1 after keeping the first k channels of ``order``, for a geometric grid of k."""
    images, labels, teacher = heldout
    ks = geometric_ks(group.width)
    masks = torch.zeros(len(ks), group.width, device=images.device)
    for row, k in enumerate(ks):
        masks[row, order[:k]] = 1.0
    plan = engine.suffix(graph_module, group.consumers)
    losses, top1 = gfs.heldout_scores(graph_module, engine.record(graph_module, images, plan=plan), labels, plan, masks, teacher)
    return {"k": ks, "loss": losses.tolist(), "top1": top1.tolist()}


def select_channels(model, input_size, method, draw_batch, heldout, *, loss="ce", candidates=50, tolerance=0.02,
                    max_keep_ratio=1.0, group_ids=None, seed=0, progress=True):
    """Select channels of every group of ``model`` (left untouched) with ``method``.

    ``draw_batch()`` returns a fresh training mini-batch (images, labels) on the model's device;
    ``heldout`` is a fixed (images, labels) pair from the training set, never from the test split.
    Each group is selected against the otherwise unpruned network (``select_at_widths`` cuts as it goes).
    ``imitation`` always uses the KD loss: imitating the unpruned network is what it means.
    """
    check_method(method)
    if loss not in ("ce", "kd"):
        raise UserError(f"unknown selection loss '{loss}'; choose ce or kd")
    loss = "kd" if method == "imitation" else loss
    started = time.perf_counter()
    device = heldout[0].device
    work, teacher = _working_copies(model, device, kd=loss == "kd")
    groups = graph.list_groups(work, input_size)
    if group_ids is not None:
        groups = [g for g in groups if g.id in set(group_ids)]
    graph_module = engine.trace(work)
    teach = _teacher_forward(teacher, input_size, device)
    draw = _with_teacher(draw_batch, teach)
    with torch.no_grad():
        heldout = (*heldout, teach(heldout[0]) if teach is not None else None)
        full_logits = work(heldout[0])
    generator = torch.Generator().manual_seed(seed)
    scores = {}
    if method == "taylor":
        scores = baselines.taylor_scores(work, groups, lambda: draw_batch() + (None,))
    results = []
    for group in tqdm(groups, desc=f"select ({method})", disable=None if progress else True):
        group_started = time.perf_counter()
        entry = {"id": group.id, "width": group.width, "scale": SCALE.get(method, "none")}
        if method in ("gfs", "imitation"):
            options = dict(candidates=candidates, tolerance=tolerance, max_keep=max(1, int(round(max_keep_ratio * group.width))),
                           generator=generator, tail_scores=baselines.l1_scores(work, group))
            if method == "gfs":
                order, curve, entry["stop"] = gfs.select_group(graph_module, group, draw, heldout, **options)
            else:
                order, curve, entry["stop"], systems = _imitate(graph_module, group, draw, heldout, **options)
                entry.update(scale="refit" if systems else "uniform", imitation="local" if systems else "global")
        else:
            order = baselines.order_by(scores[group.id] if method == "taylor" else _criterion_scores(work, group, method, generator))
            curve = prefix_curve(graph_module, group, order, heldout)
        entry.update(order=[int(c) for c in order], curve=curve, seconds=time.perf_counter() - group_started)
        results.append(entry)
    labels = heldout[1]
    return {
        "method": method,
        "loss": loss,
        "candidates": candidates,
        "tolerance": tolerance,
        **({"ranking_precision": engine.ranking_precision(device)} if method in ("gfs", "imitation") else {}),
        "full_loss": float(engine.loss_per_mask(full_logits[None], labels, heldout[2])[0]),
        "full_top1": float(engine.top1_per_mask(full_logits[None], labels)[0]),
        "seconds": time.perf_counter() - started,
        "groups": results,
    }


def _criterion_scores(model, group, method, generator):
    """Per-channel scores of a data-free criterion, higher kept first."""
    if method == "l1":
        return baselines.l1_scores(model, group)
    if method == "bnscale":
        return baselines.bnscale_scores(model, group)
    if method == "random":
        return torch.rand(group.width, generator=generator)
    return -torch.arange(group.width, dtype=torch.float)  # uniform: a width multiplier keeps the first channels


def order_channels(model, input_size, method, seed=0):
    """Every group's channels in the order of a criterion that reads no data, with the widths a curve would visit
    and no losses: for random weights (latency-only runs), whose held-out losses say nothing
    (``budget.capacity_curves`` gives their curves instead) and cost most of a CPU run at 224 px."""
    check_data_free(method)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    groups = []
    for group in graph.list_groups(model, input_size):
        order = baselines.order_by(_criterion_scores(model, group, method, generator))
        groups.append({"id": group.id, "width": group.width, "scale": "none", "order": [int(c) for c in order],
                       "curve": {"k": geometric_ks(group.width)}})
    return {"method": method, "loss": None, "seconds": time.perf_counter() - started, "groups": groups}


def select_at_widths(model, input_size, widths, draw_batch, recalibrate, heldout=None, *, method="gfs", loss="ce",
                     candidates=50, steps=24, seed=0, progress=True):
    """Greedy selection to given widths, the published way: groups input to output, each chosen on the network
    whose earlier groups are already cut, with BN statistics re-estimated after every cut.

    Per-group curves are measured on the otherwise unpruned network, so they say nothing about how cuts
    compound; here every group picks the channels that best serve the network the earlier cuts left.
    ``gfs`` folds the uniform re-weighting into the group's readers (into their BatchNorm where one follows).
    ``imitation`` grows the group twice,
    by GFS against the unpruned logits (global) and by least-squares reconstruction (local), re-fits the
    readers on the kept channels to reproduce the *unpruned* network's outputs, and keeps whichever order
    imitates the unpruned network better on ``heldout`` (images, labels) training images, which the
    re-fits are solved on. ``recalibrate(model)`` re-estimates BN statistics in place.

    Returns (selection, the physically pruned network): re-fitted weights are not a function of the order,
    so the network selection built is the result, not something to rebuild.
    """
    check_method(method)
    if method not in SEQUENTIAL_METHODS:
        raise ValueError(f"select_at_widths runs {' or '.join(SEQUENTIAL_METHODS)}, not {method}")
    if method == "imitation" and heldout is None:
        raise ValueError("imitation at widths needs held-out training images to solve its re-fits on")
    loss = "kd" if method == "imitation" else loss
    started = time.perf_counter()
    device = next(model.parameters()).device
    work, teacher = _working_copies(model, device, kd=loss == "kd")
    graph_module = engine.trace(work)
    normalised = graph.normalised_layers(work)
    teach = _teacher_forward(teacher, input_size, device)
    draw = _with_teacher(draw_batch, teach)
    if method == "imitation":
        with torch.no_grad():
            heldout = (*heldout, teach(heldout[0]))
    generator = torch.Generator().manual_seed(seed)
    results, keep_of = [], {}
    for group in tqdm(graph.list_groups(work, input_size), desc=f"{method} at widths", disable=None if progress else True):
        group_started = time.perf_counter()
        keep = widths.get(group.id, group.width)
        entry = {"id": group.id, "width": group.width, "keep": keep, "scale": "uniform" if method == "gfs" else "refit"}
        chosen = list(range(group.width))
        if keep < group.width:
            chosen = gfs.grow_to(graph_module, group, draw, keep, candidates=candidates, steps=steps, generator=generator)
            if method == "gfs":
                _fold_uniform(work, group, chosen, normalised)
            else:
                chosen, entry["imitation"], entry["heldout_kd"] = _imitate_at_width(work, teacher, group, chosen, heldout, keep,
                                                                                    candidates, steps, generator)
            keep_of[group.id] = chosen
            recalibrate(work)
            work.eval()
        order = gfs.complete_order(chosen, group.width, baselines.l1_scores(work, group))
        results.append({**entry, "order": order, "seconds": time.perf_counter() - group_started})
    work.to(memory_format=torch.contiguous_format)
    pruned = graph.prune(work, input_size, keep_of) if keep_of else work
    selection = {"method": method, "loss": loss, "candidates": candidates, "steps": steps, "sequential": True,
                 "ranking_precision": engine.ranking_precision(device), "seconds": time.perf_counter() - started,
                 "groups": results}
    return selection, pruned.eval()


def select_at_widths_on_data(model, input_size, widths, data, *, device, select_batch, heldout, recal_batches, seed=0,
                             **options):
    """``select_at_widths`` fed from ``data``: greedy steps on ``select_batch``-image training batches, ``heldout``
    training images kept apart for the choices, and BN re-estimated on ``recal_batches`` shuffled training batches
    after each cut. ``options``: method, loss, candidates, steps."""
    draw, held = datasets.selection_batches(data, select_batch, heldout, device, seed)
    recalibrate = lambda network: finetune.recalibrate_bn(network, data, device, batches=recal_batches)
    torch.manual_seed(seed)  # the shuffled batches BN is re-estimated on after each cut: every call alike
    return select_at_widths(model, input_size, widths, draw, recalibrate, held, seed=seed, **options)


def _imitate_at_width(work, teacher, group, global_order, heldout, keep, candidates, steps, generator):
    """(kept channels, which imitation won, held-out KD loss of each) with the readers of ``group`` re-fitted in ``work``.

    Both orders are re-fitted to the unpruned network's reader outputs on ``heldout`` images and compared there.
    """
    images, labels, teacher_logits = heldout
    systems = imitation.normal_equations(work, group, images, reference=teacher)
    orders = {"global": global_order, "local": imitation.local_order(systems, group.width, keep, candidates, generator, steps)}
    with torch.no_grad():
        losses = {}
        for name, chosen in orders.items():
            imitation.write_refit(work, systems, chosen)
            losses[name] = float(engine.loss_per_mask(work(images)[None], labels, teacher_logits)[0])
    winner = min(losses, key=losses.get)
    imitation.write_refit(work, systems, orders[winner])
    return orders[winner], winner, losses


def _imitate(graph_module, group, draw, heldout, *, candidates, tolerance, max_keep, generator, tail_scores):
    """(order, curve, stop, re-fit systems or None) of whichever imitation of one group wins on the held-out batch.

    Global imitation is GFS against the unpruned logits; local imitation then grows the same number
    of channels by least-squares re-fit of the group's consumers on a fresh mini-batch. The two are
    compared by held-out KD loss at that width, each with its own re-weighting (scaled or re-fitted).
    """
    order, curve, stop = gfs.select_group(graph_module, group, draw, heldout, candidates=candidates, tolerance=tolerance,
                                          max_keep=max_keep, generator=generator, tail_scores=tail_scores)
    if stop >= group.width:
        return order, curve, stop, None
    systems = imitation.normal_equations(graph_module, group, draw()[0])
    chosen = imitation.local_order(systems, group.width, stop, candidates, generator)
    local = gfs.complete_order(chosen, group.width, tail_scores)
    local_curve = imitation.refit_curve(graph_module, group, local, systems, heldout, geometric_ks(stop) + [group.width])
    if local_curve["loss"][-2] < curve["loss"][-2]:
        return local, local_curve, stop, systems
    return order, curve, stop, None


@torch.no_grad()
def _fold_uniform(model, group, kept, normalised):
    """Fold the GFS mask (kept channels scaled by width/len(kept), others zero) into the group's readers.

    A reader followed by BatchNorm (``normalised``: reader -> BN) keeps its weights' scale; its BN takes the factor.
    """
    mask = gfs.uniform_mask(group.width, list(kept), "cpu")
    for name in group.consumers:
        weight = model.get_submodule(name).weight
        weight *= mask.to(weight.device).view(1, -1, *([1] * (weight.dim() - 2)))
        if name in normalised:
            graph.rescale_into_norm(model, name, normalised[name], torch.full((weight.shape[0],), group.width / len(kept)))


def apply_selection(model, input_size, selection, widths, images=None):
    """Physically prune ``model`` so group g keeps ``order[:widths[g]]``, re-weighting folded in.

    Groups whose entry says ``scale == "refit"`` (imitation) have their consumers re-fitted at the
    allocated width on ``images``, training images on the model's device, as selection evaluated
    them. Re-fits go input to output, each on the inputs the network computes after the earlier ones.
    A sequential selection (``select_at_widths``) is not rebuilt here: it returns its network.
    """
    if selection.get("sequential"):
        raise ValueError("a selection made at widths carries its own pruned network; use the one select_at_widths returned")
    by_id = {entry["id"]: entry for entry in selection["groups"]}
    groups = {g.id: g for g in graph.list_groups(model, input_size)}
    keep = {}
    for group_id, width in widths.items():
        if width < groups[group_id].width:
            entry = by_id.get(group_id)
            keep[group_id] = entry["order"][:width] if entry else list(range(width))
    scales = {group_id: by_id[group_id]["scale"] if group_id in by_id else "none" for group_id in keep}
    refits = [group_id for group_id in groups if scales.get(group_id) == "refit"]  # input to output
    if refits and images is None:
        raise ValueError(f"group {refits[0]} is re-fitted by imitation: apply_selection needs training images")
    normalised = graph.normalised_layers(model)
    for group_id, kept in keep.items():
        if scales[group_id] == "uniform":
            _fold_uniform(model, groups[group_id], kept, normalised)
    if refits:
        graph_module = engine.trace(model)
        for group_id in refits:
            systems = imitation.normal_equations(graph_module, groups[group_id], images)
            imitation.write_refit(graph_module, systems, keep[group_id])
    return graph.prune(model, input_size, keep)
