import os
import pathlib
import shutil

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


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, headless, launched by Playwright; the test is skipped without either
    (and fails on CI, which installs both)."""
    playwright = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("Debian's chromium is not installed here (apt-get install -y chromium); .ci/run installs it")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
