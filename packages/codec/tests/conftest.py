"""Shared fixtures of the cadence-codec tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny convolutions on a shared, loaded CPU run many times faster on one thread than on
    # several spinning ones, and one thread makes float reductions reproducible.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)
