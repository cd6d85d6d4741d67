"""CLV benchmark: Boomerang vs lifetimes 0.11.3 on the simulator's benchmark store.

Times, for both libraries in the same run and on the same transactions: the RFM summary,
the BG/NBD fit, the Gamma-Gamma fit and predictions for every customer (expected purchases
over 90 days and 12-month CLV at 1 %/month). Prints both, the ratio and the parameter
agreement, then ``BENCH`` lines. Generation is not timed.

    python bench/clv_bench.py                     # 1M customers, ~10M orders, ~10 GB
    python bench/clv_bench.py --customers 100000  # what a shared machine can take

lifetimes is a bench-only extra (``pip install lifetimes==0.11.3``); without it only our
figures are printed.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import polars as pl

from boomerang.analytics.clv import (
    fit_bgnbd,
    fit_gammagamma,
    predict_customers,
    summarize_transactions,
)
from boomerang.analytics.clv_store import Transactions, transactions_from_orders
from boomerang.simulate import benchmark_params, simulate_store

HORIZON_WEEKS = 90 / 7
MONTHS = 12
DISCOUNT = 0.01


def _transactions(customers: int, days: int, seed: int) -> Transactions:
    sim = simulate_store(customers, days, seed, benchmark_params())
    table = sim.book.orders.select(
        pl.when(pl.col("owner") >= 0).then(pl.col("owner")).alias("customer_id"),
        "placed_at", "total_minor", "refunded_minor", "status",
    ).to_arrow()  # fmt: skip
    return transactions_from_orders(table, 0.01)


def ours(trans: Transactions, end: np.datetime64) -> tuple[dict[str, float], dict[str, float]]:
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    s = summarize_transactions(trans.customer_id, trans.day, trans.value, calibration_end=end)
    t1 = time.perf_counter()
    bg = fit_bgnbd(s.x, s.t_x, s.T)
    t2 = time.perf_counter()
    assert s.zbar is not None
    gg = fit_gammagamma(s.x, s.zbar)
    t3 = time.perf_counter()
    pred = predict_customers(
        bg, gg, s.x, s.t_x, s.T, s.zbar, horizon=HORIZON_WEEKS, months=MONTHS,
        monthly_discount=DISCOUNT, n_draws=0,
    )  # fmt: skip
    t4 = time.perf_counter()
    times.update(summary=t1 - t0, bgnbd_fit=t2 - t1, gammagamma_fit=t3 - t2, predict=t4 - t3)
    times["total"] = t4 - t0
    params = {**bg.params, **{f"gg_{k}": v for k, v in gg.params.items()}}
    params["clv_mean"] = float(np.mean(pred.clv))
    params["expected_mean"] = float(np.mean(pred.expected_purchases))
    t5 = time.perf_counter()
    predict_customers(
        bg, gg, s.x, s.t_x, s.T, s.zbar, horizon=HORIZON_WEEKS, months=MONTHS,
        monthly_discount=DISCOUNT, n_draws=200,
    )  # fmt: skip
    times["predict_with_intervals"] = time.perf_counter() - t5
    return times, params


def theirs(trans: Transactions, end: np.datetime64) -> tuple[dict[str, float], dict[str, float]]:
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    frame = pd.DataFrame(
        {"customer_id": trans.customer_id, "date": trans.day.astype("datetime64[ns]"),
         "value": trans.value}
    )  # fmt: skip
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    # Days scaled to weeks by freq_multiplier=7: the papers' T = days / 7 (as ours).
    s = summary_data_from_transaction_data(
        frame, "customer_id", "date", monetary_value_col="value",
        observation_period_end=pd.Timestamp(str(end)), freq="D", freq_multiplier=7,
    )  # fmt: skip
    s["frequency"] = s["frequency"].astype(float)
    t1 = time.perf_counter()
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(s["frequency"], s["recency"], s["T"])
    t2 = time.perf_counter()
    repeat = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
    ggf = GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(repeat["frequency"], repeat["monetary_value"])
    t3 = time.perf_counter()
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(
        HORIZON_WEEKS, s["frequency"], s["recency"], s["T"]
    )
    clv = ggf.customer_lifetime_value(
        bgf, s["frequency"], s["recency"], s["T"], s["monetary_value"],
        time=MONTHS, discount_rate=DISCOUNT, freq="W",
    )  # fmt: skip
    t4 = time.perf_counter()
    times.update(summary=t1 - t0, bgnbd_fit=t2 - t1, gammagamma_fit=t3 - t2, predict=t4 - t3)
    times["total"] = t4 - t0
    bp, gp = bgf.params_, ggf.params_
    params = {"r": bp["r"], "alpha": bp["alpha"], "a": bp["a"], "b": bp["b"],
              "gg_p": gp["p"], "gg_q": gp["q"], "gg_gamma": gp["v"]}  # fmt: skip
    params["clv_mean"] = float(np.mean(clv))
    params["expected_mean"] = float(np.mean(expected))
    return times, {k: float(v) for k, v in params.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000, help="simulated customers")
    ap.add_argument("--days", type=int, default=730, help="simulated days of history")
    ap.add_argument("--seed", type=int, default=1, help="simulator seed")
    args = ap.parse_args()

    t = time.perf_counter()
    trans = _transactions(args.customers, args.days, args.seed)
    end = trans.last_day
    print(f"generated {len(trans):,} orders of {np.unique(trans.customer_id).size:,} customers "
          f"in {time.perf_counter() - t:.1f} s (not timed below)")  # fmt: skip

    our_t, our_p = ours(trans, end)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            their: tuple[dict[str, float], dict[str, float]] | None = theirs(trans, end)
    except ImportError as exc:
        print(f"lifetimes not available ({exc}); install the bench extra: lifetimes==0.11.3")
        their = None

    print(f"{'step':<24}{'boomerang s':>14}{'lifetimes s':>14}{'ratio':>10}")
    for step in ("summary", "bgnbd_fit", "gammagamma_fit", "predict", "total"):
        mine = our_t[step]
        if their is None:
            print(f"{step:<24}{mine:>14.3f}")
        else:
            other = their[0][step]
            print(f"{step:<24}{mine:>14.3f}{other:>14.3f}{other / mine:>9.1f}x")
    print(f"{'predict + 200 draws':<24}{our_t['predict_with_intervals']:>14.3f}")
    agreement = 0.0
    if their is not None:
        print(f"{'parameter':<16}{'boomerang':>14}{'lifetimes':>14}{'rel. diff':>12}")
        for name, mine_v in our_p.items():
            other_v = their[1][name]
            rel = abs(mine_v - other_v) / max(abs(other_v), 1e-12)
            if not name.endswith("_mean"):
                agreement = max(agreement, rel)
            print(f"{name:<16}{mine_v:>14.5g}{other_v:>14.5g}{rel:>12.2e}")
        print(f"largest relative parameter difference: {agreement:.2e}")
    tag = f"clv_{args.customers // 1000}k"
    base = "lifetimes" if their is not None else "none"

    def line(name: str, step: str) -> str:
        ratio = their[0][step] / our_t[step] if their is not None else float("nan")
        return (
            f"BENCH {tag}_{name} value={our_t[step]:.4f} unit=s baseline={base} ratio={ratio:.1f}"
        )

    print(line("end_to_end", "total"))
    print(line("bgnbd_fit", "bgnbd_fit"))
    if their is not None:
        print(f"BENCH {tag}_param_agreement value={agreement:.2e} unit=max_rel_diff "
              f"baseline=lifetimes ratio=1.0")  # fmt: skip


if __name__ == "__main__":
    main()
