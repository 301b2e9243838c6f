"""MACs and parameter counts, the figures every report shows beside measured latency.

MACs follow the published convention (torchvision's model cards, the ProxylessNAS and GFS papers):
multiply-accumulates of convolutions and fully connected layers for one image. BatchNorm,
activations and additions are not counted (Torch-Pruning's counter adds them, which inflates
MobileNets by 3-6% against the papers).
"""
import numpy as np
import torch
from torch import nn

from compress import graph


@torch.no_grad()
def trace_layers(model, input_size, record):
    """Run one zero image of ``input_size`` through ``model`` in eval mode, calling ``record(name, module, output)``
    for every conv and linear layer: the output shapes that counting needs. The model's mode is restored."""
    hooks = [m.register_forward_hook(lambda module, _inputs, output, name=name: record(name, module, output))
             for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)


def count_macs_params(model, input_size):
    """(multiply-accumulates, parameters) for one image of ``input_size`` (C, H, W)."""
    layer_macs = []

    def count(_name, module, output):
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            layer_macs.append(output.numel() * module.in_channels // module.groups * kernel)
        else:
            layer_macs.append(output.numel() // output.shape[-1] * module.in_features * module.out_features)

    trace_layers(model, input_size, count)
    return int(sum(layer_macs)), sum(p.numel() for p in model.parameters())


def width_cost_model(model, input_size, groups):
    """A function {group id: width} -> (MACs, params), exact for any widths, with no rebuild.

    Every conv/linear layer's cost is bilinear in the width of the group it reads and the group it
    writes, so one forward pass of the unpruned network (for spatial sizes) is enough. Allocation
    calls this tens of thousands of times (a rebuild costs about a second), so the layers are arrays.
    """
    writes, reads = {}, {}
    for group in groups:
        for name in group.producers + group.depthwise:
            writes[name] = group.id
        for name in group.consumers + group.depthwise:
            reads[name] = group.id
    spatial = {}
    trace_layers(model, input_size, lambda name, _module, output: spatial.__setitem__(name, output[0, 0].numel()))
    # One row per layer: its name, full output width, input channels per output channel (1 for depthwise convs and BN,
    # which read the channel they write), whether that input width follows the group it reads, weights per (input,
    # output) channel pair, MACs per weight (the output's spatial size) and other parameters per output channel (bias,
    # or BN's scale and shift).
    group_ids = sorted(set(writes.values()) | set(reads.values()))
    slot = {gid: index for index, gid in enumerate(group_ids)}
    unpruned = len(group_ids)  # the slot of no group: the full width
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            depthwise = graph.is_depthwise(module)
            rows.append((name, module.out_channels, 1 if depthwise else module.in_channels, not depthwise,
                         module.kernel_size[0] * module.kernel_size[1], spatial[name], int(module.bias is not None)))
        elif isinstance(module, nn.Linear):
            rows.append((name, module.out_features, module.in_features, True, 1, 1, int(module.bias is not None)))
        elif isinstance(module, nn.BatchNorm2d):
            rows.append((name, module.num_features, 1, False, 0, 0, 2))
    writes_slot = np.array([slot.get(writes.get(row[0]), unpruned) for row in rows])
    reads_slot = np.array([slot.get(reads.get(row[0]), unpruned) if row[3] else unpruned for row in rows])
    full_out, full_in, kernel, area, per_output = (np.array([row[i] for row in rows], np.int64) for i in (1, 2, 4, 5, 6))
    other_params = sum(p.numel() for p in model.parameters()) - int((full_out * (kernel * full_in + per_output)).sum())

    def cost(widths):
        chosen = np.array([widths.get(gid, 0) for gid in group_ids] + [0], np.int64)  # 0: the group keeps its width
        out_channels = np.where(chosen[writes_slot] > 0, chosen[writes_slot], full_out)
        in_channels = np.where(chosen[reads_slot] > 0, chosen[reads_slot], full_in)
        weights = out_channels * kernel * in_channels
        return int((weights * area).sum()), int(other_params + (weights + out_channels * per_output).sum())

    return cost
