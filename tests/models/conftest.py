"""Fixtures the model tests share."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """torch on one intra-op thread for a module's tests: batch-2 convolutions are too small to split,
    and on a busy 2-core machine intra-op threads spent most of their time waiting on each other
    (test_zoo 10x, ResNet50's forward in test_stages about 40x slower than one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
