import numpy as np
import pytest
import torch

from compress import data as datasets
from compress.errors import UserError


def test_fashion_mnist_is_real():
    data = datasets.load_data("fashion-mnist")
    assert len(data.train.dataset) == 60000 and len(data.val.dataset) == 10000
    images, labels = data.train.dataset.tensors
    assert images.shape[1:] == (1, 28, 28) and images.dtype == torch.uint8
    assert labels.unique().tolist() == list(range(10)) and data.num_classes == 10
    assert images[:100].float().std() > 50  # real pictures, not a constant
    batch, batch_labels = next(iter(data.train))
    prepared = data.prepare(batch, train=True)
    assert prepared.shape == (128, 1, 28, 28) and abs(prepared.mean()) < 0.5  # load_data's default batch


def test_imagenet_stem_resizes():
    data = datasets.load_data("fashion-mnist", stem="imagenet", input_size=(3, 64, 64), train_limit=512)
    assert data.prepare(next(iter(data.val))[0][:4]).shape == (4, 3, 64, 64)


def test_bad_specs(tmp_path):
    with pytest.raises(UserError, match=str(tmp_path / "missing")):
        datasets.load_data("fashion-mnist", data_dir=tmp_path / "missing")
    with pytest.raises(UserError, match="fashion-mnist, imagefolder"):
        datasets.load_data("cifar-11")
    with pytest.raises(UserError, match="train"):
        datasets.load_data(f"imagefolder:{tmp_path}")


def test_a_damaged_idx_file_is_one_line(tmp_path):
    source = datasets._find_fashion_mnist(None)
    for pair in datasets.FASHION_MNIST_FILES.values():
        for name in pair:
            (tmp_path / name).write_bytes((source / name).read_bytes()[:1000])  # an interrupted copy
    with pytest.raises(UserError, match="is not a readable idx.gz file .*; replace it with the original"):
        datasets.load_data("fashion-mnist", data_dir=tmp_path)


@pytest.mark.parametrize("split, swapped, replaced_by, message", [
    ("test", 1, ("train", 1), "holds \\[60000\\] values, not one label for each of the 10000 images"),
    ("train", 1, ("test", 1), "holds \\[10000\\] values, not one label for each of the 60000 images"),
    ("test", 0, ("test", 1), "holds data of shape \\[10000\\], not 28x28 images"),
])
def test_an_idx_file_swapped_for_another_of_the_set_is_one_line(split, swapped, replaced_by, message, tmp_path):
    """Each file reads as idx; only the pairs' shapes show that one is another's (it trained on them, or crashed)."""
    source = datasets._find_fashion_mnist(None)
    for pair in datasets.FASHION_MNIST_FILES.values():
        for name in pair:
            (tmp_path / name).symlink_to(source / name)
    target = tmp_path / datasets.FASHION_MNIST_FILES[split][swapped]
    target.unlink()
    target.symlink_to(source / datasets.FASHION_MNIST_FILES[replaced_by[0]][replaced_by[1]])
    with pytest.raises(UserError, match=f"{message}.*; replace it with the original"):
        datasets.load_data("fashion-mnist", data_dir=tmp_path)


def test_an_idx_file_this_user_may_not_read_is_not_called_damaged(tmp_path, monkeypatch):
    """Permissions are the fix there, not a new copy (patched: the suite may run as root, who reads anything)."""
    def refuse(path, mode):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(datasets.gzip, "open", refuse)
    with pytest.raises(UserError, match="cannot read .*: permission denied; fix its permissions or pass another --data-dir"):
        datasets.load_data("fashion-mnist")


