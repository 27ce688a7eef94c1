"""A small class at once (the CI size of benchmarks/load_test.py): no visitor sees an error."""

from __future__ import annotations

import pytest

from benchmarks.load_test import run_load

pytestmark = pytest.mark.browser


def test_three_visitors_draw_while_a_training_runs(tmp_path):
    result = run_load(visitors=3, seconds=20, work_dir=tmp_path)
    print(result.report())
    assert result.errors == []
    assert result.predictions >= 3 * 5  # every visitor got predictions, not one stuck page
    assert result.training_alone and result.training_loaded  # both trainings finished
