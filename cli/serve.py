"""`identity serve`: the HTTP API (and, with the embedded store, the background enrollment) in one process."""

from __future__ import annotations

import threading

import typer

from identity.errors import ConfigError
from identity_cli.context import open_app
from identity_cli.output import err_console


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    proxy_headers: bool = typer.Option(
        False,
        "--proxy-headers",
        help="Behind a reverse proxy: take the client "
        "address and scheme from X-Forwarded-For/-Proto (only from --forwarded-allow-ips).",
    ),
    forwarded_allow_ips: str = typer.Option(
        "127.0.0.1",
        "--forwarded-allow-ips",
        help="Comma-separated proxy addresses whose X-Forwarded-* headers are trusted ('*': any).",
    ),
) -> None:
    """Serve the HTTP API under /v1 (API keys: `identity keys create`), /healthz, /readyz and /metrics."""
    import uvicorn

    from identity.api.app import create_api, create_metrics_api
    from identity.api.context import deployment_of
    from identity.api.request_id import LOG_CONFIG
    from identity.services.private_files import private_umask

    private_umask()  # also when serve is started without `run()` (the uploads, the SQLite file, the shards)
    with open_app() as core:
        deployment_of(core)  # the store checked and (embedded) held before the port opens: a refusal is one line
        api = create_api(core)
        bind = core.settings.api.metrics_bind
        if bind:
            metrics_host, _, metrics_port = bind.rpartition(":")
            if not metrics_port.isdigit():
                raise ConfigError(f"api.metrics_bind {bind!r} is not host:port (IDENTITY_API__METRICS_BIND)")
            config = uvicorn.Config(
                create_metrics_api(api.state.ctx),
                host=metrics_host or "127.0.0.1",
                port=int(metrics_port),
                log_level="warning",
            )
            threading.Thread(target=uvicorn.Server(config).run, name="identity-metrics", daemon=True).start()
            err_console.print(f"metrics without a key on http://{bind}/metrics", highlight=False)
        err_console.print(f"serving on http://{host}:{port} (OpenAPI: /docs, /openapi.json)", highlight=False)
        # Our access line (route templates, request ids) replaces uvicorn's, which prints paths with person ids.
        uvicorn.run(
            api,
            host=host,
            port=port,
            log_level="info",
            log_config=LOG_CONFIG,
            access_log=False,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
        )
