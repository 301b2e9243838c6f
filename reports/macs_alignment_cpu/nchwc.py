"""Which kernels ONNX Runtime's CPU provider runs for each network: the node domains and op types of the graph it
optimises (level ORT_ENABLE_ALL, which includes the NCHWc layout transformer)."""
import collections
import sys

import onnxruntime as ort
import torch

from compress import graph
from export.onnx import export_onnx

for path in sys.argv[1:]:
    model, arch = graph.load_checkpoint(path)
    onnx_path = export_onnx(model, tuple(arch["input_size"]), path.replace(".pt", ".onnx"))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(onnx_path).replace(".onnx", ".opt.onnx")
    options.intra_op_num_threads = 1
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    import onnx
    optimised = onnx.load(options.optimized_model_filepath)
    kinds = collections.Counter(f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in optimised.graph.node)
    print(path, dict(sorted(kinds.items())))
