import os

import pytest
import torch

MAX_WORKERS = 4  # more parallel files would each start torch-using subprocesses on shared cores


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (setup.cfg): one worker per core, at most MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Each test file is one xdist group (``--dist loadgroup``: a file's tests run on one worker,
    in order, and its module fixtures once); the SLURM files form one group, since they share
    the single local cluster and its node's CPUs."""
    for item in items:
        module = item.path.stem
        item.add_marker(pytest.mark.xdist_group("slurm" if module.startswith("test_slurm") else module))


@pytest.fixture
def float64():
    """Run a test in double precision, so hand-built references can be compared to 1e-12."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
