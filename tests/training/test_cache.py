import torch

from distillbench.training.cache import TensorCache, cache_key, hash_module


def test_cache_computes_once_and_reuses_from_disk(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).reshape(2, 3)

    logged = []
    first = TensorCache(tmp_path, log=logged.append).get("k", compute, what="six numbers")
    second = TensorCache(tmp_path, log=logged.append).get("k", compute, what="six numbers")  # a new process: from disk
    assert len(calls) == 1
    # Progress: what is computed and how long it took, then that the second read came from the cache.
    assert logged[0] == "computing six numbers" and logged[1].startswith("computed six numbers in ")
    assert logged[2] == "reusing cached six numbers (k.pt)"
    torch.testing.assert_close(first, second)


def test_corrupt_or_deleted_cache_is_rebuilt_not_trusted(tmp_path):
    cache = TensorCache(tmp_path, log=lambda message: None)
    cache.get("k", lambda: torch.ones(3))
    (tmp_path / "k.pt").write_bytes(b"garbage")
    assert torch.equal(TensorCache(tmp_path, log=lambda m: None).get("k", lambda: torch.zeros(3)), torch.zeros(3))
    # A well-formed file whose tensor does not match its checksum is not trusted either.
    torch.save({"tensor": torch.full((3,), 7.0), "sha256": "0" * 64}, tmp_path / "k.pt")
    assert torch.equal(TensorCache(tmp_path, log=lambda m: None).get("k", lambda: torch.zeros(3)), torch.zeros(3))
    (tmp_path / "k.pt").unlink()
    assert torch.equal(TensorCache(tmp_path).get("k", lambda: torch.full((3,), 2.0)), torch.full((3,), 2.0))


def test_keys_follow_the_weights():
    layer = torch.nn.Linear(3, 2)
    before = hash_module(layer)
    with torch.no_grad():
        layer.weight[0, 0] += 1e-6
    assert hash_module(layer) != before
    assert cache_key("a", "b") != cache_key("a", "c")
