"""Model zoo: torchvision ResNets and MobileNets, and ProxylessNAS defined from its paper.

Every builder takes ``num_classes``, ``in_chans`` and ``stem``. ``stem="small"`` keeps resolution
for 28-32 px inputs: ResNets get a 3x3 stride-1 stem and no max-pool; the MobileNets and
ProxylessNAS get stride 1 in the stem and in the first downsampling block (the CIFAR convention),
so a 28 px image ends at 4x4 rather than 1x1.
"""
import argparse
import pickle
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from compress.errors import UserError
from compress.zoo import proxyless

STEMS = ("imagenet", "small")


def _first_conv(model):
    """(parent module, attribute name) of the network's first convolution."""
    if isinstance(model, tvm.ResNet):
        return model, "conv1"
    stem = model.features[0]  # torchvision Conv2dNormActivation and ProxylessNAS stem alike
    return stem, "0"


def _adapt_stem(model, in_chans, stem):
    parent, name = _first_conv(model)
    conv = getattr(parent, name)
    if stem == "small":
        if isinstance(model, tvm.ResNet):
            kernel, stride, padding = 3, 1, 1
            model.maxpool = nn.Identity()
        else:
            kernel, stride, padding = conv.kernel_size, 1, conv.padding
            first_downsampling = next(m for m in model.features[1:].modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2))
            first_downsampling.stride = (1, 1)
    else:
        kernel, stride, padding = conv.kernel_size, conv.stride, conv.padding
    if in_chans != conv.in_channels or stem == "small":
        setattr(parent, name, nn.Conv2d(in_chans, conv.out_channels, kernel, stride, padding, bias=conv.bias is not None))
    return model


def _torchvision(builder):
    def build(num_classes, in_chans, stem):
        return _adapt_stem(builder(weights=None, num_classes=num_classes), in_chans, stem)

    return build


def _proxyless(builder):
    def build(num_classes, in_chans, stem):
        return _adapt_stem(builder(num_classes=num_classes, in_chans=in_chans), in_chans, stem)

    return build


BUILDERS = {
    "resnet18": _torchvision(tvm.resnet18),
    "resnet34": _torchvision(tvm.resnet34),
    "resnet50": _torchvision(tvm.resnet50),
    "mobilenet_v2": _torchvision(tvm.mobilenet_v2),
    "mobilenet_v3_small": _torchvision(tvm.mobilenet_v3_small),
    "mobilenet_v3_large": _torchvision(tvm.mobilenet_v3_large),
    "proxyless_gpu": _proxyless(proxyless.proxyless_gpu),
    "proxyless_mobile": _proxyless(proxyless.proxyless_mobile),
    "proxyless_cpu": _proxyless(proxyless.proxyless_cpu),
}
MODEL_NAMES = tuple(BUILDERS)


def build_model(name, num_classes=1000, in_chans=3, stem="imagenet"):
    """A freshly initialised zoo network."""
    if name not in BUILDERS:
        raise UserError(f"unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}")
    if stem not in STEMS:
        raise UserError(f"unknown stem '{stem}'; choose one of: {', '.join(STEMS)}")
    return BUILDERS[name](num_classes, in_chans, stem)


def _cached_torchvision_file(weights_name):
    """Path of a torchvision weights enum (e.g. ResNet50_Weights.IMAGENET1K_V2) in the local hub cache."""
    try:
        weights = tvm.get_weight(weights_name)
    except (ValueError, KeyError, AttributeError):
        raise UserError(
            f"weights '{weights_name}' is neither a file nor a torchvision weights name "
            "(e.g. ResNet50_Weights.IMAGENET1K_V2)"
        ) from None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise UserError(
            f"torchvision weights {weights_name} are not in the local cache ({path}); "
            "download them on a connected machine into that path, or pass a checkpoint file"
        )
    return path


def read_state_dict(weights):
    """A state_dict from a checkpoint file or a cached torchvision weights name.

    Takes a bare state_dict, this toolkit's checkpoints (``state_dict``) and torchvision's reference-training ones
    (``model``, beside an ``argparse.Namespace`` of the arguments); drops the ``module.`` of a model saved inside
    DistributedDataParallel and the ``_orig_mod.`` of one saved after torch.compile.
    """
    path = Path(weights)
    if not path.exists():
        if "/" in str(weights) or path.suffix in (".pt", ".pth", ".ckpt"):
            raise UserError(f"weights file '{weights}' does not exist; check the path")
        path = _cached_torchvision_file(weights)
    obj = load_weights_only(path, "pass a .pt saved by torch.save")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"'{path}' holds no state_dict; pass a checkpoint saved by this toolkit or a state_dict")
    for prefix in ("module.", "_orig_mod."):
        if all(key.startswith(prefix) for key in obj):
            obj = {key[len(prefix):]: tensor for key, tensor in obj.items()}
    return obj


def load_weights_only(path, fix):
    """``torch.load(path, weights_only=True)`` (the ``argparse.Namespace`` of torchvision's reference-training
    checkpoints allowed), or a UserError saying why the file is not a checkpoint, ending in ``fix``."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and storage errors of all kinds mean "not a checkpoint", unless it pickled classes
        pickled = _pickled_classes(path) if isinstance(err, pickle.UnpicklingError) else ""
        if pickled:
            raise UserError(f"'{path}' holds pickled Python objects ({pickled}), which loading with weights_only refuses "
                            "since they could run code; save the model's state_dict() instead") from None
        raise UserError(f"'{path}' is not a PyTorch checkpoint ({type(err).__name__}); {fix}") from None


def _pickled_classes(path):
    """The classes a checkpoint pickled beyond tensors, a model's own first ('torchvision.models.resnet.ResNet, ...'),
    or '' where the file cannot be read that far."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        return ""
    names = sorted(names, key=lambda name: (name.startswith("torch."), name))
    return ", ".join(names[:2]) + (", ..." if len(names) > 2 else "")


def load_state_dict_strict(model, state_dict, source="weights"):
    """Load, naming the first tensor that does not fit instead of dumping PyTorch's long report."""
    own = model.state_dict()
    for key, tensor in own.items():
        if key not in state_dict:
            raise UserError(f"{source} do not fit the model: tensor '{key}' is missing; check the model name")
        if state_dict[key].shape != tensor.shape:
            raise UserError(
                f"{source} do not fit the model: tensor '{key}' has shape {tuple(state_dict[key].shape)}, "
                f"the model expects {tuple(tensor.shape)}; check the model name, its stem and its number of classes"
            )
    extra = [k for k in state_dict if k not in own]
    if extra:
        raise UserError(f"{source} do not fit the model: unexpected tensor '{extra[0]}'; check --model")
    model.load_state_dict(state_dict)
    return model
