import pytest
import torch

from compress import graph, zoo

SMALL_INPUT = (1, 28, 28)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_model(name, num_classes=10):
    return zoo.build_model(name, num_classes=num_classes, in_chans=1, stem="small").eval()


def random_keep(model, input_size=SMALL_INPUT, fraction=0.5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {g.id: torch.randperm(g.width, generator=generator)[: max(1, int(g.width * fraction))].tolist()
            for g in graph.list_groups(model, input_size)}
