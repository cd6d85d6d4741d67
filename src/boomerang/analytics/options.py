"""The knobs every metric depends on, with the defaults docs/metrics.md states."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MetricOptions:
    """Definitions that a store may tune; defaults are documented in docs/metrics.md."""

    # A customer "is a customer" at time t when they bought in the `activity_window_days`
    # days before t.
    activity_window_days: int = 365
    # Tenure bands at a period start: short < 90 days, medium 90..365, long > 365.
    tenure_bands: tuple[int, int] = (90, 365)
    second_purchase_days: int = 90
    clv_horizons_months: tuple[int, ...] = (3, 6, 12, 24)

    def __post_init__(self) -> None:
        if self.activity_window_days < 1:
            raise ValueError("the activity window must be at least one day")
        short, long = self.tenure_bands
        if not 0 < short <= long:
            raise ValueError("tenure bands must satisfy 0 < short <= long")
        if self.second_purchase_days < 1:
            raise ValueError("the second-purchase window must be at least one day")


@dataclass(frozen=True)
class CustomerFilter:
    """Which customers the metrics describe; empty means all (guest orders included)."""

    countries: tuple[str, ...] = ()
    account_statuses: tuple[str, ...] = ()
    customer_ids: tuple[int, ...] = field(default=())

    @property
    def active(self) -> bool:
        return bool(self.countries or self.account_statuses or self.customer_ids)

    def describe(self) -> str:
        parts = []
        if self.countries:
            parts.append("country in " + ", ".join(self.countries))
        if self.account_statuses:
            parts.append("account status in " + ", ".join(self.account_statuses))
        if self.customer_ids:
            parts.append(f"{len(self.customer_ids)} listed customer(s)")
        return "; ".join(parts) or "all customers"
