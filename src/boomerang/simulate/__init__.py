"""Synthetic store generator for demos, tests and benchmarks (docs/simulator.md).

`simulate_store` draws customers, orders, lines and events from a documented generative
model (BG/NBD purchases, gamma-gamma order values, replenishment of consumables,
seasonality, sessions) with known true parameters; `shopify_csv.write_exports` writes it in
Shopify's export layouts and `SimulatedStore.store_frames` gives the store's frames.
"""

from boomerang.simulate.params import SimulationParams, benchmark_params
from boomerang.simulate.store import SimulatedStore, simulate_store

__all__ = ["SimulatedStore", "SimulationParams", "benchmark_params", "simulate_store"]
