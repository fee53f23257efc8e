"""Image data layer: sources, column detection, one-line errors, decoding paths, resumable loader.

Offline and fast: every dataset is built in tmp_path from a few tiny images,
except scikit-learn's bundled digits and the shared CIFAR-10 copy (skipped
when ../shared/data is absent).
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from pgfsparse.config.schema import AugmentConfig, DataConfig
from pgfsparse.data import (
    build_image_data,
    make_eval_loader,
    make_train_loader,
    steps_per_epoch,
)
from pgfsparse.data.images.dataset import LazyImageDataset, TensorImageDataset
from pgfsparse.data.loader import eval_sample
from pgfsparse.errors import DataError

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
NO_AUGMENT = AugmentConfig(hflip=0.0, random_crop=False)


# --- builders of tiny datasets ---------------------------------------------------------------

def encoded_image(level: int, size: int = 8, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A flat image whose gray level encodes its class, so labels can be checked against pixels."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (size, size), level if mode == "L" else (level,) * 3).save(buffer, fmt)
    return buffer.getvalue()


def level_of(label: int) -> int:
    return 40 + 60 * label


def write_parquet(path: Path, labels, *, names=None, size=8, fmt="PNG", image_col="image", label_col="label",
                  extra=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = [{"bytes": encoded_image(level_of(y), size, fmt), "path": None} for y in labels]
    columns = {image_col: pa.array(images, type=image_type), label_col: pa.array(labels, type=pa.int64())}
    label_feature = {"_type": "ClassLabel", "names": names} if names else {"_type": "Value", "dtype": "int64"}
    features = {image_col: {"_type": "Image"}, label_col: label_feature}
    for name, values in (extra or {}).items():
        columns[name] = pa.array(values, type=pa.int64())
        features[name] = {"_type": "Value", "dtype": "int64"}
    table = pa.table(columns).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


IMAGENET_NAMES = ["tench", "goldfish", "great white shark"]
TRAIN_LABELS = [0, 1, 2, 0, 1, 2, 2, 1]
VAL_LABELS = [2, 0, 1]


def imagenet_folder(root: Path, **kwargs) -> Path:
    write_parquet(root / "train.parquet", TRAIN_LABELS, names=IMAGENET_NAMES, **kwargs)
    write_parquet(root / "validation.parquet", VAL_LABELS, names=IMAGENET_NAMES, **kwargs)
    return root


def listing(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def pixel_level(dataset: Dataset, index: int, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> float:
    """An eval item's gray level back in 0..255."""
    image, _ = dataset[index]
    mean, std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return float(((image * std + mean) * 255).mean())


@pytest.fixture
def no_data_env(monkeypatch):
    monkeypatch.delenv("PGF_DATA_DIR", raising=False)


def fail_hub(monkeypatch):
    """Make the hub unreachable instantly (offline load_dataset retries for ~25 s)."""
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'x' on the Hub\n(LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)


# --- datasets --------------------------------------------------------------------------------

