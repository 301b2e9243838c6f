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

        full_macs, full_params = count_macs_params(model, SMALL_INPUT)
        cost = width_cost_model(model, SMALL_INPUT, groups)
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


def test_load_rejects_non_checkpoints(tmp_path):
    from compress.errors import UserError

    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(1)}, plain)
    with pytest.raises(UserError, match="not a toolkit checkpoint"):
        graph.load_checkpoint(plain)
    with pytest.raises(UserError, match="does not exist"):
        graph.load_checkpoint(tmp_path / "nope.pt")
