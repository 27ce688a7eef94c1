"""The test suite; shared helpers (e2e, wire) live here and benchmarks import them too."""

import os as _os

if _os.environ.get("MNIST_FOREIGN_OS") == "1":  # the foreign-OS tier: tests/foreign_os
    from tests.foreign_os import tier as _tier

    _tier.install_here()