def test_digits_load_with_a_deterministic_split():
    data = build_image_data(DataConfig(name="digits"))
    again = build_image_data(DataConfig(name="digits"))
    assert (len(data.train), len(data.eval)) == (1438, 359)  # the last 20% of 1797 are eval
    assert (data.num_classes, data.channels, data.image_size) == (10, 1, 8)
    assert data.class_names == [str(d) for d in range(10)]
    image, label = data.eval[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and isinstance(label, int)
    assert torch.equal(data.eval.labels, again.eval.labels) and torch.equal(data.eval.pixels, again.eval.pixels)
    from sklearn.datasets import load_digits

    assert data.eval.labels.tolist() == load_digits().target[1438:].tolist()
    assert len(build_image_data(DataConfig(name="digits", eval_limit=50)).eval) == 50


def test_image_folder_tree_loads_with_folder_classes(tmp_path, no_data_env):
    for split, per_class in (("train", 3), ("val", 2)):
        for label, name in enumerate(["cat", "dog"]):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(per_class):
                (tmp_path / split / name / f"{i}.png").write_bytes(encoded_image(level_of(label)))
    before = listing(tmp_path)
    data = build_image_data(DataConfig(name="imagefolder", path=str(tmp_path), augment=NO_AUGMENT))
    assert data.class_names == ["cat", "dog"] and data.num_classes == 2
    assert (len(data.train), len(data.eval), data.image_size, data.channels) == (6, 4, 8, 3)
    assert data.eval.labels.tolist() == [0, 0, 1, 1]
    for index, label in enumerate(data.eval.labels.tolist()):
        assert abs(pixel_level(data.eval, index) - level_of(label)) < 1
    assert listing(tmp_path) == before


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_imagenet_parquet_loads_via_data_path(tmp_path, no_data_env, fmt):
    root = imagenet_folder(tmp_path / "imagenet", fmt=fmt)
    before = listing(tmp_path)
    data = build_image_data(DataConfig(name="imagenet", path=str(root), augment=NO_AUGMENT))
    assert data.class_names == IMAGENET_NAMES and data.num_classes == 3
    assert (len(data.train), len(data.eval), data.channels) == (8, 3, 3)
    assert data.eval.labels.tolist() == VAL_LABELS and data.source == str(root)
    for index, label in enumerate(VAL_LABELS):
        assert abs(pixel_level(data.eval, index) - level_of(label)) < 3  # JPEG is close, PNG exact
    assert listing(tmp_path) == before


def test_imagenet_parquet_loads_via_pgf_data_dir(tmp_path, monkeypatch):
    imagenet_folder(tmp_path / "imagenet")
    before = listing(tmp_path)
    monkeypatch.setenv("PGF_DATA_DIR", str(tmp_path))
    data = build_image_data(DataConfig(name="imagenet", eval_limit=2))
    assert data.source == f"{tmp_path / 'imagenet'}; eval on a fixed seeded sample of 2 of 3 examples (data.eval_limit)"
    assert data.eval.labels.tolist() == [VAL_LABELS[i] for i in eval_sample(3, 2)]
    assert listing(tmp_path) == before


def test_hub_layout_and_train_false(tmp_path, no_data_env):
    write_parquet(tmp_path / "data" / "train-00000-of-00002.parquet", TRAIN_LABELS[:4], names=IMAGENET_NAMES)
    write_parquet(tmp_path / "data" / "train-00001-of-00002.parquet", TRAIN_LABELS[4:], names=IMAGENET_NAMES)
    write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", VAL_LABELS, names=IMAGENET_NAMES)
    full = build_image_data(DataConfig(name="imagenet", path=str(tmp_path)))
    assert len(full.train) == 8 and full.train.labels.tolist() == TRAIN_LABELS  # shards concatenated in order
    eval_only = build_image_data(DataConfig(name="imagenet", path=str(tmp_path)), train=False)
    assert eval_only.train is None and len(eval_only.eval) == 3 and eval_only.num_classes == 3


def test_auto_augment_runs_and_replays_from_the_torch_seed():
    augment = AugmentConfig(auto_augment="rand-m10-inc1")  # posterize keeps 0 bits at m10
    data = build_image_data(DataConfig(name="digits", augment=augment))
    torch.manual_seed(0)
    first = torch.stack([data.train[i][0] for i in range(300)])  # must not raise on 0-bit posterize
    torch.manual_seed(0)
    assert torch.equal(first, torch.stack([data.train[i][0] for i in range(300)]))


def test_large_images_decode_lazily_through_timm(tmp_path, no_data_env):
    root = imagenet_folder(tmp_path, size=72, fmt="JPEG")  # > 64 px: per-item PIL + timm transforms
    data = build_image_data(DataConfig(name="imagenet", path=str(root), image_size=32))
    assert isinstance(data.train, LazyImageDataset) and data.image_size == 32
    assert data.eval[0][0].shape == (3, 32, 32) and torch.equal(data.eval[0][0], data.eval[0][0])
    # Augmentation (timm draws from python's and numpy's RNGs) is a function of torch's RNG state.
    torch.manual_seed(1)
    first = data.train[0][0]
    torch.manual_seed(1)
    assert torch.equal(first, data.train[0][0])


def test_memory_mapped_parquet_writes_its_cache_outside_the_data(tmp_path, monkeypatch, no_data_env):
    import datasets

    from pgfsparse.data.images import readers

    root = imagenet_folder(tmp_path / "data")
    before = listing(root)
    monkeypatch.setattr(readers, "LARGE_SPLIT_BYTES", 0)  # treat the tiny files as ImageNet-size
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    data = build_image_data(DataConfig(name="imagenet", path=str(root), eval_limit=2))
    sample = [VAL_LABELS[i] for i in eval_sample(3, 2)]  # data.eval_limit: a fixed sample (test_hardening.py)
    assert data.train.labels.tolist() == TRAIN_LABELS and data.eval.labels.tolist() == sample
    assert data.class_names == IMAGENET_NAMES and listing(root) == before
    assert any((tmp_path / "cache").iterdir())  # the Arrow cache went to HF_DATASETS_CACHE


def test_hub_dataset_is_used_when_no_local_copy(monkeypatch, no_data_env):
    import datasets

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=CIFAR10_NAMES)})

    def split(labels):
        rows = {"img": [{"bytes": encoded_image(level_of(y % 3)), "path": None} for y in labels], "label": labels}
        return datasets.Dataset.from_dict(rows, features=features)

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id: calls.append(hub_id) or datasets.DatasetDict(
        train=split([0, 1, 2, 3]), test=split([4, 5])))
    data = build_image_data(DataConfig(name="cifar10"))
    assert calls == ["uoft-cs/cifar10"] and data.source == "hub uoft-cs/cifar10"
    assert data.class_names == CIFAR10_NAMES and (len(data.train), len(data.eval)) == (4, 2)


