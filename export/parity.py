"""Numerical parity between PyTorch and an exported model on the same inputs."""
import numpy as np
import torch

from compress.errors import UserError

# The ONNX Runtime backends and routes, each the providers it runs on (ORT-TensorRT hands CUDA what TensorRT cannot run).
ORT_PROVIDERS = {"ort-cpu": ("CPUExecutionProvider",), "ort-cuda": ("CUDAExecutionProvider",),
                 "ort-trt": ("TensorrtExecutionProvider", "CUDAExecutionProvider")}
# TF32 off on the CUDA provider (on by default), so fp32 on a GPU route is held to fp32's tolerance, as elsewhere.
FP32_OPTIONS = {"CUDAExecutionProvider": {"use_tf32": "0"}}


def compare(reference, candidate):
    """max abs difference, relative difference (max |a-b| / max |a|) and top-1 agreement of two logit arrays."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    max_abs = float(np.abs(reference - candidate).max())
    return {
        "max_abs_diff": max_abs,
        "rel_diff": max_abs / max(float(np.abs(reference).max()), 1e-12),
        "top1_agreement": float((reference.argmax(1) == candidate.argmax(1)).mean()),
    }


@torch.no_grad()
def torch_logits(model, images):
    return model.float().cpu().eval()(images.float().cpu()).numpy()


def has_provider(provider):
    """Whether this ONNX Runtime build has the execution provider (whether it loads is known once a session runs)."""
    import onnxruntime

    return provider in onnxruntime.get_available_providers()


def ort_session(onnx_path, providers=("CPUExecutionProvider",), provider_options=None, threads=None):
    """An ONNX Runtime session that runs on ``providers[0]``, or a UserError: ORT silently falls back to the CPU when a
    GPU provider fails to load, which would put CPU numbers under a GPU route's name. ``threads`` fixes the CPU's
    intra-op threads (one inter-op thread); by default ORT takes every core. TF32 is off (``FP32_OPTIONS``)."""
    import onnxruntime

    session_options = onnxruntime.SessionOptions()
    if threads is not None:
        session_options.intra_op_num_threads, session_options.inter_op_num_threads = threads, 1
    missing = [p for p in providers if not has_provider(p)]
    if missing:
        raise UserError(f"{missing[0]} is not in this ONNX Runtime; install onnxruntime-gpu with its CUDA libraries")
    options = [{**FP32_OPTIONS.get(p, {}), **(provider_options or {}).get(p, {})} for p in providers]
    try:
        session = onnxruntime.InferenceSession(str(onnx_path), session_options, providers=list(providers),
                                               provider_options=options)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented for a file it cannot run
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"ONNX Runtime {onnxruntime.__version__} cannot load '{onnx_path}': {reason}") from None
    if session.get_providers()[0] != providers[0]:
        raise UserError(f"ONNX Runtime could not load {providers[0]} (it fell back to {session.get_providers()[0]}); "
                        "check that onnxruntime-gpu matches this machine's CUDA and cuDNN")
    return session


def ort_logits(onnx_path, images, providers=("CPUExecutionProvider",)):
    """Logits from ONNX Runtime on ``providers``."""
    session = ort_session(onnx_path, providers)
    return session.run(None, {session.get_inputs()[0].name: images.float().cpu().numpy()})[0]
