"""Experiment: GFS / imitation checkpoints with each conv's weight rescaled to the L1 checkpoint's per-layer norm."""
import sys, torch
from torch import nn
from compress import graph
src, ref, out = sys.argv[1:4]
m, arch = graph.load_checkpoint(src)
r, _ = graph.load_checkpoint(ref)
rc = dict(r.named_modules())
with torch.no_grad():
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Conv2d):
            w0 = rc[name].weight
            assert w0.shape == mod.weight.shape
            c = mod.weight.norm() / w0.norm()
            mod.weight /= c
graph.save_checkpoint(out, m, arch)
print("ok", out)
