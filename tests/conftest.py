import subprocess
from importlib import resources

import pytest
import torch

from compress import graph, zoo

SMALL_INPUT = (1, 28, 28)
TEACHER = str(resources.files("compress") / "assets" / "mbv2_fmnist_teacher.pt")  # the shipped one


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_model(name, num_classes=10):
    return zoo.build_model(name, num_classes=num_classes, in_chans=1, stem="small").eval()


def random_keep(model, input_size=SMALL_INPUT, fraction=0.5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {g.id: torch.randperm(g.width, generator=generator)[: max(1, int(g.width * fraction))].tolist()
            for g in graph.list_groups(model, input_size)}


def main_in_process(main, capsys, *args):
    """A command's ``main`` run in this process: its exit code and output, as the command would give them.

    Each new process spends about 10 s importing torch and torchvision on the 2-core CI machine; the bad inputs, several
    dozen, are refused by the same code in this one (one subprocess per command checks the entry point itself). A
    traceback here is an exception that fails the test.
    """
    try:
        main(list(args))
        code = 0
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)
