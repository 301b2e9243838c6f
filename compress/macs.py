"""MACs and parameter counts, the figures every report shows beside measured latency.

MACs follow the published convention (torchvision's model cards, the ProxylessNAS and GFS papers):
multiply-accumulates of convolutions and fully connected layers for one image. BatchNorm,
activations and additions are not counted (Torch-Pruning's counter adds them, which inflates
MobileNets by 3-6% against the papers).
"""
import torch
from torch import nn


@torch.no_grad()
def count_macs_params(model, input_size):
    """(multiply-accumulates, parameters) for one image of ``input_size`` (C, H, W)."""
    total = 0

    def count(module, _inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * module.in_channels // module.groups * kernel
        else:
            total += output.numel() // output.shape[-1] * module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        device = next(model.parameters()).device
        model.eval()(torch.zeros(1, *input_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return int(total), sum(p.numel() for p in model.parameters())


def width_cost_model(model, input_size, groups):
    """A function {group id: width} -> (MACs, params), exact for any widths, with no rebuild.

    Every conv/linear layer's cost is bilinear in the width of the group it reads and the group it
    writes, so one forward pass of the unpruned network (for spatial sizes) is enough. Allocation
    calls this thousands of times; a rebuild costs about a second.
    """
    writes, reads = {}, {}
    for group in groups:
        for name in group.producers + group.depthwise:
            writes[name] = group.id
        for name in group.consumers + group.depthwise:
            reads[name] = group.id
    spatial = {}
    hooks = [m.register_forward_hook(lambda mod, _i, out, name=name: spatial.__setitem__(name, out[0, 0].numel()))
             for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups > 1 and module.groups == module.in_channels
            kernel = module.kernel_size[0] * module.kernel_size[1]
            layers.append((name, module.in_channels, module.out_channels, kernel, spatial[name], depthwise, module.bias is not None))
        elif isinstance(module, nn.Linear):
            layers.append((name, module.in_features, module.out_features, 1, 1, False, module.bias is not None))
        elif isinstance(module, nn.BatchNorm2d):
            layers.append((name, None, module.num_features, 0, 0, False, False))
    other_params = sum(p.numel() for p in model.parameters()) - sum(_layer_params(l, l[1], l[2]) for l in layers)

    def cost(widths):
        total_macs, total_params = 0, other_params
        for layer in layers:
            name, full_in, full_out, kernel, area, depthwise, _bias = layer
            out_channels = widths.get(writes.get(name), full_out)
            in_channels = out_channels if depthwise else widths.get(reads.get(name), full_in)
            total_params += _layer_params(layer, in_channels, out_channels)
            if kernel:
                total_macs += area * kernel * out_channels * (1 if depthwise else in_channels)
        return total_macs, total_params

    return cost


def _layer_params(layer, in_channels, out_channels):
    _name, _full_in, _full_out, kernel, _area, depthwise, bias = layer
    if in_channels is None:  # BatchNorm: scale and shift
        return 2 * out_channels
    weights = out_channels * kernel * (1 if depthwise else in_channels)
    return weights + (out_channels if bias else 0)