# --- columns ---------------------------------------------------------------------------------

def test_columns_are_detected_and_configurable(tmp_path, no_data_env):
    coarse = [y % 2 for y in TRAIN_LABELS]
    for split, labels in (("train", TRAIN_LABELS), ("test", VAL_LABELS)):
        write_parquet(tmp_path / f"{split}.parquet", labels, image_col="picture", label_col="fine_label",
                      extra={"coarse_label": [y % 2 for y in labels]})
    data = build_image_data(DataConfig(name="imagenet", path=str(tmp_path)))  # Image-typed column, fine_label
    assert data.train.labels.tolist() == TRAIN_LABELS and data.class_names is None and data.num_classes == 3
    coarse_data = build_image_data(DataConfig(name="imagenet", path=str(tmp_path), label_column="coarse_label"))
    assert coarse_data.train.labels.tolist() == coarse and coarse_data.num_classes == 2
    with pytest.raises(ValueError) as error:
        build_image_data(DataConfig(name="imagenet", path=str(tmp_path), image_column="img"))
    message = str(error.value)
    assert "\n" not in message and "data.image_column='img'" in message and isinstance(error.value, DataError)
    assert all(column in message for column in ("picture", "fine_label", "coarse_label"))


def test_missing_split_names_the_splits(tmp_path, no_data_env):
    imagenet_folder(tmp_path)
    with pytest.raises(ValueError, match=r"no split 'dev' .*splits: train, validation.*data.eval_split"):
        build_image_data(DataConfig(name="imagenet", path=str(tmp_path), eval_split="dev"))


# --- one-line errors -------------------------------------------------------------------------

def test_bad_path_is_a_one_line_error(tmp_path, no_data_env):
    with pytest.raises(FileNotFoundError) as error:
        build_image_data(DataConfig(name="cifar10", path=str(tmp_path / "nowhere")))
    assert "\n" not in str(error.value) and str(tmp_path / "nowhere") in str(error.value)
    assert "data.path" in str(error.value) and "PGF_DATA_DIR" in str(error.value)
    assert isinstance(error.value, DataError)  # the CLI prints these without a traceback
    with pytest.raises(FileNotFoundError, match="holds neither"):
        build_image_data(DataConfig(name="cifar10", path=str(tmp_path)))  # exists, but empty


def test_pgf_data_dir_without_the_dataset_and_no_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("PGF_DATA_DIR", str(tmp_path))
    fail_hub(monkeypatch)
    started = time.perf_counter()
    with pytest.raises(RuntimeError) as error:
        build_image_data(DataConfig(name="imagenet"))
    message = str(error.value)
    assert "\n" not in message and time.perf_counter() - started < 5 and isinstance(error.value, DataError)
    for needle in (str(tmp_path / "imagenet"), "ILSVRC/imagenet-1k", "PGF_DATA_DIR=", "data.path=", "ConnectionError"):
        assert needle in message
    assert listing(tmp_path) == []


def test_imagefolder_without_a_path_says_where_it_looked(no_data_env):
    with pytest.raises(FileNotFoundError, match=r"PGF_DATA_DIR \(unset\).*data\.path=") as error:
        build_image_data(DataConfig(name="imagefolder"))
    assert "\n" not in str(error.value)


