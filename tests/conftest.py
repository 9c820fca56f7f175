"""Fixtures shared across test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread_seeded():
    """One torch thread and seed 0: model tests are deterministic and don't fight over CI's 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
