"""The test suite; shared helpers (e2e, wire) live here and benchmarks import them too."""
