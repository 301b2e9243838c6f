"""Every zoo model, pruned at random (the test suite's small models, 1x28x28), exported with an fp16 body and run in
ONNX Runtime's CPU provider against PyTorch in fp32: what an fp16 engine is built from.

    python reports/tensorrt_api/fp16_onnx_parity.py > reports/tensorrt_api/fp16_onnx_parity.log
"""
import sys
import tempfile
from pathlib import Path

import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from conftest import SMALL_INPUT, random_keep, small_model  # noqa: E402

from compress import graph, zoo  # noqa: E402
from export import parity  # noqa: E402
from export.onnx import export_onnx, precision  # noqa: E402

torch.manual_seed(0)
with tempfile.TemporaryDirectory() as scratch:
    for name in zoo.MODEL_NAMES:
        model = small_model(name)
        graph.prune(model, SMALL_INPUT, random_keep(model))
        path = export_onnx(model, SMALL_INPUT, Path(scratch) / f"{name}_fp16.onnx", fp16=True)
        images = torch.randn(64, *SMALL_INPUT)
        reference, exported = parity.torch_logits(model, images), parity.ort_logits(path, images)
        check = parity.compare(reference, exported)
        print(f"{name:20s} {precision(onnx.load(path))}: max abs {check['max_abs_diff']:.2e}, relative {check['rel_diff']:.2e}, "
              f"top-1 agreement {check['top1_agreement']:.3f}; largest |logit| {abs(reference).max():.2e} in PyTorch fp32, "
              f"{abs(exported).max():.2e} in ONNX Runtime (fp16 holds nothing under 6e-8)")
