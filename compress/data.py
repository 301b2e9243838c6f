"""Datasets: the real Fashion-MNIST (the embedded default), ImageNet-layout folders, and synthetic input.

Fashion-MNIST is 47 MB of uint8: it is held in memory as tensors and normalised/augmented a whole
batch at a time on the model's device, because per-image PIL transforms cost more than the
forward pass of a small CNN on 2 CPU cores.
"""
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from compress.errors import UserError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPECS = "fashion-mnist, imagefolder:PATH or synthetic"


@dataclass
class Data:
    """What the pipeline needs from a dataset: loaders, its shape, and whether it has real labels."""

    name: str
    train: DataLoader
    val: DataLoader
    num_classes: int
    input_size: tuple  # (C, H, W) the model sees
    has_labels: bool = True
    prepare: callable = None  # uint8 batch -> normalised float batch on the device (augment when training)
    plain_train: Dataset = None  # image folders: the training images without augmentation, for selection batches


class InMemory(TensorDataset):
    """Fetches a whole batch with one indexing op: per-item fetching costs more than a small CNN's step."""

    def __getitems__(self, indices):
        index = torch.as_tensor(indices)
        return tuple(tensor[index] for tensor in self.tensors)


def _whole_batch(batch):
    return batch


def _read_idx(path):
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        dims = raw[3]
        shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
        return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape).copy())
    except PermissionError:  # the file may be fine: replacing it is not the fix
        raise UserError(f"cannot read '{path}': permission denied; fix its permissions or pass another --data-dir") from None
    except (OSError, EOFError, IndexError, ValueError) as err:  # truncated download, not gzip, header and size disagree
        raise UserError(f"'{path}' is not a readable idx.gz file ({type(err).__name__}); replace it with the original") from None


def _find_fashion_mnist(data_dir):
    """Folder holding the four idx.gz files: --data-dir, else Debian's package, else a torchvision download."""
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            problem = "is not a folder" if folder.exists() else "does not exist"
            raise UserError(f"data folder '{folder}' {problem}; pass an existing folder to --data-dir")
        for candidate in (folder, folder / "FashionMNIST" / "raw"):
            if all((candidate / name).is_file() for pair in FASHION_MNIST_FILES.values() for name in pair):
                return candidate
        raise UserError(f"no Fashion-MNIST idx .gz files in '{folder}'; expected {FASHION_MNIST_FILES['train'][0]} and the other three")
    if all((DEBIAN_FASHION_MNIST / n).is_file() for pair in FASHION_MNIST_FILES.values() for n in pair):
        return DEBIAN_FASHION_MNIST
    cache = Path.home() / ".cache" / "compress"
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(cache, download=True)
    except Exception:
        raise UserError(
            f"Fashion-MNIST not found in {DEBIAN_FASHION_MNIST} and could not be downloaded to {cache}; "
            "run `apt-get install dataset-fashion-mnist` or pass --data-dir"
        ) from None
    return cache / "FashionMNIST" / "raw"


def fashion_mnist_tensors(data_dir=None):
    """{'train': (images uint8 N x 1 x 28 x 28, labels int64), 'test': ...} from the idx files, each pair checked to
    hold N 28x28 images and their N labels (a file swapped for another of the set reads as idx, but wrongly)."""
    folder = _find_fashion_mnist(data_dir)
    tensors = {}
    for split, (images_name, labels_name) in FASHION_MNIST_FILES.items():
        images, labels = _read_idx(folder / images_name), _read_idx(folder / labels_name)
        if images.dim() != 3 or images.shape[1:] != (28, 28):
            raise UserError(f"'{folder / images_name}' holds data of shape {list(images.shape)}, not 28x28 images; replace "
                            "it with the original")
        if labels.dim() != 1 or len(labels) != len(images):
            raise UserError(f"'{folder / labels_name}' holds {list(labels.shape)} values, not one label for each of the "
                            f"{len(images)} images of '{images_name}'; replace it with the original")
        tensors[split] = (images.unsqueeze(1), labels.long())
    return tensors


def fashion_mnist_prepare(input_size):
    """Batch transform for Fashion-MNIST: scale, normalise, resize/replicate for an ImageNet stem; crop+flip when training.

    The crop takes one offset per batch from a copy padded with zeros after normalising (the mean grey), not
    torchvision's RandomCrop per image padded with black: that one fine-tuned imitation's 0.25x network 0.2 points
    lower after one epoch, on two seeds (reports/augmentation_crops_cpu/), and the shipped teacher was trained with this.
    """
    channels, height, width = input_size

    def prepare(images, train=False):
        images = images.float().div_(255).sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD)
        if train:
            padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
            dy, dx = torch.randint(0, 5, (2,)).tolist()
            images = padded[:, :, dy : dy + 28, dx : dx + 28]
            flip = torch.rand(len(images), device=images.device) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
        if (height, width) != (28, 28):
            images = torch.nn.functional.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
        return images.expand(-1, channels, -1, -1) if channels != 1 else images

    return prepare


