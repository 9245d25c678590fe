"""Fixtures of the worker tests."""

import pytest
import torch


@pytest.fixture
def float64():
    """Models and data built in float64 for the test (the exactness tests' precision)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
