"""The hf: reader on tiny Hugging Face datasets built here (Dataset.from_dict, save_to_disk): class
names, columns and splits as configured, errors that list what exists, the offline miss, the missing
extra, and the decoded-image cache."""

import sys

import numpy as np
import pytest
from PIL import Image

from distillbench.config import DataConfig
from distillbench.data import dataset_problem, dataset_reader, load_study_data
from distillbench.data import huggingface as huggingface_module
from distillbench.data.huggingface import read_huggingface
from distillbench.errors import UserError

datasets = pytest.importorskip("datasets", reason="the hf: reader needs the optional 'datasets' (pip install '.[hf]')")

NAMES = ["airplane", "bird", "cat"]  # ClassLabel order, deliberately not the order the labels appear in


def pixels(label: int, index: int) -> np.ndarray:
    image = np.empty((8, 8, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 50 * max(label, 0), 10 * index, (np.arange(8) * 7)[None, :]
    return image


def split(labels: list[int], offset: int = 0) -> "datasets.Dataset":
    features = datasets.Features(
        {"img": datasets.Image(), "fine": datasets.ClassLabel(names=NAMES), "id": datasets.Value("int32")}
    )
    images = [Image.fromarray(pixels(label, offset + index)) for index, label in enumerate(labels)]
    return datasets.Dataset.from_dict(
        {"img": images, "fine": labels, "id": list(range(len(labels)))}, features=features
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    """A DatasetDict with train (4 images per class) and validation (2 per class), saved to disk."""
    path = tmp_path_factory.mktemp("hf") / "tiny"
    datasets.DatasetDict({"train": split([2, 0, 1] * 4), "validation": split([1, 2, 0] * 2, offset=20)}).save_to_disk(
        str(path)
    )
    return str(path)


def config(path: str, tmp_path, **fields) -> DataConfig:
    fields = {"image_column": "img", "label_column": "fine", "test_split": "validation", **fields}
    return DataConfig(dataset=f"hf:{path}", download_root=tmp_path / "downloads", val_size=3, **fields)


def test_classes_labels_and_pixels_are_read(saved, tmp_path):
    arrays = read_huggingface(config(saved, tmp_path))
    assert arrays.class_names == tuple(NAMES)
    assert arrays.train_images.shape == (12, 3, 8, 8) and arrays.train_images.dtype == np.uint8
    assert arrays.train_labels.tolist() == [2, 0, 1] * 4 and arrays.test_labels.tolist() == [1, 2, 0] * 2
    np.testing.assert_array_equal(arrays.train_images[4], pixels(0, 4).transpose(2, 0, 1))
    np.testing.assert_array_equal(arrays.test_images[1], pixels(2, 21).transpose(2, 0, 1))
    assert saved in arrays.source and "validation" in arrays.source and not arrays.synthetic


def test_a_missing_split_lists_the_splits(saved, tmp_path):
    with pytest.raises(UserError, match=r"has no split 'test'; its splits are train, validation"):
        read_huggingface(config(saved, tmp_path, test_split="test"))


@pytest.mark.parametrize(("field", "column"), [("image_column", "image"), ("label_column", "label")])
def test_a_missing_column_lists_the_columns(saved, tmp_path, field, column):
    with pytest.raises(UserError, match=rf"no column '{column}' \(data.{field}\); its columns are img, fine, id"):
        read_huggingface(config(saved, tmp_path, **{field: column}))


def test_text_labels_and_array_images_of_any_size(tmp_path):
    """Labels without a ClassLabel: their sorted distinct values are the classes; images stored as
    uint8 arrays (RGB in train, grey in test) are decoded too, and resized to data.image_size."""
    train = {"pixels": [np.full((6, 10, 3), 30 * i, dtype=np.uint8) for i in range(4)], "kind": ["ship", "car"] * 2}
    test = {"pixels": [np.full((6, 10), 200, dtype=np.uint8)] * 2, "kind": ["car", "ship"]}
    path = tmp_path / "arrays"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(train), "test": datasets.Dataset.from_dict(test)}
    ).save_to_disk(str(path))
    cfg = DataConfig(
        dataset=f"hf:{path}", image_column="pixels", label_column="kind", image_size=8, download_root=tmp_path
    )
    arrays = read_huggingface(cfg)
    assert arrays.class_names == ("car", "ship") and arrays.train_labels.tolist() == [1, 0, 1, 0]
    assert arrays.train_images.shape == (4, 3, 8, 8) and arrays.test_labels.tolist() == [0, 1]
    assert (arrays.train_images[3] == 90).all() and (arrays.test_images == 200).all()  # flat stays flat


def test_unlabelled_rows_are_refused(tmp_path):
    path = tmp_path / "unlabelled"
    datasets.DatasetDict({"train": split([0, 1, 2]), "test": split([-1, -1])}).save_to_disk(str(path))
    with pytest.raises(UserError, match=r"split 'test': labels -1 .*unlabelled row"):
        read_huggingface(config(str(path), tmp_path, test_split="test"))


def test_a_second_read_comes_from_the_cache(saved, tmp_path, monkeypatch):
    first = read_huggingface(config(saved, tmp_path))
    monkeypatch.setattr(huggingface_module, "decode_image", _no_decoding)
    second = read_huggingface(config(saved, tmp_path))
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.test_labels, second.test_labels)
    with pytest.raises(AssertionError, match="an image was decoded"):  # another image size: another key
        read_huggingface(config(saved, tmp_path, image_size=9))


def _no_decoding(*args, **kwargs):
    raise AssertionError("an image was decoded")


def test_a_study_reads_it_through_the_name(saved, tmp_path):
    data = load_study_data(config(saved, tmp_path))
    assert data.class_names == tuple(NAMES) and (len(data.train), len(data.val), len(data.test)) == (9, 3, 6)


def test_an_offline_miss_says_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # HF_DATASETS_OFFLINE=1, read at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"not in the local cache .*HF_DATASETS_OFFLINE=1"):
        read_huggingface(DataConfig(dataset="hf:distillbench-tests/absent", download_root=tmp_path))


def test_a_single_split_is_refused(tmp_path):
    split([0, 1]).save_to_disk(str(tmp_path / "one"))
    with pytest.raises(UserError, match="holds a single split, not a DatasetDict"):
        read_huggingface(config(str(tmp_path / "one"), tmp_path))


def test_the_missing_extra_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    with pytest.raises(UserError, match=r"pip install 'distillbench\[hf\]'"):
        read_huggingface(DataConfig(dataset="hf:anything", download_root=tmp_path))


def test_the_hf_prefix_resolves_and_a_bare_prefix_is_a_config_error():
    assert (
        dataset_reader("hf:uoft-cs/cifar10") is read_huggingface and dataset_reader("hf:~/data/x") is read_huggingface
    )
    assert dataset_problem("hf:uoft-cs/cifar10") is None
    assert dataset_problem("hf:") == "data.dataset: name the dataset after 'hf:', e.g. hf:<name or path>"
    assert "unknown dataset 'hg:x'" in dataset_problem("hg:x")


def test_a_datasets_version_that_runs_loading_scripts_is_refused(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "__version__", "2.19.0")  # before 4.0, a dataset's own script ran on load
    with pytest.raises(UserError, match=r"needs datasets 4\.0 or newer \(installed: 2\.19\.0\)"):
        read_huggingface(DataConfig(dataset=f"hf:{saved}", download_root=tmp_path))