def _loader(dataset, batch_size, train, workers):
    sampler = DistributedSampler(dataset, shuffle=train) if train and torch.distributed.is_initialized() else None
    collate = _whole_batch if isinstance(dataset, InMemory) else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler, collate_fn=collate,
                      num_workers=workers, drop_last=train, persistent_workers=workers > 0)


def _read_image(path):
    """torchvision's image loader, with a file PIL cannot read named in one line (it surfaces mid-epoch, or mid-run)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets.folder import default_loader

    try:
        return default_loader(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as err:
        raise UserError(f"'{path}' is not an image this toolkit can read ({type(err).__name__}); remove it from the "
                        "folder or replace it") from None


def _imagefolder(path, batch_size, workers, input_size, train_limit=None):
    """An ImageNet-layout folder; ``train_limit`` keeps a fixed random subset of the training images (the files are
    sorted by class, so the first N would be a few classes)."""
    from torchvision import datasets, transforms

    root = Path(path)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise UserError(f"no '{split}' folder in '{root}'; imagefolder:PATH expects PATH/train/<class>/* and PATH/val/<class>/*")
    size = input_size[-1]
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_transform = transforms.Compose([
        transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
    plain = transforms.Compose([transforms.Resize(int(size * 256 / 224)), transforms.CenterCrop(size), transforms.ToTensor(),
                                normalize])
    try:
        train = datasets.ImageFolder(root / "train", train_transform, loader=_read_image)
        val = datasets.ImageFolder(root / "val", plain, loader=_read_image)
    except FileNotFoundError as err:  # torchvision's: a split with no class folders, or a class folder with no images
        raise UserError(f"imagefolder '{root}': {err}") from None
    if val.classes != train.classes:  # labels are class indices: other classes in val/ would be scored against wrong labels
        differ = sorted(set(train.classes) ^ set(val.classes))
        raise UserError(f"imagefolder '{root}': train/ and val/ have different class folders ({', '.join(differ[:3])}"
                        f"{', ...' if len(differ) > 3 else ''}); give both splits the same classes")
    classes, plain_train = len(train.classes), datasets.ImageFolder(root / "train", plain, loader=_read_image)
    if train_limit:
        kept = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:train_limit].tolist()
        train, plain_train = Subset(train, kept), Subset(plain_train, kept)
    return Data(f"imagefolder:{root}", _loader(train, batch_size, True, workers), _loader(val, batch_size, False, workers),
                classes, (3, size, size), prepare=lambda images, train=False: images, plain_train=plain_train)


def _synthetic(batch_size, input_size, num_classes=1000, samples=512):
    images = torch.randn(samples, *input_size, generator=torch.Generator().manual_seed(0))  # the same every call
    labels = torch.zeros(samples, dtype=torch.long)
    dataset = InMemory(images, labels)
    return Data("synthetic", _loader(dataset, batch_size, True, 0), _loader(dataset, batch_size, False, 0),
                num_classes, tuple(input_size), has_labels=False, prepare=lambda images, train=False: images)


def check_labelled(spec):
    """Refuse synthetic data where labels are the point (training, scoring): its every label is 0."""
    if spec == "synthetic":
        raise UserError("--data synthetic has no labels: it times networks but cannot train or score them; pass "
                        "--data fashion-mnist or imagefolder:PATH")


def check_data_options(spec, data_dir, train_limit):
    """Refuse a --data-dir or --train-limit that ``spec`` would not read: recorded in the run, but ignored."""
    if data_dir and spec != "fashion-mnist":
        raise UserError(f"--data-dir is where Fashion-MNIST's idx files are, and --data {spec} does not read it (an image "
                        "folder's path goes in --data imagefolder:PATH); drop --data-dir")
    if train_limit and spec == "synthetic":
        raise UserError("--train-limit limits the training images, and --data synthetic has none; drop --train-limit")


def load_data(spec="fashion-mnist", data_dir=None, stem="small", batch_size=128, workers=0, input_size=None, train_limit=None):
    """The dataset named by ``spec``, shaped for a model with the given stem.

    Fashion-MNIST loaders yield uint8 batches; ``data.prepare(images, train)`` turns them into model
    input on whatever device they sit (so the GPU does the augmentation).
    """
    check_data_options(spec, data_dir, train_limit)
    if spec == "fashion-mnist":
        input_size = tuple(input_size or ((1, 28, 28) if stem == "small" else (3, 224, 224)))
        tensors = fashion_mnist_tensors(data_dir)
        train_images, train_labels = tensors["train"]
        if train_limit:
            train_images, train_labels = train_images[:train_limit], train_labels[:train_limit]
        train = InMemory(train_images, train_labels)
        val = InMemory(*tensors["test"])
        return Data("fashion-mnist", _loader(train, batch_size, True, workers), _loader(val, batch_size, False, workers),
                    10, input_size, prepare=fashion_mnist_prepare(input_size))
    if spec.startswith("imagefolder:"):
        return _imagefolder(spec.split(":", 1)[1], batch_size, workers, input_size or (3, 224, 224), train_limit)
    if spec == "synthetic":
        return _synthetic(batch_size, input_size or (3, 224, 224))
    raise UserError(f"unknown data '{spec}'; use {SPECS}")


def unaugmented_train(data):
    """Shuffled training batches as evaluation sees the images, for re-estimating BN statistics: an image folder's
    training loader crops and flips at random; the other loaders yield the images as they are (``prepare`` augments)."""
    if data.plain_train is None:
        return data.train
    return _loader(data.plain_train, data.train.batch_size, True, data.train.num_workers)


def _training_images(data, index, device):
    """(images, labels) of the training images at ``index``, unaugmented, on ``device``."""
    if data.plain_train is not None:  # image folders: decode the files, without augmentation
        return _stack([data.plain_train[i] for i in index.tolist()], device)
    images, labels = data.train.dataset.tensors
    return data.prepare(images[index].to(device), train=False), labels[index].to(device)


def _training_size(data):
    return len(data.plain_train) if data.plain_train is not None else len(data.train.dataset)


def _heldout_index(data, size, seed=0):
    """Which training images form the held-out subset: the first ``size`` of a permutation drawn with ``seed``."""
    return torch.randperm(_training_size(data), generator=torch.Generator().manual_seed(seed))[:size]


def batch_sampler(data, batch_size, device, generator=None, exclude=None):
    """A function drawing a fresh random training mini-batch (images, labels) on ``device``: one per greedy step.
    Images whose index is in ``exclude`` are never drawn."""
    pool = torch.ones(_training_size(data), dtype=torch.bool)
    if exclude is not None:
        pool[exclude] = False
    pool = pool.nonzero().squeeze(1)
    return lambda: _training_images(data, pool[torch.randint(0, len(pool), (batch_size,), generator=generator)], device)


def heldout_batch(data, size, device, seed=0):
    """A fixed subset of the *training* set for tolerance checks and selection curves (never the test split)."""
    return _training_images(data, _heldout_index(data, size, seed), device)


def check_fits(arch, data, source):
    """One line, before any work, where the network ``source`` holds (its ``arch``) cannot read the data's images or,
    where the data has labels, predict its classes."""
    classes = data.has_labels and arch["num_classes"] != data.num_classes
    if tuple(arch["input_size"]) != tuple(data.input_size) or classes:
        raise UserError(f"{source} takes {list(arch['input_size'])} input and predicts {arch['num_classes']} classes, but "
                        f"data '{data.name}' gives {list(data.input_size)}" + (f" and {data.num_classes}" if data.has_labels else "")
                        + "; pass a matching checkpoint, or the --data it was trained on")


def check_heldout(data, heldout):
    """Refuse a held-out subset that leaves no training image to select on."""
    size = _training_size(data)
    if heldout >= size:
        raise UserError(f"--heldout {heldout} takes the whole training split ({size} images) and leaves none for "
                        "selection batches; lower --heldout")


def selection_batches(data, batch_size, heldout, device, seed=0):
    """(draw, held-out batch) for channel selection, disjoint: ``draw()`` never returns a held-out image, so the
    curves, tolerance checks and choices scored on the held-out batch are scored on images no greedy step chose on.

    Drawn from the whole training set with the same seed, the first drawn image was the first held-out one, and at
    the published settings (128 images per step, 60,000 training images) every 470 steps draw a given image with
    probability 1 - 1/e: a selection of thousands of steps would draw nearly every held-out image too.
    """
    check_heldout(data, heldout)
    index = _heldout_index(data, heldout, seed)
    draw = batch_sampler(data, batch_size, device, torch.Generator().manual_seed(seed), exclude=index)
    return draw, _training_images(data, index, device)


def _stack(samples, device):
    images, labels = zip(*samples)
    return torch.stack(images).to(device), torch.tensor(labels).to(device)
