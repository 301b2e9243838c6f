"""Numerical parity between PyTorch and an exported model on the same inputs."""
import numpy as np
import torch


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


def ort_logits(onnx_path, images, providers=("CPUExecutionProvider",)):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=list(providers))
    return session.run(None, {session.get_inputs()[0].name: images.float().cpu().numpy()})[0]
