"""MACs and parameter counts, the figures every report shows beside measured latency."""
import copy

import torch
import torch_pruning as tp


@torch.no_grad()
def count_macs_params(model, input_size):
    """(multiply-accumulates, parameters) for one image of ``input_size`` (C, H, W)."""
    model = copy.deepcopy(model).eval()  # the counter registers hooks; keep the caller's model untouched
    macs, params = tp.utils.count_ops_and_params(model, torch.randn(1, *input_size))
    return int(macs), int(params)
