import pytest
import torch


@pytest.fixture
def float64():
    """Run a test in double precision, so hand-built references can be compared to 1e-12."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
