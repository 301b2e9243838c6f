import dataclasses
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from compress import data as datasets, finetune
from compress.errors import UserError


def tiny_net():
    return nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def tiny_data(batch_size=64):
    return datasets.load_data("fashion-mnist", batch_size=batch_size, train_limit=1024)


def test_training_lowers_loss_and_counts_fractional_epochs(capsys):
    data = tiny_data()
    model = tiny_net()
    history = finetune.train(model, data, epochs=2, lr=0.1, progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    half = finetune.train(tiny_net(), data, epochs=0.5, progress=False)
    assert half[-1]["epoch"] == pytest.approx(0.5, abs=1 / len(data.train))
    capsys.readouterr()
    finetune.train(tiny_net(), data, epochs=0.01, progress=True)  # under one step: one step runs, and the log says so
    assert capsys.readouterr().out.startswith(f"epoch {1 / len(data.train):.4g}/{1 / len(data.train):.4g}: train loss")


def test_kd_bn_recalibration_and_scratch():
    data = tiny_data()
    teacher, student = tiny_net(), tiny_net()
    alone = tiny_net()
    alone.load_state_dict(student.state_dict())
    torch.manual_seed(0)
    finetune.train(student, data, epochs=0.25, teacher=teacher, progress=False)
    torch.manual_seed(0)  # the same batches in the same order: only the teacher's targets differ
    finetune.train(alone, data, epochs=0.25, progress=False)
    assert not torch.allclose(student[0].weight, alone[0].weight)
    before = student[1].running_mean.clone()
    finetune.recalibrate_bn(student, data, "cpu", batches=3)
    assert not torch.equal(before, student[1].running_mean)
    weights = student[0].weight.clone()
    finetune.reinitialise(student)
    assert not torch.equal(weights, student[0].weight)


def test_on_the_cpu_evaluation_and_kd_targets_are_the_module_s_outputs_from_onnx_runtime():
    """The CPU runs a frozen network in ONNX Runtime (three times PyTorch eager on this VM): the module's eval-mode
    logits, BatchNorm's running statistics included, and the same top-1 and loss from ``evaluate``."""
    data, model = tiny_data(), tiny_net()
    finetune.train(model, data, epochs=0.25, progress=False)  # running statistics away from their initial values
    images, labels = next(iter(data.val))
    images = finetune._inputs(data, images, torch.device("cpu"), train=False)
    with torch.no_grad():
        expected = model.eval()(images)
    forward = finetune.frozen_forward(model, data.input_size, "cpu")
    assert not isinstance(forward, nn.Module) and torch.allclose(forward(images), expected, rtol=1e-4, atol=1e-5)
    top1 = sum((model(finetune._inputs(data, batch, torch.device("cpu"), train=False)).argmax(1) == truth).sum().item()
               for batch, truth in data.val) / len(data.val.dataset)
    assert finetune.evaluate(model, data, "cpu")["top1"] == pytest.approx(top1)


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """The checkpoint carries the RNG state, so the epoch after a resume shuffles as it would have, not as epoch 1 did."""
    data = tiny_data()
    torch.manual_seed(0)
    straight = tiny_net()
    finetune.train(straight, data, epochs=2, lr=0.1, progress=False)

    class StopsInTheSecondEpoch:
        def __init__(self, loader):
            self.loader, self.passes = loader, 0

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            self.passes += 1
            if self.passes == 2:
                raise KeyboardInterrupt
            return iter(self.loader)

    checkpoint = tmp_path / "state.pt"
    interrupted = dataclasses.replace(data, train=StopsInTheSecondEpoch(data.train))
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        finetune.train(tiny_net(), interrupted, epochs=2, lr=0.1, checkpoint=checkpoint, progress=False)
    torch.manual_seed(0)  # as every caller does on start
    resumed = tiny_net()
    finetune.train(resumed, data, epochs=2, lr=0.1, checkpoint=checkpoint, resume=True, progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_a_split_smaller_than_a_batch_is_one_line_not_a_hang():
    data = datasets.load_data("fashion-mnist", batch_size=128, train_limit=100)
    with pytest.raises(UserError, match=r"holds no full batch of 128; lower the batch size, or use more training images"):
        finetune.train(tiny_net(), data, epochs=1, progress=False)
    with pytest.raises(UserError, match="no full batch"):
        finetune.recalibrate_bn(tiny_net(), data, "cpu")


def test_a_diverged_training_stops_in_one_line_without_a_checkpoint(tmp_path):
    """A loss gone to NaN or infinity says so and how to fix it, instead of training on and saving NaN weights."""
    checkpoint = tmp_path / "state.pt"
    with pytest.raises(UserError, match=r"training diverged: the loss was (nan|inf) by epoch 1 .*lower the learning rate"):
        finetune.train(tiny_net(), tiny_data(), epochs=2, lr=1e12, checkpoint=checkpoint, progress=False)
    assert not checkpoint.exists()


def test_resume(tmp_path):
    """A finished run resumed does no step: the saved weights and history come back, the data is never iterated."""
    data = tiny_data()
    checkpoint = tmp_path / "state.pt"
    trained = tiny_net()
    history = finetune.train(trained, data, epochs=1, checkpoint=checkpoint, settings={"run": "a"}, progress=False)

    class NoStep(list):  # the length of an epoch, and a failure if any step draws a batch
        def __iter__(self):
            pytest.fail("a resumed finished run trained again")

    untouched = dataclasses.replace(data, train=NoStep([None] * len(data.train)))
    resumed_model = tiny_net()
    resumed = finetune.train(resumed_model, untouched, epochs=1, checkpoint=checkpoint, resume=True, settings={"run": "a"},
                             progress=False)
    assert resumed == history
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), resumed_model.state_dict().values()))
    with pytest.raises(UserError, match="different training configuration"):
        finetune.train(tiny_net(), data, epochs=1, checkpoint=checkpoint, resume=True, settings={"run": "b"}, progress=False)
    for foreign in (b"half a file", None):  # torch.load's own error, or a file that is not a dict: one line each
        if foreign is None:
            torch.save([1, 2], checkpoint)
        else:
            checkpoint.write_bytes(foreign)
        with pytest.raises(UserError, match="is not a training state|different training configuration"):
            finetune.train(tiny_net(), data, epochs=1, checkpoint=checkpoint, resume=True, settings={"run": "a"}, progress=False)


