"""A run's random streams: fixed by its seed and the stream's name, unrelated to each other."""

import pytest
import torch

from distillbench.training.randomness import STREAMS, derive_seed, global_rng, stream_generator


def test_streams_depend_on_the_seed_and_the_stream_only():
    seeds = {(seed, stream): derive_seed(seed, stream) for seed in range(3) for stream in STREAMS}
    assert len(set(seeds.values())) == len(seeds)  # every (seed, stream) its own
    assert all(0 <= s < 2**63 for s in seeds.values())
    assert derive_seed(1, "init") == seeds[(1, "init")]  # a pure function: the same every session
    a, b = stream_generator(5, "order"), stream_generator(5, "order")
    assert torch.equal(torch.randperm(50, generator=a), torch.randperm(50, generator=b))
    with pytest.raises(ValueError, match="unknown random stream 'shuffle'"):
        derive_seed(0, "shuffle")


def test_global_rng_scope_is_seeded_inside_and_restored_after():
    torch.manual_seed(123)
    outside = torch.get_rng_state()
    with global_rng(7):
        first = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outside)
    with global_rng(7):
        assert torch.equal(torch.rand(3), first)
    with global_rng(None):
        torch.rand(10)  # draws inside do not move the caller's stream
    assert torch.equal(torch.get_rng_state(), outside)
