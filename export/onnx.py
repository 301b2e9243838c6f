"""ONNX export: opset 17, dynamic batch, named input/output, BN folded, constant-folded, checked."""
import copy
import tempfile
from pathlib import Path

import onnx
import torch
from torch import nn

from compress import io

INPUT_NAME, OUTPUT_NAME = "images", "logits"
# The newest opset the exporter used here (TorchScript, dynamo=False) writes; past it torch prints its whole graph.
MAX_OPSET = getattr(torch.onnx._constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)


def fold_batchnorm(model):
    """A copy of ``model`` with every BatchNorm2d that directly follows a Conv2d (its only reader) fused into it; the
    zoo has no other kind, and the export tests check that no BN node is left."""
    model = copy.deepcopy(model).float().cpu().eval()  # fused in fp32 whatever the caller holds
    traced = torch.fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        if source.op != "call_module" or not isinstance(modules[source.target], nn.Conv2d) or len(source.users) > 1:
            continue
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(modules[source.target], modules[node.target])
        parent, _, name = source.target.rpartition(".")
        setattr(traced.get_submodule(parent) if parent else traced, name, fused)
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.recompile()
    return traced


def export_onnx(model, input_size, path, opset=17):
    """Write ``path`` (atomically) and return it; the batch dimension is dynamic."""
    fused = fold_batchnorm(model)
    example = torch.randn(2, *input_size)
    with tempfile.TemporaryDirectory(dir=Path(path).parent) as scratch:  # torch.onnx writes a path; nothing is left behind
        tmp = Path(scratch) / "model.onnx"
        torch.onnx.export(fused, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=opset, dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True, dynamo=False)
        graph = onnx.load(tmp)
    onnx.checker.check_model(graph)
    graph = onnx.shape_inference.infer_shapes(graph, strict_mode=True)
    io.write_bytes(path, graph.SerializeToString())
    return path
