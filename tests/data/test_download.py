"""The first-run path: CIFAR-10, CIFAR-100, SVHN and the ImageNet weights downloaded, checked and reused.

A local HTTP server on 127.0.0.1 serves generated archives and files in the official layouts and
random weight files named, as torchvision's are, with the prefix of their sha256; torchvision's URLs
and checksums are pointed at it. Nothing here is CIFAR-10, CIFAR-100, SVHN or ImageNet."""

import hashlib
import shutil
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from distillbench.cli import main
from distillbench.config import DataConfig
from distillbench.data import load_study_data
from distillbench.data.synthetic import write_cifar10_like, write_cifar100_like, write_svhn_like
from distillbench.errors import UserError
from distillbench.models import BACKBONES
from distillbench.models.weights import save_random_weights

SMALL = [
    "models=[resnet50,vgg16]",
    "train.epochs=1",
    "data.train_limit=200",
    "data.val_size=40",
    "data.test_limit=50",
    "evaluation.efficiency=false",
    "evaluation.figures=false",
    "seeds=[0]",
    "perf.workers=1",
]  # fmt: skip  (the hub dir is patched here only)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class _Server:
    """Serves ``root`` on 127.0.0.1 and records every path asked for."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # torchvision opens the archive's URL once to follow redirects and drops it: a broken pipe

        self.httpd = Server(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The archive and weight files on disk, and the checksums torchvision must be told."""
    root = tmp_path_factory.mktemp("mirror")
    batches = write_cifar10_like(root / "build" / "cifar-10-batches-py", 300, 60, seed=3)
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    weights = {}
    for path in save_random_weights(root / "build" / "weights", BACKBONES.values()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        served = root / f"{path.stem}-{digest[:8]}.pth"  # torch checks the file against this prefix
        shutil.copy(path, served)
        weights[path.stem] = served.name
    md5 = {path.name: _md5(path) for path in batches.iterdir()}
    cifar100 = write_cifar100_like(root / "build" / "cifar-100-python", 120, 40, classes=10, seed=3)
    with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(cifar100, arcname="cifar-100-python")
    md5.update({f"cifar-100-python/{path.name}": _md5(path) for path in cifar100.iterdir()})
    for path in write_svhn_like(root / "svhn", 60, 20, n_extra=10, seed=3).iterdir():
        md5[path.name] = _md5(path)  # served from root/svhn/
    return root, archive, weights, md5


@pytest.fixture
def served(mirror, monkeypatch, tmp_path):
    root, archive, weights, md5 = mirror
    server = _Server(root)
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", f"{server.url}/{archive.name}")
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(archive))
    monkeypatch.setattr(CIFAR10, "train_list", [[name, md5[name]] for name, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[name, md5[name]] for name, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    from torchvision.datasets import CIFAR100, SVHN

    monkeypatch.setattr(CIFAR100, "url", f"{server.url}/cifar-100-python.tar.gz")
    monkeypatch.setattr(CIFAR100, "tgz_md5", _md5(root / "cifar-100-python.tar.gz"))
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5["cifar-100-python/train"]]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5["cifar-100-python/test"]]])
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": md5["cifar-100-python/meta"]})
    files = {split: f"{split}_32x32.mat" for split in ("train", "test", "extra")}
    served_files = {split: [f"{server.url}/svhn/{name}", name, md5[name]] for split, name in files.items()}
    monkeypatch.setattr(SVHN, "split_list", served_files)
    for arch, name in weights.items():
        monkeypatch.setattr(BACKBONES[arch].imagenet.value, "url", f"{server.url}/{name}")
    hub = tmp_path / "hub"
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    yield server, tmp_path
    torch.hub.set_dir(old_hub)
    server.close()


def _run(tmp_path: Path, out: str, download_root: Path, cache: Path) -> list[str]:
    args = ["run", "--out", str(tmp_path / out), "--device", "cpu", "--set", f"data.download_root={download_root}",
            "--set", f"perf.cache_dir={cache}"]  # fmt: skip
    for item in SMALL:
        args += ["--set", item]
    return args


def test_first_run_downloads_checks_and_extracts_then_reuses(served):
    server, tmp_path = served
    downloads = tmp_path / "data"
    assert main(_run(tmp_path, "first", downloads, tmp_path / "cache")) == 0
    asked = sorted(set(server.requests))  # torchvision asks for the archive twice (redirect probe, then download)
    assert asked == sorted(
        ["/cifar-10-python.tar.gz", *(f"/{Path(BACKBONES[a].imagenet.url).name}" for a in ("resnet50", "vgg16"))]
    )
    assert (downloads / "cifar-10-batches-py" / "data_batch_5").is_file()  # extracted in the official layout
    assert sorted(p.name for p in (tmp_path / "hub" / "checkpoints").iterdir()) == sorted(
        Path(BACKBONES[a].imagenet.url).name for a in ("resnet50", "vgg16")
    )
    report = (tmp_path / "first" / "report.md").read_text()
    assert "torchvision download (md5-verified)" in report and "ImageNet, torchvision" in report

    server.requests.clear()
    assert main(_run(tmp_path, "second", downloads, tmp_path / "cache")) == 0
    assert server.requests == []  # the archive and the weights are reused, not fetched again


