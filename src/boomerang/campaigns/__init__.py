"""Campaigns: flows, the engine that advances them, the outbox and the arbiter (docs/campaigns.md)."""
