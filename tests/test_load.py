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


def test_ten_sessions_at_once_each_get_the_digit_they_drew(tmp_path):
    """Ten visitors without a browser (Streamlit's own protocol), drawing every second."""
    result = run_load(visitors=0, wire_visitors=10, seconds=15, train=False, work_dir=tmp_path)
    print(result.report())
    assert result.errors == []
    assert len(result.wire_latencies) >= 10 * 5  # every session kept getting predictions
    assert result.wire_wrong == 0  # and each was the digit drawn: no mixing between sessions
