"""RFM summaries: the CDNOW files reproduced exactly, plus the conventions on small cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boomerang.analytics.clv import summarize_transactions
from boomerang.errors import InputError

CDNOW = Path(__file__).parents[2] / "data" / "cdnow"


def _cdnow_transactions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = np.loadtxt(CDNOW / "CDNOW_sample.txt", dtype=str)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]], dtype="datetime64[D]")
    return raw[:, 1].astype(np.int64), dates, raw[:, 4].astype(np.float64)


def _round_half_up_cents(values: np.ndarray) -> np.ndarray:
    """How the published zbar was rounded (exact decimal mean, half up)."""
    return np.floor(values * 100 + 0.5 + 1e-9) / 100


def test_cdnow_summary_matches_published_files() -> None:
    ids, dates, values = _cdnow_transactions()
    s = summarize_transactions(ids, dates, values, calibration_end="1997-09-30", unit="weeks")
    short = np.genfromtxt(CDNOW / "cdnow_customers_summary.csv", delimiter=",", names=True)
    full = np.genfromtxt(
        CDNOW / "cdnow_customers_summary_with_transactions.csv", delimiter=",", names=True
    )
    assert len(s) == 2357 == short.shape[0] == full.shape[0]
    np.testing.assert_array_equal(s.customer_id, short["ID"])
    np.testing.assert_array_equal(s.x, short["frequency"])
    np.testing.assert_array_equal(np.round(s.t_x, 2), short["recency"])
    np.testing.assert_array_equal(np.round(s.T, 2), short["T"])
    np.testing.assert_array_equal(s.customer_id, full["ID"])
    np.testing.assert_array_equal(s.x, full["x"])
    np.testing.assert_array_equal(np.round(s.t_x, 2), full["t_x"])
    np.testing.assert_array_equal(np.round(s.T, 2), full["T"])
    assert s.zbar is not None
    np.testing.assert_allclose(_round_half_up_cents(s.zbar), full["zbar"], atol=1e-9)
    assert int((s.x > 0).sum()) == 946


def test_cdnow_holdout_counts_repeat_days_after_calibration() -> None:
    ids, dates, values = _cdnow_transactions()
    s = summarize_transactions(
        ids, dates, values, calibration_end="1997-09-30", observation_end="1998-06-30"
    )
    assert s.holdout_duration == pytest.approx(39.0)
    assert s.x_holdout is not None and s.value_holdout is not None
    # Independent count: distinct (customer, day) pairs after the calibration end.
    after = dates > np.datetime64("1997-09-30")
    pairs = {(int(c), str(d)) for c, d in zip(ids[after], dates[after], strict=True)}
    assert int(s.x_holdout.sum()) == len(pairs)
    assert float(s.value_holdout.sum()) == pytest.approx(float(values[after].sum()))


def test_same_day_purchases_are_one_transaction_and_first_is_excluded() -> None:
    ids = np.array(["a", "a", "a", "a", "b", "c"])
    dates = np.array(
        ["2024-01-01", "2024-01-08", "2024-01-08", "2024-01-15", "2024-01-10", "2024-02-01"],
        dtype="datetime64[D]",
    )
    values = np.array([100.0, 10.0, 5.0, 30.0, 7.0, 1.0])
    s = summarize_transactions(ids, dates, values, calibration_end="2024-01-29", unit="days")
    # "c" first bought after the calibration end: excluded.
    assert list(s.customer_id) == ["a", "b"]
    assert list(s.x) == [2, 0]
    np.testing.assert_allclose(s.t_x, [14.0, 0.0])
    np.testing.assert_allclose(s.T, [28.0, 19.0])
    assert s.zbar is not None
    np.testing.assert_allclose(s.zbar, [(15.0 + 30.0) / 2, 0.0])
    weeks = summarize_transactions(ids, dates, calibration_end="2024-01-29")
    np.testing.assert_allclose(weeks.T, [4.0, 19 / 7])
    assert weeks.zbar is None


def test_timestamps_are_reduced_to_calendar_days() -> None:
    ids = np.array([1, 1, 1])
    stamps = np.array(
        ["2024-03-01T09:00", "2024-03-01T23:59", "2024-03-03T00:01"], dtype="datetime64[m]"
    )
    s = summarize_transactions(
        ids, stamps, calibration_end=np.datetime64("2024-03-03"), unit="days"
    )
    assert list(s.x) == [1]
    np.testing.assert_allclose(s.t_x, [2.0])
    np.testing.assert_allclose(s.T, [2.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"calibration_end": "not a date"}, "calibration_end"),
        ({"calibration_end": "2024-01-10", "observation_end": "2024-01-01"}, "after"),
        ({"calibration_end": "2024-01-10", "unit": "months"}, "unit"),
    ],
)
def test_bad_arguments_raise_input_errors(kwargs: dict[str, str], message: str) -> None:
    ids = np.array([1, 2])
    dates = np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]")
    with pytest.raises(InputError, match=message):
        summarize_transactions(ids, dates, **kwargs)  # type: ignore[arg-type]


def test_missing_dates_are_rejected() -> None:
    dates = np.array(["2024-01-01", "NaT"], dtype="datetime64[D]")
    with pytest.raises(InputError, match="missing"):
        summarize_transactions(np.array([1, 2]), dates, calibration_end="2024-02-01")


def test_cdnow_models_fitted_on_the_computed_summary_match_the_papers() -> None:
    """End to end from raw transactions: unrounded summaries give the published estimates."""
    from boomerang.analytics.clv import fit_bgnbd, fit_gammagamma

    ids, dates, values = _cdnow_transactions()
    s = summarize_transactions(ids, dates, values, calibration_end="1997-09-30")
    bg = fit_bgnbd(s.x, s.t_x, s.T)
    for name, value in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert bg.params[name] == pytest.approx(value, rel=5e-3), name
    assert bg.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert s.zbar is not None
    gg = fit_gammagamma(s.x, s.zbar)
    for name, value in {"p": 6.25, "q": 3.74, "gamma": 15.44}.items():
        assert gg.params[name] == pytest.approx(value, rel=5e-3), name
