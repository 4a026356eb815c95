"""``fewshot serve DIR``: the support index in DIR over HTTP, from one warm process (:mod:`fewshot.service`)."""
from __future__ import annotations

import click

from .app import main


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default answers this machine only; 0.0.0.0 opens it to the network "
              "(set --api-key then).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port; the log line says which).")
@click.option("--api-key", default=None, envvar="FEWSHOT_API_KEY",
              help="Require this key ($FEWSHOT_API_KEY) for every request that writes (add, remove, correct, "
              "confirm, predict with log), sent as `Authorization: Bearer KEY` or `X-API-Key: KEY`; reads stay "
              "open. Default: no key.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True, help="uvicorn's log level.")
def serve(directory, host, port, api_key, log_level):
    """Serve the support index in DIRECTORY over HTTP (JSON): predict (with or without the prediction log),
    add, remove, correct, confirm, describe, health. The encoder is loaded once, at start-up; writes take the
    folder's lock, so `fewshot index add` and the server can change DIRECTORY at the same time. One process,
    one torch thread by default (--threads / $FEWSHOT_THREADS before `serve`). API docs: GET /docs."""
    import uvicorn

    from ..service import create_app

    app = create_app(directory, api_key=api_key)  # a bad folder or key is refused here, before anything listens
    click.echo(f"serving {directory} ({app.state.service.classifier().n_classes} classes, encoder "
               f"{app.state.service.encoder.name}); writes {'need the API key' if api_key else 'are open'}", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)
