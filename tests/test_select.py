import copy

import pytest
import torch

from compress import graph
from compress.errors import UserError
from compress.select import apply_selection, check_method, engine, select_channels

from conftest import SMALL_INPUT, small_model


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "resnet18"])
def test_stacked_masks_equal_one_forward_per_mask(name):
    model = small_model(name)
    images = torch.randn(4, *SMALL_INPUT)
    graph_module = engine.trace(model)
    cache = engine.record(graph_module, images)
    groups = graph.list_groups(model, SMALL_INPUT)
    for group in (groups[0], groups[len(groups) // 2], groups[-1]):  # residual, SE and head groups among them
        masks = (torch.rand(5, group.width) < 0.5).float() * 2
        stacked = engine.masked_logits(graph_module, cache, group.consumers, masks)
        reference = engine.masked_logits_one_by_one(model, images, group.consumers, masks)
        torch.testing.assert_close(stacked, reference, atol=1e-5, rtol=1e-5)


def _masked_copy(model, selection, widths):
    """The network as selection sees it: consumer inputs multiplied by each group's mask."""
    masked = copy.deepcopy(model)
    groups = {g.id: g for g in graph.list_groups(masked, SMALL_INPUT)}
    for entry in selection["groups"]:
        group, kept = groups[entry["id"]], entry["order"][: widths[entry["id"]]]
        mask = torch.zeros(group.width)
        mask[kept] = group.width / len(kept) if entry["scale"] == "uniform" else 1.0
        for name in group.consumers:
            weight = masked.get_submodule(name).weight
            weight.data *= mask.view(1, -1, *([1] * (weight.dim() - 2)))
    return masked


def _sampler(images, labels, batch=16):
    return lambda: (images[torch.randint(0, len(images), (batch,))], labels[torch.randint(0, len(images), (batch,))])


@pytest.mark.parametrize("name,method", [("mobilenet_v2", "gfs"), ("mobilenet_v3_small", "l1"), ("resnet18", "bnscale")])
def test_rebuild_is_faithful(name, method):
    model = small_model(name)
    images, labels = torch.randn(64, *SMALL_INPUT), torch.randint(0, 10, (64,))
    groups = graph.list_groups(model, SMALL_INPUT)
    keep_ids = [groups[0].id, groups[-1].id]
    selection = select_channels(model, SMALL_INPUT, method, _sampler(images, labels), (images[:32], labels[:32]),
                                candidates=4, max_keep_ratio=0.1, group_ids=keep_ids, progress=False)
    for entry in selection["groups"]:
        assert sorted(entry["order"]) == list(range(entry["width"]))  # a full permutation, in order of choice
        assert entry["curve"]["k"] == sorted(entry["curve"]["k"]) and entry["curve"]["k"][-1] == entry["width"]
    widths = {e["id"]: max(1, e["width"] // 3) for e in selection["groups"]}
    pruned = apply_selection(copy.deepcopy(model), SMALL_INPUT, selection, widths)
    with torch.no_grad():
        torch.testing.assert_close(pruned(images[:8]), _masked_copy(model, selection, widths)(images[:8]), atol=1e-4, rtol=1e-4)


def test_gfs_beats_random_on_a_trained_network():
    """On the shipped Fashion-MNIST teacher, greedy selection keeps a group far better than chance."""
    from compress import data as datasets
    from importlib import resources

    model, arch = graph.load_checkpoint(resources.files("compress") / "assets" / "mbv2_fmnist_teacher.pt")
    data = datasets.load_data("fashion-mnist", train_limit=2000)
    draw = datasets.batch_sampler(data, 32, "cpu", torch.Generator().manual_seed(0))
    heldout = datasets.heldout_batch(data, 256, "cpu")
    group_id = "features.15.conv.0.0"  # 960 hidden channels late in the network: cheap to evaluate
    losses = {}
    for method in ("gfs", "random"):
        selection = select_channels(model, tuple(arch["input_size"]), method, draw, heldout, candidates=16, tolerance=1.0,
                                    max_keep_ratio=0.02, group_ids=[group_id], progress=False)
        order, curve = selection["groups"][0]["order"], selection["groups"][0]["curve"]
        keep = 19
        pruned = apply_selection(copy.deepcopy(model), tuple(arch["input_size"]), selection, {group_id: keep})
        with torch.no_grad():
            losses[method] = torch.nn.functional.cross_entropy(pruned(heldout[0]), heldout[1]).item()
    assert losses["gfs"] < losses["random"]


def test_tolerance_stops_early():
    model = small_model("mobilenet_v2")
    images, labels = torch.randn(32, *SMALL_INPUT), torch.randint(0, 10, (32,))
    group = graph.list_groups(model, SMALL_INPUT)[-1]
    selection = select_channels(model, SMALL_INPUT, "gfs", _sampler(images, labels), (images, labels), candidates=4,
                                tolerance=1.0, group_ids=[group.id], progress=False)
    assert selection["groups"][0]["stop"] < group.width


def test_unknown_method():
    with pytest.raises(UserError, match="gfs, l1"):
        check_method("magic")
