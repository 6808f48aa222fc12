import pathlib

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run, so the suite's verdict is repeatable; run
# `python -m pytest --hypothesis-profile=explore` to search with fresh random examples instead.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")

# Tiny distinct sizes, so a transposed shape fails loudly: B, T, D, H, V.
B, T, D, H, V = 2, 3, 4, 5, 7

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


# Tiny models run fastest on one thread; more threads only add synchronisation (and on a busy
# machine, waiting). Tests that measure threading set their own.
torch.set_num_threads(1)


def pytest_sessionstart(session):
    # Build the compiled step loops (unrolled.kernels.native) once, before any test or any process
    # a test starts needs them; a machine without a C++ compiler runs the Python loops instead.
    from unrolled.kernels import native
    native.ops()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