# --- loader ----------------------------------------------------------------------------------

class Indices(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return index


def take(loader, count: int):
    stream = iter(loader)
    return [next(stream).tolist() for _ in range(count)]


def test_resumed_loader_continues_the_uninterrupted_stream():
    dataset = Indices(10)  # batch 3, drop_last: 3 batches per epoch
    full = take(make_train_loader(dataset, 3, seed=7), 10)
    def epoch_order(epoch):
        return torch.randperm(10, generator=torch.Generator().manual_seed(7 + epoch))

    assert full[:6] == [b.tolist() for e in (0, 1) for b in epoch_order(e)[:9].split(3)]
    for start in (1, 2, 3, 4, 7):  # within an epoch, at and across epoch boundaries
        assert take(make_train_loader(dataset, 3, seed=7, start_step=start), 3) == full[start:start + 3]
    assert take(make_train_loader(dataset, 3, seed=7, start_step=2, accumulate=2), 2) == full[4:6]


def test_ranks_take_disjoint_shards_that_cover_each_epoch():
    dataset = Indices(12)
    ranks = [take(make_train_loader(dataset, 3, seed=0, rank=r, world_size=2), 4) for r in (0, 1)]
    for epoch in range(2):
        shards = [set(sum(batches[2 * epoch:2 * epoch + 2], [])) for batches in ranks]
        assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(12))
    assert take(make_train_loader(dataset, 3, seed=0, rank=1, world_size=2, start_step=3), 1) == ranks[1][3:4]
    short = [take(make_train_loader(Indices(10), 3, seed=0, rank=r, world_size=2, drop_last=False), 2) for r in (0, 1)]
    assert [len(b) for b in short[0] + short[1]] == [3, 2, 3, 2]  # last batch evened out across ranks


def test_resume_replays_augmentation_from_the_torch_rng_state():
    data = build_image_data(DataConfig(name="digits"))  # random crop + flip
    torch.manual_seed(0)
    stream = iter(make_train_loader(data.train, 16, seed=0))
    batches, saved = [], None
    for step in range(5):
        if step == 3:
            saved = torch.get_rng_state()
        batches.append(next(stream)[0])
    torch.set_rng_state(saved)
    resumed = iter(make_train_loader(data.train, 16, seed=0, start_step=3))
    assert torch.equal(next(resumed)[0], batches[3]) and torch.equal(next(resumed)[0], batches[4])
    state = torch.get_rng_state()
    iter(make_train_loader(data.train, 16, seed=0))
    assert torch.equal(state, torch.get_rng_state())  # building a loader draws nothing from the global RNG


def test_eval_loader_is_ordered_complete_and_leaves_the_rng_alone():
    state = torch.get_rng_state()
    assert [i for batch in make_eval_loader(Indices(7), 3) for i in batch.tolist()] == list(range(7))
    assert torch.equal(state, torch.get_rng_state())


def test_steps_per_epoch():
    assert steps_per_epoch(50000, 128) == 390
    assert steps_per_epoch(50000, 128, world_size=2) == 195
    assert steps_per_epoch(50000, 64, accumulate=2) == 390
    assert steps_per_epoch(10, 64) == 1


# --- light imports, shared CIFAR-10 ----------------------------------------------------------

def test_data_package_defers_heavy_imports():
    code = "import sys, pgfsparse.data; print(sorted({'datasets', 'timm', 'pyarrow', 'sklearn'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_cifar10_from_shared_data(monkeypatch):
    if not (SHARED_DATA / "cifar10").is_dir():
        pytest.skip(f"no shared CIFAR-10 copy at {SHARED_DATA / 'cifar10'}")
    monkeypatch.setenv("PGF_DATA_DIR", str(SHARED_DATA))
    started = time.perf_counter()
    data = build_image_data(DataConfig(name="cifar10"))
    seconds = time.perf_counter() - started
    assert (len(data.train), len(data.eval)) == (50000, 10000)
    assert (data.num_classes, data.image_size, data.channels) == (10, 32, 3)
    assert data.class_names == CIFAR10_NAMES and data.source == str(SHARED_DATA / "cifar10")
    image, label = data.train[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10
    assert isinstance(data.train, TensorImageDataset)
    assert seconds < 15, f"decoding CIFAR-10 took {seconds:.1f} s"
    print(f"CIFAR-10 train+test loaded and decoded in {seconds:.1f} s")
