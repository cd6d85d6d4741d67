"""Loyalty: the points ledger, earn rules, rewards and coupons, tiers, expiry (docs/loyalty.md)."""
