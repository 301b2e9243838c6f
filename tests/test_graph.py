import subprocess
import sys

import pytest
import torch

from compress import graph, zoo
from compress.macs import count_macs_params, width_cost_model

from conftest import SMALL_INPUT, random_keep, small_model


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_surgery(name, tmp_path):
    model = small_model(name)
    images = torch.randn(2, *SMALL_INPUT)
    groups = graph.list_groups(model, SMALL_INPUT)
    assert groups and all(g.id and g.width > 0 and g.consumers for g in groups)
    with torch.no_grad():
        before = model(images)
        graph.prune(model, SMALL_INPUT, {g.id: range(g.width) for g in groups})
        assert torch.equal(model(images), before)  # keeping every channel changes nothing

        model.train()
        full_macs, full_params = count_macs_params(model, SMALL_INPUT)
        cost = width_cost_model(model, SMALL_INPUT, groups)
        assert model.training  # counting runs in eval mode and leaves the model's mode as it found it
        model.eval()
        graph.prune(model, SMALL_INPUT, random_keep(model))
        pruned_macs, pruned_params = count_macs_params(model, SMALL_INPUT)
        assert model(images).shape == (2, 10)
        assert pruned_macs < full_macs and pruned_params < full_params

        widths = graph.widths(model, SMALL_INPUT)
        assert cost(widths) == (pruned_macs, pruned_params)  # the allocator's cost model is exact
        arch = graph.make_arch(name, 10, 1, "small", SMALL_INPUT, widths)
        assert count_macs_params(graph.build_from_arch(arch), SMALL_INPUT) == (pruned_macs, pruned_params)

        path = tmp_path / "model.pt"
        graph.save_checkpoint(path, model, arch)
        torch.save(images, tmp_path / "images.pt")
        expected = model(images)
    script = ("import torch; from compress import graph; m, _ = graph.load_checkpoint(r'%s'); "
              "torch.save(m(torch.load(r'%s')).detach(), r'%s')") % (path, tmp_path / "images.pt", tmp_path / "out.pt")
    subprocess.run([sys.executable, "-c", script], check=True)
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)  # a fresh process rebuilds the identical network


def test_a_depthwise_group_cut_to_one_channel_saves_and_loads(tmp_path):
    """A one-channel depthwise conv is an ordinary conv to a trace; the saved architecture named its output as a group of
    its own, which no unpruned MobileNetV2 has, and the toolkit could not load what it wrote."""
    model = small_model("mobilenet_v2").eval()
    arch = graph.make_arch("mobilenet_v2", 10, 1, "small", SMALL_INPUT)
    expansion = next(g for g in graph.list_groups(model, SMALL_INPUT) if g.depthwise)
    graph.prune(model, SMALL_INPUT, {expansion.id: [0]})
    graph.save_pruned(tmp_path / "pruned.pt", model, arch)
    loaded, saved = graph.load_checkpoint(tmp_path / "pruned.pt")
    assert saved["widths"][expansion.id] == 1 and set(saved["widths"]) == {g.id for g in graph.list_groups(small_model("mobilenet_v2"), SMALL_INPUT)}
    images = torch.randn(2, *SMALL_INPUT)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(images), model(images))


def test_load_rejects_non_checkpoints(tmp_path):
    from compress.errors import UserError

    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(1)}, plain)
    with pytest.raises(UserError, match="not a toolkit checkpoint"):
        graph.load_checkpoint(plain)
    with pytest.raises(UserError, match="does not exist"):
        graph.load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "resnet18"])
def test_rescale_into_norm_keeps_the_function(name):
    """Layers read only by a BatchNorm can carry any per-channel scale; moving it into the BN changes no output."""
    model = small_model(name).double()  # exact math, checked without float32 rounding amplified by tiny variances
    layers = graph.normalised_layers(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert layers and set(layers) <= set(convs)
    if name == "mobilenet_v3_small":  # squeeze-excitation convs feed an activation, not a BN
        assert not any(".fc" in n for n in layers)
    else:
        assert set(layers) == set(convs)
    generator = torch.Generator().manual_seed(0)
    for norm_name in layers.values():  # trained-looking statistics, so the test sees them move
        norm = model.get_submodule(norm_name)
        norm.running_mean.normal_(generator=generator)
        # Variances down to 1e-4: with factors up to 10, shrinking v + eps by f² would need a negative variance there.
        norm.running_var.copy_(10 ** torch.empty(len(norm.running_var)).uniform_(-4, 0.3, generator=generator))
    images = torch.randn(2, *SMALL_INPUT, dtype=torch.float64)
    with torch.no_grad():
        before = model(images)
        for layer_name, norm_name in layers.items():
            width = model.get_submodule(layer_name).weight.shape[0]
            graph.rescale_into_norm(model, layer_name, norm_name, torch.empty(width).uniform_(0.3, 10.0, generator=generator))
        torch.testing.assert_close(model(images), before, atol=1e-9, rtol=1e-9)
