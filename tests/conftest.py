"""Shared pytest fixtures.

``requires_bellhop``: tests marked ``@pytest.mark.bellhop`` need the Fortran ``bellhop.exe`` and ask for
this fixture; it skips them only where the binary is truly absent. In CI (``CI=true``) the set-up
installs it, so there a missing binary fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(scope="session")
def requires_bellhop():
    """Path of ``bellhop.exe``; skips the test when no binary is installed (fails in CI)."""
    from propagation.backends.bellhop import find_bellhop
    from propagation.errors import EngineNotFoundError

    try:
        return find_bellhop()
    except EngineNotFoundError as error:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"bellhop.exe must be installed in CI (make setup does it): {error}")
        pytest.skip(f"bellhop.exe not installed: {error}")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run on 2 cores beside each other: torch's default thread pool oversubscribes them badly
    (tiny critic steps 100x slower), so tests that use torch run single-threaded."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    yield
