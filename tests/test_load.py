"""A small class at once (the CI size of benchmarks/load_test.py): no visitor sees an error."""

from __future__ import annotations

import pytest

from benchmarks.load_test import run_load

pytestmark = pytest.mark.browser


def test_three_visitors_draw_while_a_training_runs(tmp_path):
    result = run_load(visitors=3, seconds=20, work_dir=tmp_path)
    print(result.report())
    assert result.errors == []
    # Every visitor got predictions again and again: no page stuck after its first stroke.
    assert sorted(result.per_visitor) == [0, 1, 2]
    assert min(result.per_visitor.values()) >= 3
    assert result.training_alone and result.training_loaded  # both trainings finished
