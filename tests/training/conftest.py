"""Fixtures of the training tests."""

import pytest


@pytest.fixture(scope="module")
def torch_one_thread():
    """PyTorch on one thread for a module's tests: on a shared, busy machine several spinning
    OpenMP threads slow each other down badly."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
