"""`lookalike serve`: the HTTP API and web page."""

from __future__ import annotations

from typing import Annotated

import typer

from lookalike.cli import IndexOpt, app
from lookalike.errors import ConfigError


@app.command("serve")
def serve_cmd(
    index: IndexOpt,
    host: Annotated[
        str,
        typer.Option(
            envvar="LOOKALIKE_HOST",
            help="Address to bind. Anything but loopback needs --token.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            envvar="LOOKALIKE_PORT", help="TCP port; 0 picks a free one (the one used is printed)."
        ),
    ] = 8000,
    writable: Annotated[
        bool,
        typer.Option(
            "--writable",
            envvar="LOOKALIKE_WRITABLE",
            help="Enable POST/DELETE /api/images. The server then holds the index's writer "
            "lock: 'lookalike index' on the same index reports it locked until it stops.",
        ),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LOOKALIKE_TOKEN",
            help="Bearer token required for writes; required to bind a non-loopback host "
            "(at least 12 characters, no whitespace).",
            show_default=False,
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest upload accepted (413 past it).")
    ] = 32.0,
    max_megapixels: Annotated[
        float, typer.Option(help="Largest image accepted, in megapixels (413 past it).")
    ] = 100.0,
    cnn_workers: Annotated[int, typer.Option(help="Image searches/uploads computed at once.")] = 2,
    cnn_queue: Annotated[
        int, typer.Option(help="Image requests allowed to wait; past that: 503 + Retry-After.")
    ] = 8,
) -> None:
    """Serve the web page (/) and the HTTP API (/api, docs at /docs) for one index.

    Binds 127.0.0.1 by default. Other LOOKALIKE_* environment variables (LOOKALIKE_MAX_K,
    LOOKALIKE_DEFAULT_K, LOOKALIKE_THUMBNAIL_CACHE, ...) are read too.
    """
    import uvicorn

    from lookalike.server import ServerSettings, create_app

    settings = ServerSettings(
        host=host,
        port=port,
        writable=writable,
        token=token,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_pixels=int(max_megapixels * 1_000_000),
        cnn_workers=cnn_workers,
        cnn_queue=cnn_queue,
    )
    application = create_app(index, settings)
    config = uvicorn.Config(application, host=host, port=port, log_level="info")
    # Bind first, so the address printed is the real one (--port 0 picks a free port).
    try:
        sock = config.bind_socket()
    except SystemExit:  # uvicorn exits when the address is taken; say it our way
        raise ConfigError(f"cannot listen on {host}:{port} (address in use?)") from None
    real_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"lookalike: serving {index} on http://{shown}:{real_port}/ (API docs at /docs)",
    )
    uvicorn.Server(config).run(sockets=[sock])
