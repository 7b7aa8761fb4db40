import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def cifar():
    from pruning.data import load
    return load("cifar10", per_class=50, val_per_class=20, test_per_class=20, seed=0)


@pytest.fixture(scope="session")
def mnist():
    from pruning.data import load
    return load("mnist", per_class=30, val_per_class=10, test_per_class=10, seed=0)