def test_warmup_rises_linearly_then_decays():
    factors = [finetune.warmup_cosine(step, 100, 20) for step in range(100)]
    assert factors[0] == pytest.approx(1 / 20) and factors[19] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:20], factors[1:20]))  # rising through the warm-up
    assert factors[20] == 1.0 and factors[21] > 0.99  # the cosine starts where the warm-up ends: no drop between them
    assert all(a >= b for a, b in zip(factors[19:], factors[20:])) and factors[-1] < 0.01  # then falls to ~0
    assert finetune.warmup_cosine(0, 100, 0) == 1.0  # no warm-up: the cosine from the start


def test_a_warmup_over_every_step_still_trains():
    """A warm-up share that rounds to every step (0.9 of 2) leaves the last one to the cosine, not a division by zero."""
    history = finetune.train(tiny_net(), tiny_data(), epochs=2 / len(tiny_data().train), warmup=0.9, progress=False)
    assert history[-1]["epoch"] > 0


def _ddp_worker(rank, world_size, folder, port):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    finetune.setup_distributed("cpu")
    model = tiny_net()
    finetune.train(model, tiny_data(batch_size=32), epochs=0.25, progress=False)
    torch.save(model.state_dict(), os.path.join(folder, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_ddp_ranks_end_identical(tmp_path):
    with socket.socket() as probe:  # a port free now, not a fixed one another job on the machine may hold
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, str(tmp_path), port), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(first[k], second[k]) for k in first if "weight" in k or "bias" in k)


def test_the_run_re_estimates_bn_on_the_batches_it_is_configured_with(tmp_path, monkeypatch):
    """Before the one-shot and the final evaluation, on as many batches as the run's bn_batches (--bn-batches) says."""
    from types import SimpleNamespace

    from compress import graph, pipeline

    from conftest import SMALL_INPUT, small_model

    arch = graph.make_arch("mobilenet_v2", 10, 1, "small", SMALL_INPUT)
    graph.save_checkpoint(tmp_path / "rebuilt.pt", small_model("mobilenet_v2"), arch)
    used = []
    monkeypatch.setattr(finetune, "recalibrate_bn", lambda network, data, device, batches=50: used.append(batches) or network)
    monkeypatch.setattr(finetune, "evaluate", lambda network, data, device: {"top1": 0.5, "loss": 1.0})
    monkeypatch.setattr(finetune, "train", lambda network, data, **options: [{"epoch": 0.1}])
    config = {"device": "cpu", "finetune_epochs": 0.1, "finetune_lr": 0.03, "finetune_warmup": 0.2, "kd": False,
              "one_shot_eval": True, "seed": 0, "bn_batches": 7}
    pipeline.fine_tune(config, None, SimpleNamespace(has_labels=True), tmp_path / "rebuilt.pt", tmp_path / "model.pt")
    assert used == [7, 7]
    used.clear()  # not fine-tuned: the shipped network still gets statistics of its own, not the unpruned network's
    pipeline.fine_tune({**config, "finetune_epochs": 0, "one_shot_eval": False}, None, SimpleNamespace(has_labels=True),
                       tmp_path / "rebuilt.pt", tmp_path / "model.pt")
    assert used == [7]