def test_imagefolder_splits_must_hold_images_of_the_same_classes(tmp_path):
    for split, label in (("train", "cat"), ("train", "dog"), ("val", "cat"), ("val", "emu")):
        (tmp_path / split / label).mkdir(parents=True)
        (tmp_path / split / label / "0.png").write_bytes(b"")  # ImageFolder looks at names only until an image is read
    with pytest.raises(UserError, match=r"different class folders \(dog, emu\)"):
        datasets.load_data(f"imagefolder:{tmp_path}")
    (tmp_path / "val" / "emu" / "0.png").rename(tmp_path / "val" / "emu" / "notes.txt")
    (tmp_path / "val" / "emu").rename(tmp_path / "val" / "dog")
    with pytest.raises(UserError, match="Found no valid file for the classes dog"):
        datasets.load_data(f"imagefolder:{tmp_path}")


def test_imagefolder_and_synthetic(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(2):  # a gradient left to right: a flip or a crop changes it
                pixels = np.broadcast_to(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], (40, 40, 3)) // (i + 1)
                Image.fromarray(np.ascontiguousarray(pixels)).save(tmp_path / split / label / f"{i}.png")
    data = datasets.load_data(f"imagefolder:{tmp_path}", batch_size=2, input_size=(3, 32, 32))
    images, labels = next(iter(data.val))
    assert images.shape == (2, 3, 32, 32) and data.num_classes == 2
    # Selection reads fixed, unaugmented training images, at its own batch size (not the loader's 2).
    first, second = datasets.heldout_batch(data, 3, "cpu"), datasets.heldout_batch(data, 3, "cpu")
    assert torch.equal(first[0], second[0]) and first[0].shape == (3, 3, 32, 32)
    draw = datasets.batch_sampler(data, 3, "cpu", torch.Generator().manual_seed(0))
    assert draw()[0].shape == (3, 3, 32, 32)
    # BN statistics are re-estimated on the images as evaluation sees them, not on the training loader's random crops.
    plain = torch.stack([image for image, _ in data.plain_train]).flatten(1)
    augmented = torch.cat([images for images, _ in data.train]).flatten(1)
    assert not (augmented[:, None] == plain[None]).all(-1).any(1).all()  # the check below can fail
    for images, _ in datasets.unaugmented_train(data):
        assert (images.flatten(1)[:, None] == plain[None]).all(-1).any(1).all()
    # --train-limit keeps a fixed subset of both classes (the files are sorted by class), for training and selection.
    limited = datasets.load_data(f"imagefolder:{tmp_path}", batch_size=2, input_size=(3, 32, 32), train_limit=3)
    assert len(limited.train.dataset) == len(limited.plain_train) == 3 and limited.num_classes == 2
    assert {label for _, label in limited.plain_train} == {0, 1}
    synthetic = datasets.load_data("synthetic", input_size=(3, 32, 32), batch_size=4)
    assert not synthetic.has_labels and next(iter(synthetic.val))[0].shape == (4, 3, 32, 32)


def test_an_unreadable_file_in_an_image_folder_is_one_line(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / split / "cat").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / "cat" / "0.png")
    (tmp_path / "val" / "cat" / "1.jpg").write_text("not an image")
    data = datasets.load_data(f"imagefolder:{tmp_path}", batch_size=2, input_size=(3, 8, 8))
    with pytest.raises(UserError, match=r"1.jpg' is not an image this toolkit can read \(UnidentifiedImageError\); remove it"):
        next(iter(data.val))


def test_selection_never_draws_a_held_out_image():
    """The curves, tolerance checks and choices scored on the held-out batch are scored on images no greedy step chose on."""
    data = datasets.load_data("synthetic", input_size=(1, 4, 4))  # 512 distinct random images
    draw, (heldout, _) = datasets.selection_batches(data, 8, 500, "cpu", seed=0)
    assert torch.equal(heldout, datasets.heldout_batch(data, 500, "cpu", seed=0)[0])
    drawn = torch.cat([draw()[0] for _ in range(50)]).flatten(1)
    held = heldout.flatten(1)
    assert not (drawn[:, None] == held[None]).all(-1).any() and len(drawn.unique(dim=0)) == 12  # the 12 images left
    with pytest.raises(UserError, match="--heldout 512 takes the whole training split"):
        datasets.selection_batches(data, 8, 512, "cpu")
