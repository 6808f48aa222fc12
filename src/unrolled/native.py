"""Moved to `unrolled.kernels.native`; this old name stays while other modules still import it.

The old name IS the new module (one module object, not a copy of its names), so what a caller
sets on it (a test's monkeypatch of `_name`, `_STATE`...) is seen by the build code itself.
"""
import sys

from unrolled.kernels import native as _native

sys.modules[__name__] = _native
