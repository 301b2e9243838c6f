import argparse

import pytest
import torch

from compress import graph, zoo
from compress.errors import UserError
from compress.macs import count_macs_params

from conftest import small_model

PUBLISHED = {"proxyless_gpu": (7.12e6, 465.3e6), "proxyless_mobile": (4.08e6, 320.4e6), "proxyless_cpu": (4.36e6, 439.2e6)}


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_builds_both_stems(name):
    assert small_model(name)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    imagenet = zoo.build_model(name, num_classes=10, in_chans=3, stem="imagenet").eval()
    assert imagenet(torch.randn(1, 3, 64, 64)).shape == (1, 10)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_proxyless_matches_published(name):
    params, model_macs = PUBLISHED[name]
    measured_macs, measured_params = count_macs_params(zoo.build_model(name), (3, 224, 224))
    assert abs(measured_params / params - 1) < 0.01
    assert abs(measured_macs / model_macs - 1) < 0.01


def test_torchvision_macs_match_model_cards():
    assert abs(count_macs_params(zoo.build_model("resnet50"), (3, 224, 224))[0] / 4.089e9 - 1) < 0.01
    assert abs(count_macs_params(zoo.build_model("mobilenet_v2"), (3, 224, 224))[0] / 300.8e6 - 1) < 0.01


def test_unknown_model_lists_valid_names():
    with pytest.raises(UserError, match="resnet18.*proxyless_cpu"):
        zoo.build_model("vgg16")


def test_bad_weights(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        zoo.read_state_dict(str(tmp_path / "missing.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        zoo.read_state_dict(str(garbage))
    saved = tmp_path / "resnet18.pt"
    torch.save(zoo.build_model("resnet18").state_dict(), saved)
    with pytest.raises(UserError, match="layer1.2"):
        zoo.load_state_dict_strict(zoo.build_model("resnet34"), zoo.read_state_dict(str(saved)))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(UserError, match="not in the local cache"):
        zoo.read_state_dict("ResNet18_Weights.IMAGENET1K_V1")


def test_weights_saved_the_ways_training_scripts_save_them(tmp_path):
    """torchvision's reference train.py, a model inside DistributedDataParallel or after torch.compile: the same
    weights; a pickled module is refused with the fix, never loaded with weights_only off."""
    model = zoo.build_model("resnet18", num_classes=10)
    expected = model.state_dict()
    saved = {
        "reference.pt": {"model": expected, "optimizer": torch.optim.SGD(model.parameters(), 0.1).state_dict(), "epoch": 3,
                         "args": argparse.Namespace(model="resnet18", lr=0.1)},
        "ddp.pt": {f"module.{key}": tensor for key, tensor in expected.items()},
        "compiled.pt": {f"_orig_mod.{key}": tensor for key, tensor in expected.items()},
    }
    for name, checkpoint in saved.items():
        torch.save(checkpoint, tmp_path / name)
        state_dict = zoo.read_state_dict(str(tmp_path / name))
        assert state_dict.keys() == expected.keys() and all(torch.equal(state_dict[k], expected[k]) for k in expected)
    torch.save(model, tmp_path / "module.pt")
    for read in (zoo.read_state_dict, graph.read_checkpoint):  # python -m compress, and bench, export and compress.train
        with pytest.raises(UserError, match=r"pickled Python objects \(torchvision.models.resnet.*save the model's state_dict"):
            read(str(tmp_path / "module.pt"))
