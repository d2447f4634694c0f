import fcntl
import os
import tempfile

import pytest
import torch

MAX_WORKERS = 4  # more parallel files would each start torch-using subprocesses on shared cores


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (setup.cfg): one worker per core, at most MAX_WORKERS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_WORKERS, cores)


@pytest.fixture(autouse=True)
def one_slurm_test_at_a_time(request):
    """The SLURM test files share one local cluster and its node's CPUs: under parallel workers
    (``--dist loadfile`` runs each file on one worker) their tests take turns, by a file lock."""
    if not request.path.stem.startswith("test_slurm"):
        yield
        return
    with open(os.path.join(tempfile.gettempdir(), "walign-slurm-tests.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def float64():
    """Run a test in double precision, so hand-built references can be compared to 1e-12."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
