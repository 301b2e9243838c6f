"""The classic criteria, behind the same interface as GFS: a score per channel, higher = keep.

``l1``: L1 norm of the filters (Li et al., 2017). ``bnscale``: |gamma| of the BatchNorms (Network
Slimming). ``taylor``: first-order Taylor importance, (Σ g·w)² per filter and batch (Molchanov et al.,
2019). ``random``. ``uniform``: keep the first channels in index order, i.e. a width multiplier.
Channels coupled in one group add their scores over every layer of the group, as Torch-Pruning does.
"""
import copy

import torch
import torch_pruning as tp
from torch import nn

from compress import graph


def l1_scores(model, group):
    scores = torch.zeros(group.width)
    for name in group.producers + group.depthwise:
        module = model.get_submodule(name)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = module.weight.detach().cpu()
            scores += weight.abs().flatten(1).sum(1) / weight[0].numel()
    return scores


def bnscale_scores(model, group):
    scores = torch.zeros(group.width)
    bns = [model.get_submodule(n) for n in group.producers if isinstance(model.get_submodule(n), nn.BatchNorm2d)]
    for bn in bns:
        scores += bn.weight.detach().abs().cpu()
    return scores if bns else l1_scores(model, group)


def taylor_scores(model, groups, draw_batch, batches=8):
    """Per output channel, (sum of g * w)^2 on each training mini-batch, summed over a few mini-batches, for every group
    (Molchanov et al., 2019: squared per batch, so gradients of opposite sign on different batches do not cancel)."""
    was_training = model.training
    model.eval()
    scores = {group.id: torch.zeros(group.width) for group in groups}
    with torch.enable_grad():
        for _ in range(batches):
            model.zero_grad(set_to_none=True)
            images, labels, _ = draw_batch()
            nn.functional.cross_entropy(model(images), labels).backward()
            for group in groups:
                for name in group.producers + group.depthwise:
                    module = model.get_submodule(name)
                    if module.weight.grad is not None:
                        contribution = (module.weight.grad * module.weight).detach()
                        scores[group.id] += contribution.reshape(len(contribution), -1).sum(1).pow(2).cpu()
    model.train(was_training)
    model.zero_grad(set_to_none=True)
    return scores


def order_by(scores):
    return torch.argsort(scores, descending=True, stable=True).tolist()


def uniform_l1_network(model, input_size, ratio):
    """A pruned copy of ``model`` with round(ratio x width) channels of every group, the largest L1 norms kept."""
    groups = graph.list_groups(model, input_size)
    widths = graph.widths_at_ratio(groups, ratio)
    keep = {g.id: order_by(l1_scores(model, g))[: widths[g.id]] for g in groups}
    return graph.prune(copy.deepcopy(model), input_size, keep)


def torch_pruning_l1_network(model, input_size, ratio, round_to):
    """A pruned copy of ``model`` made by Torch-Pruning itself, as its README runs it: MagnitudePruner with L1
    importance, one ratio for every group, channel counts rounded to ``round_to``; the classifier is kept."""
    model = copy.deepcopy(model)
    pruner = tp.pruner.MagnitudePruner(model, graph.example_input(input_size), importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=1 - ratio, round_to=round_to, ignored_layers=[graph.classifier_of(model)])
    pruner.step()
    return model
