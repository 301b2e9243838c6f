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
