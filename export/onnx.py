"""ONNX export (opset 17, dynamic batch, named input/output, BN folded, constant-folded, checked; fp32, or an fp16 body
for TensorRT), and what the bench reads of any ONNX file: its image input, its precision and its MACs."""
import copy
import math
import tempfile
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from compress import io
from compress.errors import UserError

INPUT_NAME, OUTPUT_NAME = "images", "logits"
# The newest opset the exporter used here (TorchScript, dynamo=False) writes; past it torch prints its whole graph.
MAX_OPSET = getattr(torch.onnx._constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)


def fold_batchnorm(model):
    """A copy of ``model`` in fp32 (whatever the caller holds) with every BatchNorm that directly follows a convolution
    (its only reader) folded into it, by torch.fx's ``fuse``; the zoo has no other kind, and the export tests check that
    no BN node is left."""
    return fuse(copy.deepcopy(model).float().cpu().eval(), inplace=True)


class _HalfBody(nn.Module):
    """fp32 images in, fp32 logits out, fp16 in between: the file then carries its precision, which is what TensorRT
    builds (strongly typed networks; TensorRT 11 removed the FP16 builder flag), with Casts only at the two ends."""

    def __init__(self, body):
        super().__init__()
        self.body = body.half()

    def forward(self, images):
        return self.body(images.half()).float()


def export_onnx(model, input_size, path, opset=17, fp16=False):
    """Write ``path`` (atomically) and return it; the batch dimension is dynamic. ``fp16`` stores the weights and
    computes in fp16 (BatchNorm folded in fp32 first), keeping fp32 input and output."""
    fused = _HalfBody(fold_batchnorm(model)) if fp16 else fold_batchnorm(model)
    example = torch.zeros(2, *input_size)  # only its shape is traced: nothing drawn from the global RNG
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # as io.write_with does, for the scratch folder beside it
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


def dims(value):
    """A graph value's shape, None for each dimension the file does not fix (a name, or a 0)."""
    return [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
            for dim in value.type.tensor_type.shape.dim]


def image_inputs(graph):
    """The graph's inputs that are not weights (older exporters list the initializers among the inputs too)."""
    weights = {tensor.name for tensor in graph.graph.initializer}
    return [value for value in graph.graph.input if value.name not in weights]


def read_image_input(path):
    """(model proto, batch dimension, (C, H, W)) of an ONNX file the bench can feed: one float32 input of rank 4.
    A dimension that is not fixed in the file (a dynamic batch, a free image size) is None."""
    try:
        graph = onnx.load(path)
    except Exception as error:  # protobuf's DecodeError and friends: the file is not an ONNX model
        raise UserError(f"'{path}' is not an ONNX model ({type(error).__name__}); pass a .onnx file that python -m export "
                        "or torch.onnx wrote") from None
    inputs = image_inputs(graph)
    if len(inputs) != 1:
        raise UserError(f"'{path}' takes {len(inputs)} inputs ({', '.join(v.name for v in inputs)}); the bench feeds one "
                        "image batch")
    shape, element = dims(inputs[0]), inputs[0].type.tensor_type.elem_type
    if element != onnx.TensorProto.FLOAT or len(shape) != 4:
        raise UserError(f"'{path}' takes {onnx.TensorProto.DataType.Name(element).lower()} input of rank {len(shape)}; "
                        "the bench feeds a float32 batch of images (N, C, H, W)")
    return graph, shape[0], tuple(shape[1:])


def precision(graph):
    """'fp16' when the graph's convolution and Gemm weights are all fp16 (a strongly typed TensorRT build runs them in
    fp16), else 'fp32'."""
    weights = {node.input[1] for node in graph.graph.node if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1}
    types = {tensor.data_type for tensor in graph.graph.initializer if tensor.name in weights}
    return "fp16" if types == {onnx.TensorProto.FLOAT16} else "fp32"


def count_macs_params(graph, input_size):
    """(MACs, parameters) of one image of ``input_size`` (C, H, W) through an ONNX graph, counted as
    ``compress.macs`` counts a network: multiply-accumulates of Conv, Gemm and MatMul. Parameters are the float weights
    the file stores, so an export's BatchNorm, folded into its convolutions, adds none."""
    sized = copy.deepcopy(graph)
    image = image_inputs(sized)[0]
    # A fixed batch may be baked into the graph's reshapes: shapes are inferred at that batch, the total divided by it.
    batch = dims(image)[0] or 1
    for dim, size in zip(image.type.tensor_type.shape.dim, (batch, *input_size)):
        dim.Clear()
        dim.dim_value = size
    inferred = onnx.shape_inference.infer_shapes(sized)
    shapes = {value.name: dims(value) for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)}
    shapes.update({tensor.name: list(tensor.dims) for tensor in inferred.graph.initializer})
    total = 0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        output, operand = shapes.get(node.output[0]), shapes.get(node.input[1 if node.op_type == "Conv" else 0])
        if not output or not operand or None in output or None in operand:
            raise UserError(f"ONNX shape inference leaves the shapes of {node.op_type} node '{node.name}' unknown, so its "
                            "MACs cannot be counted; export the model with fixed image dimensions")
        if node.op_type == "Conv":  # weight (M, C / groups, kH, kW): an output element reads C / groups * kH * kW inputs
            reduced = math.prod(operand[1:])
        elif node.op_type == "Gemm" and any(attribute.name == "transA" and attribute.i for attribute in node.attribute):
            reduced = operand[0]
        else:  # Gemm's or MatMul's A (..., M, K)
            reduced = operand[-1]
        total += math.prod(output) * reduced
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
    params = sum(math.prod(tensor.dims) for tensor in graph.graph.initializer if tensor.data_type in floats)
    return int(total // batch), int(params)
