"""Channel surgery on Torch-Pruning's dependency graph.

A *group* is a set of channels that must be removed together: the outputs of a convolution, its
BatchNorm, the depthwise convolution that follows it, every layer tied to it through a residual
add or a squeeze-excitation gate, and the input channels of the layers that read it. Groups are
named by their first output-producing layer (in module order), which is stable across pruning,
so an architecture is fully described by ``{group id: kept width}``.

A pruned network is saved as its state_dict plus that architecture spec; loading rebuilds the
unpruned network, cuts every group to its saved width and loads the weights.
"""
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch_pruning as tp
from torch import fx, nn

from compress import io, zoo
from compress.errors import UserError


@dataclass
class Group:
    """One prunable unit: ``width`` channels that live in ``producers`` and are read by ``consumers``."""

    id: str
    width: int
    producers: list = field(default_factory=list)  # layers whose output channels these are (conv, BN, linear)
    consumers: list = field(default_factory=list)  # conv/linear layers (not depthwise) reading them as inputs
    depthwise: list = field(default_factory=list)  # depthwise convs the channels pass through


def example_input(input_size):
    """What Torch-Pruning traces with: only its shape matters, so it draws nothing from the global RNG."""
    return torch.zeros(1, *input_size)


def classifier_of(model):
    """The final Linear: its output channels are the classes and never prunable."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def dependency_graph(model, input_size):
    """Torch-Pruning traces autograd, so this works inside no_grad code and on any device."""
    device = next(model.parameters()).device
    with torch.enable_grad():
        return tp.DependencyGraph().build_dependency(model, example_input(input_size).to(device), verbose=False)


def is_depthwise(module):
    """A convolution that reads only the channel it writes: pruned with its input, not on its own."""
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def _describe(tp_group, names, order):
    """Turn a Torch-Pruning group into a Group, with its members in module order."""
    producers, consumers, depthwise = set(), set(), set()
    for item in tp_group:
        module, handler = item.dep.target.module, item.dep.handler
        if not isinstance(module, nn.Module) or module not in names:
            continue  # element-wise ops, reshapes: not layers
        if is_depthwise(module):
            depthwise.add(names[module])
        elif handler.__name__ == "prune_out_channels":
            producers.add(names[module])
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            if list(item.idxs) != list(item.root_idxs):
                raise NotImplementedError(f"channel remapping into {names[module]} (concat/split) is not supported")
            consumers.add(names[module])
    by_order = lambda members: sorted(members, key=order.__getitem__)
    producers = by_order(producers)
    layers = by_order([p for p in producers if not isinstance(_module_named(tp_group, p, names), nn.BatchNorm2d)] + list(depthwise))
    return Group(id=layers[0], width=len(tp_group[0].idxs), producers=producers, consumers=by_order(consumers), depthwise=by_order(depthwise))


def _module_named(tp_group, name, names):
    for item in tp_group:
        if names.get(item.dep.target.module) == name:
            return item.dep.target.module
    return None


def list_groups(model, input_size, graph=None):
    """The prunable groups of ``model``, in forward (module) order."""
    graph = graph or dependency_graph(model, input_size)
    names = {module: name for name, module in model.named_modules()}
    order = {name: i for i, name in enumerate(names.values())}
    groups = [_describe(g, names, order) for g in graph.get_all_groups(ignored_layers=[classifier_of(model)])]
    return sorted(groups, key=lambda g: order[g.id])


def prune(model, input_size, keep, graph=None, groups=None):
    """Physically keep only ``keep[group_id]`` channels (indices into the group) of each named group.

    Real smaller Conv2d/BatchNorm2d/Linear layers replace the old ones, in place. The kept
    channels stay in their original relative order, so a group cut to width w is described by w.
    ``graph`` and ``groups``, where the caller has them for this model, are not traced again.
    """
    graph = graph or dependency_graph(model, input_size)
    groups = {g.id: g for g in (groups or list_groups(model, input_size, graph))}
    modules = dict(model.named_modules())
    for group_id, kept in keep.items():
        if group_id not in groups:
            raise UserError(f"no prunable group '{group_id}' in this model; valid ids start with: {', '.join(list(groups)[:5])}")
        width = groups[group_id].width
        kept = set(int(i) for i in kept)
        if not kept or min(kept) < 0 or max(kept) >= width:
            raise ValueError(f"group {group_id}: kept indices must be a non-empty subset of range({width})")
        removed = [i for i in range(width) if i not in kept]
        if not removed:
            continue
        root = modules[group_id]
        handler = graph.get_pruner_of_module(root).prune_out_channels
        graph.get_pruning_group(root, handler, removed).prune()
    return model


def normalised_layers(model):
    """{layer name: the BatchNorm that normalises its output}, for convs/linears read by nothing else.

    Such a layer's weight scale is free to the function: the BatchNorm divides it out. It is not free to
    fine-tuning, whose step relative to the weights shrinks with the square of their norm, so GFS's rebuild
    leaves these weights unscaled and puts its re-weighting into the BatchNorm (reports/gfs_scale_fmnist_cpu).
    """
    traced = fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    layers = {}
    for node in traced.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            source = node.args[0]
            if (isinstance(source, fx.Node) and source.op == "call_module" and len(source.users) == 1
                    and isinstance(modules[source.target], (nn.Conv2d, nn.Linear))):
                layers[source.target] = node.target
    return layers


@torch.no_grad()
def rescale_into_norm(model, layer_name, norm_name, factors):
    """Divide layer ``layer_name``'s output channels by ``factors`` and let its BatchNorm ``norm_name`` undo it.

    Exact in eval mode: the running mean shrinks by f and the variance by f², and since eps does not shrink, the BN's
    weight grows by sqrt(v + f²·eps) / sqrt(v + eps), a factor near 1 unless the variance is as small as eps·f².
    (Shrinking ``v + eps`` instead would need a negative variance there.) In train mode it is exact up to that eps.
    """
    layer, norm = model.get_submodule(layer_name), model.get_submodule(norm_name)
    factors = factors.to(layer.weight)
    layer.weight.div_(factors.view(-1, *([1] * (layer.weight.dim() - 1))))
    if layer.bias is not None:
        layer.bias.div_(factors)
    if norm.running_mean is not None:
        variance = norm.running_var.clone()
        norm.running_mean.div_(factors)
        norm.running_var.div_(factors**2)
        if norm.weight is not None:
            norm.weight.mul_(((variance + factors**2 * norm.eps) / (variance + norm.eps)).sqrt())


def widths(model, input_size):
    """{group id: current width}."""
    return {g.id: g.width for g in list_groups(model, input_size)}


def widths_at_ratio(groups, ratio):
    """One keep ratio in every group, at least one channel each: the uniform baseline's shape, and Torch-Pruning's
    reference protocol."""
    return {g.id: max(1, round(g.width * ratio)) for g in groups}


def make_arch(model_name, num_classes, in_chans, stem, input_size, widths=None):
    """The architecture spec saved with every checkpoint: enough to rebuild the network exactly."""
    return {
        "model": model_name,
        "num_classes": int(num_classes),
        "in_chans": int(in_chans),
        "stem": stem,
        "input_size": [int(s) for s in input_size],
        "widths": {k: int(v) for k, v in (widths or {}).items()},
    }


def build_from_arch(arch):
    """The (possibly pruned) network an architecture spec describes, freshly initialised."""
    model = zoo.build_model(arch["model"], arch["num_classes"], arch["in_chans"], arch["stem"])
    if not arch["widths"]:
        return model
    dependencies = dependency_graph(model, arch["input_size"])
    groups = list_groups(model, arch["input_size"], dependencies)
    full = {g.id: g.width for g in groups}
    unknown = [g for g in arch["widths"] if g not in full]
    if unknown:
        raise UserError(f"architecture names group '{unknown[0]}', which {arch['model']} does not have")
    keep = {g: range(w) for g, w in arch["widths"].items() if w < full[g]}
    return prune(model, arch["input_size"], keep, dependencies, groups) if keep else model


def save_checkpoint(path, model, arch, **extra):
    """state_dict + arch (+ plain-typed extras); loadable with torch.load(weights_only=True)."""
    io.torch_save(path, {"arch": arch, "state_dict": model.state_dict(), **extra})


def save_pruned(path, model, arch):
    """A pruned ``model`` under the architecture it came from, with the widths it has now: the output width of each of
    the unpruned network's groups' first layer. (A trace of the pruned network sees a depthwise conv cut to one channel
    as an ordinary conv, heading a group of its own that no unpruned network has.)"""
    layers = dict(model.named_modules())
    groups = list_groups(build_from_arch({**arch, "widths": {}}), tuple(arch["input_size"]))
    now = {group.id: getattr(layers[group.id], "out_channels", None) or layers[group.id].out_features for group in groups}
    save_checkpoint(path, model, {**arch, "widths": now})


def read_checkpoint(path):
    """The raw checkpoint dict, or a UserError saying why the file is not one of ours."""
    if not Path(path).exists():
        raise UserError(f"checkpoint '{path}' does not exist; check the path")
    obj = zoo.load_weights_only(path, "pass a model.pt written by this toolkit")
    if not isinstance(obj, dict) or not isinstance(obj.get("arch"), dict) or "state_dict" not in obj:  # pytorch/examples' arch is a name
        raise UserError(f"'{path}' is a PyTorch file but not a toolkit checkpoint (no 'arch' of this toolkit); pass a model.pt written by this toolkit")
    return obj


def checkpoint_arch(path):
    """The architecture a checkpoint of this toolkit holds, or None for anything else (a bare state_dict, a torchvision
    weights name, a missing file)."""
    try:
        return read_checkpoint(path)["arch"] if Path(path).is_file() else None
    except UserError:
        return None


def check_model_name(model_name, arch, weights):
    """Refuse a --model naming another network than the checkpoint ``weights`` holds (its ``arch``): the architecture
    comes from the weights, and the flag would be silently ignored."""
    if model_name and model_name != arch["model"]:
        raise UserError(f"--model {model_name} but '{weights}' holds a {arch['model']}; drop --model or pass its weights")


def load_checkpoint(path):
    """(model in eval mode, arch) rebuilt from a checkpoint in a fresh process."""
    checkpoint = read_checkpoint(path)
    model = build_from_arch(checkpoint["arch"])
    zoo.load_state_dict_strict(model, checkpoint["state_dict"], source=f"weights in '{path}'")
    return model.eval(), checkpoint["arch"]
