"""Suite-wide settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Torch on one thread for the whole suite.

    The tests use small tensors on a 2-core CI machine: a second OpenMP thread
    only adds waiting (measured 10-200x slowdowns of tiny FFTs and training
    steps under load).
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
