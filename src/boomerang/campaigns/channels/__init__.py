"""Delivery channels: SMTP email, Twilio-compatible SMS, push/webhook, and .eml files.

Every adapter follows the contract in `base`; `registry.channel_for(name, settings)` builds
the one a store configured (docs/channels.md). Nothing is imported here, so loading the
contract does not load the adapters' dependencies (httpx, ssl).
"""
