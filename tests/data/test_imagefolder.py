"""The imagefolder reader on tiny folders written here with Pillow: classes, labels and pixels read
right, hostile files refused by name, memory checked before decoding, and the decoded-image cache
(a second read decodes nothing; a corrupt cache file is decoded again)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from distillbench.cli import main
from distillbench.config import DataConfig
from distillbench.data import DATASETS, load_study_data
from distillbench.data import decoded as decoded_module
from distillbench.data import imagefolder as imagefolder_module
from distillbench.data.imagefolder import read_imagefolder
from distillbench.errors import UserError

CLASSES = ("cat", "dog", "frog")  # sorted: the class indices are 0, 1, 2


def pixels(label: int, index: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """A distinct HxWx3 image per (class, index); blue grows along the width, so a transposed array shows."""
    height, width = size
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = 40 * label + 10
    image[..., 1] = 20 * index
    image[..., 2] = (np.arange(width) * 9)[None, :]
    return image


def write_folder(root, train_count=6, test_count=2, test_folder="test", size=(8, 8)):
    for split, count in (("train", train_count), (test_folder, test_count)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                Image.fromarray(pixels(label, index, size)).save(root / split / name / f"{index:02d}.png")
    return root


def config(root, tmp_path, **fields) -> DataConfig:
    return DataConfig(dataset="imagefolder", dir=root, download_root=tmp_path / "downloads", val_size=3, **fields)


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "images")


def chw(image: np.ndarray) -> np.ndarray:
    return image.transpose(2, 0, 1)


def test_classes_labels_and_pixels_are_read(folder, tmp_path, capsys):
    # the same pixels in other lossless formats; a README and hidden files beside them
    (folder / "train/dog/01.png").unlink()
    Image.fromarray(pixels(1, 1)).save(folder / "train/dog/01.bmp")
    (folder / "train/cat/02.png").unlink()
    Image.fromarray(pixels(0, 2)).save(folder / "train/cat/02.webp", lossless=True)
    (folder / "train/frog/03.png").unlink()
    Image.fromarray(pixels(2, 3)).save(folder / "train/frog/03.tif")
    (folder / "train/frog/notes.txt").write_text("not an image")
    (folder / "train/cat/.DS_Store").write_bytes(b"\x00\x01")
    (folder / "train/.ipynb_checkpoints").mkdir()  # torchvision would take it for a class
    arrays = read_imagefolder(config(folder, tmp_path))
    assert arrays.class_names == CLASSES and not arrays.synthetic
    assert arrays.train_images.shape == (18, 3, 8, 8) and arrays.train_images.dtype == np.uint8
    assert arrays.train_labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6  # class by class, files sorted
    for label, index in [(0, 0), (0, 2), (1, 1), (2, 3), (2, 5)]:
        np.testing.assert_array_equal(arrays.train_images[6 * label + index], chw(pixels(label, index)))
    assert arrays.test_labels.tolist() == [0, 1, 2, 0, 1, 2]  # interleaved: test_limit keeps every class
    np.testing.assert_array_equal(arrays.test_images[4], chw(pixels(1, 1)))
    assert "skipped 1 file(s) that are not images by their extension (train/frog/notes.txt)" in capsys.readouterr().out


def test_a_jpeg_and_a_palette_image_become_rgb(folder, tmp_path):
    (folder / "train/cat/00.png").unlink()
    Image.fromarray(pixels(0, 0)).save(folder / "train/cat/00.jpg", quality=95)
    (folder / "train/dog/00.png").unlink()
    Image.fromarray(pixels(1, 0)).convert("P").save(folder / "train/dog/00.gif")
    arrays = read_imagefolder(config(folder, tmp_path))
    jpeg_error = np.abs(arrays.train_images[0].astype(int) - chw(pixels(0, 0)).astype(int))
    assert jpeg_error.mean() < 4  # lossy, but the same picture
    assert arrays.train_images[6].shape == (3, 8, 8)


def test_val_is_the_test_folder_when_there_is_no_test(tmp_path):
    root = write_folder(tmp_path / "images", test_folder="val")
    arrays = read_imagefolder(config(root, tmp_path))
    assert arrays.test_labels.tolist() == [0, 1, 2, 0, 1, 2] and "(train/, val/)" in arrays.source


def test_named_split_folders(tmp_path):
    root = write_folder(tmp_path / "images", test_folder="holdout")
    with pytest.raises(UserError, match=r"must hold train/ and test/ or val/.* it holds holdout/, train/"):
        read_imagefolder(config(root, tmp_path))
    assert len(read_imagefolder(config(root, tmp_path, test_split="holdout")).test_labels) == 6


def test_class_folders_must_match(folder, tmp_path):
    (folder / "test/frog").rename(folder / "test/toad")
    with pytest.raises(UserError, match=r"only in train/: frog; only in test/: toad"):
        read_imagefolder(config(folder, tmp_path))


def test_a_class_without_training_images_is_named(folder, tmp_path):
    for path in (folder / "train/dog").iterdir():
        path.unlink()
    with pytest.raises(UserError, match=r"no image files in the class folder\(s\) dog"):
        read_imagefolder(config(folder, tmp_path))


def test_images_of_different_sizes_need_image_size(folder, tmp_path):
    (folder / "train/dog/03.png").unlink()
    Image.fromarray(np.full((12, 16, 3), 77, dtype=np.uint8)).save(folder / "train/dog/03.png")
    with pytest.raises(UserError, match=r"differ in size \(.*train/dog/03.png is 16x12 pixels.*data.image_size"):
        read_imagefolder(config(folder, tmp_path))
    arrays = read_imagefolder(config(folder, tmp_path, image_size=10))
    assert arrays.train_images.shape == (18, 3, 10, 10)
    assert (arrays.train_images[6 + 3] == 77).all()  # a flat colour stays flat whatever the resampling


def test_resizing_keeps_the_aspect_ratio_by_cropping_the_centre(folder, tmp_path):
    # 16 wide, 8 high: red | green (the middle half) | blue; the centre 8x8 is all green
    image = np.zeros((8, 16, 3), dtype=np.uint8)
    image[:, :4, 0], image[:, 4:12, 1], image[:, 12:, 2] = 255, 255, 255
    (folder / "train/cat/00.png").unlink()
    Image.fromarray(image).save(folder / "train/cat/00.png")
    arrays = read_imagefolder(config(folder, tmp_path, image_size=8))
    np.testing.assert_array_equal(arrays.train_images[0], chw(np.broadcast_to([0, 255, 0], (8, 8, 3))))


@pytest.mark.parametrize("content", [b"this is not a png", "truncated"])
def test_a_damaged_image_is_named(folder, tmp_path, content):
    good = (folder / "train/dog/02.png").read_bytes()
    (folder / "train/dog/02.png").write_bytes(good[: len(good) // 2] if content == "truncated" else content)
    with pytest.raises(UserError, match=r"Image .*train/dog/02.png .*(damaged|truncated)"):
        read_imagefolder(config(folder, tmp_path))


@pytest.mark.parametrize("limit", [40, 20])  # 64 pixels: Pillow warns above the limit, refuses above twice it
def test_a_decompression_bomb_is_refused_by_name(folder, tmp_path, monkeypatch, limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(UserError, match=r"Image .*train/cat/00.png is larger than Pillow's decompression-bomb limit"):
        read_imagefolder(config(folder, tmp_path))


def test_a_set_too_large_for_memory_stops_before_decoding(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(decoded_module, "available_memory", lambda: 10_000_000)
    monkeypatch.setattr(imagefolder_module, "decode_image", _no_decoding)
    needed = 24 * 3 * 1024 * 1024 / 1e9  # 18 + 6 images at the largest image_size
    with pytest.raises(UserError, match=rf"24 images of 3x1024x1024 take {needed:.1f} GB .* 0.0 GB available"):
        read_imagefolder(config(folder, tmp_path, image_size=1024))


def _no_decoding(*args, **kwargs):
    raise AssertionError("an image was decoded")


def test_a_second_read_comes_from_the_cache(folder, tmp_path, monkeypatch):
    first = read_imagefolder(config(folder, tmp_path))
    assert len(list((tmp_path / "downloads/decoded").glob("*.npz"))) == 1
    monkeypatch.setattr(imagefolder_module, "decode_image", _no_decoding)
    second = read_imagefolder(config(folder, tmp_path))
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert second.class_names == CLASSES
    os.utime(folder / "train/dog/02.png", ns=(0, 0))  # a changed file: another key, decoded again
    with pytest.raises(AssertionError, match="an image was decoded"):
        read_imagefolder(config(folder, tmp_path))


def test_a_corrupt_cache_file_is_decoded_again(folder, tmp_path, capsys):
    first = read_imagefolder(config(folder, tmp_path))
    (path,) = (tmp_path / "downloads/decoded").glob("*.npz")
    with np.load(path) as stored:
        tampered = {name: stored[name].copy() for name in stored.files}
    tampered["train_images"][0, 0, 0, 0] ^= 0xFF  # valid file, wrong pixels: only the checksum can tell
    with open(path, "wb") as handle:
        np.savez(handle, **tampered)
    again = read_imagefolder(config(folder, tmp_path))
    np.testing.assert_array_equal(again.train_images, first.train_images)
    assert "fails its checksum; decoding the images again" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:100])  # truncated
    np.testing.assert_array_equal(read_imagefolder(config(folder, tmp_path)).train_images, first.train_images)
    assert "is unreadable" in capsys.readouterr().out


def test_limits_decode_only_the_images_the_study_keeps(tmp_path, monkeypatch):
    """train_limit and test_limit applied before decoding give the study the very data it would
    take from the whole folder."""
    folder = write_folder(tmp_path / "images", train_count=12, test_count=4)
    full = read_imagefolder(config(folder, tmp_path))
    monkeypatch.setitem(DATASETS, "whole_folder", lambda cfg: full)
    limits = {"train_limit": 21, "test_limit": 10, "split_seed": 3}
    reference = load_study_data(DataConfig(dataset="whole_folder", val_size=3, **limits))
    decoded = []
    decode = imagefolder_module.decode_image
    monkeypatch.setattr(imagefolder_module, "decode_image", lambda *args: decoded.append(1) or decode(*args))
    limited = load_study_data(config(folder, tmp_path / "other", **limits))
    assert len(decoded) == 21 + 10
    assert limited.fingerprint == reference.fingerprint
    assert np.bincount(limited.test.labels.numpy()).tolist() == [4, 3, 3]


def test_a_marker_file_makes_it_generated_data(folder, tmp_path):
    (folder / "SYNTHETIC").write_text("generated by a test")
    arrays = read_imagefolder(config(folder, tmp_path))
    assert arrays.synthetic and arrays.source.startswith("GENERATED")


def test_a_study_runs_on_an_image_folder(tmp_path):
    root = write_folder(tmp_path / "images", train_count=8, test_count=3, size=(16, 16))
    out = tmp_path / "study"
    sets = [
        "data.dataset=imagefolder",
        f"data.dir={root}",
        f"data.download_root={tmp_path / 'downloads'}",
        "data.val_size=6",
        "models=[small_cnn]",
        "comparisons=[]",
        "seeds=[0]",
        "train.epochs=1",
        "evaluation.efficiency=false",
        "evaluation.figures=false",
        "perf.workers=1",
        f"perf.cache_dir={tmp_path / 'cache'}",
    ]
    assert main(["run", "--out", str(out), "--device", "cpu", *[a for s in sets for a in ("--set", s)]]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["study"]["class_names"] == list(CLASSES)
    assert np.asarray(results["models"]["small_cnn"]["confusion_matrix"]).sum() == 9
    assert str(root) in (out / "report.md").read_text()


def test_no_data_dir_is_explained(tmp_path):
    with pytest.raises(UserError, match=r"set data.dir \(--data-dir\)"):
        read_imagefolder(DataConfig(dataset="imagefolder", download_root=tmp_path))
