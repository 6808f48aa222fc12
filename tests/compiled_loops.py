"""One rule for the tests of the compiled step loops (unrolled.kernels.native): skip them where
they are switched off (UNROLLED_NATIVE=0) or no C++ compiler is here to build them; fail where a
compiler is here and they still did not load (a compiler must build them)."""
from __future__ import annotations

import os
import shutil

import pytest

from unrolled.kernels import native


def compiled_or_skip() -> None:
    if not native.enabled():
        pytest.skip("UNROLLED_NATIVE=0")
    if native.ops() is None:
        if shutil.which(os.environ.get("CXX", "c++")) is None:
            pytest.skip("no C++ compiler here: only the loops written in Python run")
        pytest.fail(f"the compiled step loops did not load: {native.reason()}")
