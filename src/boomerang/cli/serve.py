"""`boomerang serve`: the web app behind unsubscribe, preference, pixel and click links."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from boomerang.cli.common import DbOption, StoreOption, console, resolve

# The app lives in the api face; faces do not import each other, so uvicorn loads it by
# name (the same factory works with `uvicorn --factory` and several workers).
APP_FACTORY = "boomerang.api.app:app_from_env"


def serve(
    db: DbOption = None,
    store: StoreOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (0.0.0.0 for all).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 8080,
) -> None:
    """Serve unsubscribe (RFC 8058 one-click), preference centre, open pixel and click links."""
    from boomerang.services import campaign_web
    from boomerang.services.context import open_engine

    db_url, store_name = resolve(db, store)
    engine = open_engine(db_url)  # fail on a bad database or store before uvicorn starts
    try:
        campaign_web.store_id(engine, store_name)  # NotFoundError: printed by the CLI
    finally:
        engine.dispose()
    os.environ["BOOMERANG_DB"] = db_url
    os.environ["BOOMERANG_STORE"] = store_name
    console.print(
        f"Serving links of store [bold]{store_name}[/] on http://{host}:{port} "
        "(set campaign setting base_url to the public address of this server)"
    )
    import uvicorn  # imported here: other commands start without it

    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, proxy_headers=True)