def test_a_corrupted_archive_is_refused(served, monkeypatch, capsys):
    server, tmp_path = served
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "tgz_md5", "0" * 32)  # what a damaged download looks like to the check
    assert main(_run(tmp_path, "out", tmp_path / "data", tmp_path / "cache")) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "Could not download CIFAR-10" in err and "checksum" in err and "--data-dir" in err and "Traceback" not in err


def test_corrupted_weights_are_refused(served, mirror, capsys, tmp_path):
    server, _ = served
    root, _, weights, _ = mirror
    damaged = root / f"damaged-{weights['vgg16'].split('-')[1]}"
    damaged.write_bytes(b"\0" * 100 + (root / weights["vgg16"]).read_bytes()[100:])
    BACKBONES["vgg16"].imagenet.value.url = f"{server.url}/{damaged.name}"  # restored by the fixture's monkeypatch
    assert main(_run(tmp_path, "out", tmp_path / "data", tmp_path / "cache")) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "Could not get the ImageNet weights for vgg16" in err and "hash" in err and "Traceback" not in err
    assert not list((tmp_path / "hub" / "checkpoints").glob("damaged*"))  # nothing half-checked is kept
    assert not (tmp_path / "out" / "runs").exists()  # stopped before anything trained


def test_no_network_is_explained(monkeypatch, tmp_path, capsys):
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # nothing listens on port 9
    assert main(_run(tmp_path, "out", tmp_path / "data", tmp_path / "cache")) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "Could not download CIFAR-10" in err and "--data-dir" in err and "Traceback" not in err
    assert "`distillbench synth-data DIR --format cifar10`" in err  # the offline recipe


def _modified(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}


def test_cifar100_is_downloaded_checked_extracted_then_reused(served, monkeypatch):
    server, tmp_path = served
    cfg = DataConfig(dataset="cifar100", download_root=tmp_path / "data", val_size=20)
    data = load_study_data(cfg)
    assert sorted(set(server.requests)) == ["/cifar-100-python.tar.gz"]
    folder = tmp_path / "data" / "cifar-100-python"
    assert sorted(path.name for path in folder.iterdir()) == ["meta", "test", "train"]
    assert "torchvision download (md5-verified)" in data.source and data.synthetic
    assert len(data.class_names) == 10 and len(data.superclasses) == 2

    server.requests.clear()
    extracted = _modified(folder)
    assert load_study_data(cfg).fingerprint == data.fingerprint
    assert server.requests == [] and _modified(folder) == extracted  # checked by md5, neither fetched nor re-extracted

    from torchvision.datasets import CIFAR100

    monkeypatch.setattr(CIFAR100, "tgz_md5", "0" * 32)  # what a damaged download looks like to the check
    with pytest.raises(UserError, match=r"Could not download CIFAR-100 .*checksum.*synth-data DIR --format cifar100"):
        load_study_data(cfg.model_copy(update={"download_root": tmp_path / "elsewhere"}))
    assert not (tmp_path / "elsewhere" / "cifar-100-python").exists()  # nothing unchecked is extracted


def test_svhn_is_downloaded_checked_then_reused(served, monkeypatch):
    server, tmp_path = served
    cfg = DataConfig(dataset="svhn", download_root=tmp_path / "data", val_size=10)
    data = load_study_data(cfg)
    assert sorted(set(server.requests)) == ["/svhn/test_32x32.mat", "/svhn/train_32x32.mat"]  # no extra: not asked
    assert (len(data.train) + len(data.val), len(data.test)) == (60, 20) and data.synthetic
    assert "torchvision download (md5-verified)" in data.source

    server.requests.clear()
    with_extra = load_study_data(cfg.model_copy(update={"svhn_extra": True}))
    assert sorted(set(server.requests)) == ["/svhn/extra_32x32.mat"]  # the two others are checked, not fetched
    assert len(with_extra.train) + len(with_extra.val) == 70

    from torchvision.datasets import SVHN

    damaged = {**SVHN.split_list, "test": [*SVHN.split_list["test"][:2], "0" * 32]}
    monkeypatch.setattr(SVHN, "split_list", damaged)
    with pytest.raises(UserError, match=r"Could not download SVHN .*checksum.*synth-data DIR --format svhn"):
        load_study_data(cfg)


@pytest.mark.parametrize("dataset", ["cifar100", "svhn"])
def test_no_network_is_explained_for_every_dataset(monkeypatch, tmp_path, dataset):
    from torchvision.datasets import CIFAR100, SVHN

    nowhere = "http://127.0.0.1:9/file"  # nothing listens on port 9
    monkeypatch.setattr(CIFAR100, "url", nowhere)
    monkeypatch.setattr(SVHN, "split_list", {k: [nowhere, *v[1:]] for k, v in SVHN.split_list.items()})
    with pytest.raises(UserError, match=rf"Could not download .*--data-dir.*synth-data DIR --format {dataset}"):
        load_study_data(DataConfig(dataset=dataset, download_root=tmp_path))
