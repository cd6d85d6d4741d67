"""The web face: `create_app(db)` builds the FastAPI app `boomerang serve` runs
(unsubscribe, preference centre, open pixel, click redirect; docs/channels.md)."""
