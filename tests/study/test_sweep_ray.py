"""The sweep on a real Ray cluster started here (``ray start --head`` on 127.0.0.1, 2 CPUs): the same
runs, selections and results as on this machine, with a worker killed mid-task retried and nothing
lost, and errors for a missing Ray and an unreachable cluster."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from distillbench.cli import main
from tests.conftest import sweep_args

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

# Ray's token authentication (on by default for new clusters since Ray 2.5x) set explicitly on both
# sides, as Ray's documentation has clients do, with a token of this test's own (RAY_AUTH_TOKEN), so
# that nothing depends on or writes to ~/.ray.
RAY_ENVIRONMENT = {
    **os.environ,
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster in its own processes, as a user would start it; its address."""
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    port = _free_port()
    start = [ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
             "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip
    subprocess.run(start, check=True, capture_output=True, env=RAY_ENVIRONMENT, timeout=120)
    yield f"127.0.0.1:{port}"
    subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=RAY_ENVIRONMENT, timeout=120)


def _sweep_on(cluster, cifar_dir, tmp, out):
    command = [sys.executable, "-m", "distillbench",
               *sweep_args(cifar_dir, tmp, out, "perf.cpus_per_run=1"), "--executor", "ray", "--address", cluster]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=RAY_ENVIRONMENT)


def _logits(out):
    """Every run's test logits by its pool directory's name."""
    logits = {}
    for path in sorted((out / "runs").glob("*/*/predictions.npz")):
        with np.load(path) as saved:
            logits[f"{path.parent.parent.name}/{path.parent.name}"] = saved["logits"]
    return logits


def test_ray_gives_the_local_sweep_even_when_a_worker_is_killed_mid_task(cluster, local_sweep, tmp_path, cifar_dir):
    out = tmp_path / "out"
    sweep = _sweep_on(cluster, cifar_dir, tmp_path, out)
    killed, deadline = None, time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and sweep.poll() is None:
        listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        tasks = [line.split(None, 1) for line in listing.splitlines() if "ray::kd_small seed" in line]
        if tasks:
            time.sleep(0.5)  # mid-task: it has started training
            killed = int(tasks[0][0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    log = sweep.communicate(timeout=600)[0]
    assert killed is not None, log
    assert sweep.returncode == 0, log
    assert "10 distinct runs (16 asked for), executor ray" in log
    # The runs' numerics are resolved on a node with the tasks' resources, and every task trains with them.
    assert "Ray: runs train on cpu in fp32, 1 thread(s) each" in log
    # Each teacher's logits are computed once, in its own task, and reach its four students through the
    # object store: no student (the killed one's retry included) computes them or reads them from disk.
    for seed in (0, 1):
        assert log.count(f"computing small_cnn seed {seed} logits (train)") == 1, log
    assert "reusing cached small_cnn" not in log
    local, remote = _logits(local_sweep), _logits(out)
    assert sorted(remote) == sorted(local) and len(remote) == 10  # the same runs, the killed one retried
    for name in local:  # one thread per run on both: the same arithmetic
        np.testing.assert_array_equal(remote[name], local[name])
    ray_results = json.loads((out / "sweep.json").read_text())
    local_results = json.loads((local_sweep / "sweep.json").read_text())
    assert ray_results["models"] == local_results["models"]
    assert ray_results["executor"] == "ray"
    records = [json.loads(path.read_text()) for path in (out / "runs").glob("*/*/run.json")]
    assert {(r["device_type"], r["precision"], r["torch_threads"]) for r in records} == {("cpu", "fp32", 1)}


def test_an_unreachable_cluster_stops_with_one_paragraph(tmp_path, cifar_dir, capsys):
    args = [
        *sweep_args(cifar_dir, tmp_path, tmp_path / "out"),
        "--executor",
        "ray",
        "--address",
        f"127.0.0.1:{_free_port()}",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "is unreachable" in err and "ray start --head" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "runs").exists()
