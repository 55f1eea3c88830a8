"""teachgym.analysis against hand-computed values."""

import math

import pytest

from teachgym.analysis import auc, examples_to_reach, format_ci, mean_ci


def test_auc_by_hand():
    # trapezoids: 100*(0+0.2)/2 + 100*(0.2+0.6)/2 = 10 + 40 = 50, over a budget of 200
    assert auc([0, 100, 200], [0.0, 0.2, 0.6]) == pytest.approx(0.25)
    assert auc([0, 100, 200], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert auc([0, 100], [0.0, 0.5], budget=200) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="equal"):
        auc([0, 1], [0.0])


def test_examples_to_reach_uses_measured_rounds_only():
    x, y = [0, 100, 200, 300], [0.0, 0.3, 0.5, 0.45]
    assert examples_to_reach(x, y, 0.5) == 200
    assert examples_to_reach(x, y, 0.4) == 200  # no interpolation between 100 and 200
    assert examples_to_reach(x, y, 0.0) == 0
    assert examples_to_reach(x, y, 0.51) is None
    assert examples_to_reach([0, 10], [0.1, 0.3 + 0.3 + 0.1], 0.7) == 10  # float noise in equal values


def test_mean_ci_student_t():
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    # sd = sqrt(2.5); t(0.975, 4) = 2.7764451
    assert mean == 3.0 and half == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5))
    assert math.isnan(mean_ci([0.4])[1])
    assert format_ci(0.5, 0.0412) == "0.500 ± 0.041" and format_ci(0.5, math.nan) == "0.500"
