"""The ``sandbox`` command (``serve``, ``warmup``, ``images build``, ``trajectories``)
and ``sandbox-server``."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from . import __version__
from .backends import RESOURCE_TYPES
from .config import Settings, SwarmSettings
from .errors import SandboxError
from .profiles import ProfileError, read_profile
from .recording.commands import add_trajectory_commands

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sandbox`` console script."""
    return _run(_parser(), argv)


def server_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sandbox-server``: ``sandbox serve`` under AgentFlow's name."""
    parser = argparse.ArgumentParser(
        prog="sandbox-server", description="Run the API server (same as `sandbox serve`)."
    )
    _serve_arguments(parser)
    return _run(parser, argv)


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except ProfileError as exc:  # a usage error, as argparse's own are
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    except (SandboxError, ValueError, ValidationError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandbox", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sandbox {__version__}")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the API server")
    _serve_arguments(serve)

    warmup = commands.add_parser(
        "warmup",
        help="ask a running server to build images, start services and fill pools",
    )
    warmup.add_argument("resources", nargs="*", metavar="RESOURCE")
    warmup.add_argument("--pool", type=int, help="ready containers to keep per resource type")
    warmup.add_argument("--url", default="http://127.0.0.1:18890", help="the server")
    warmup.add_argument("--api-key", help="the server's API key (or SANDBOX_API_KEY)")
    warmup.set_defaults(run=_warmup)

    images = commands.add_parser("images", help="manage session images")
    image_commands = images.add_subparsers(title="image commands")
    build = image_commands.add_parser(
        "build", help="build the images of these resource types (all when none named)"
    )
    build.add_argument("resources", nargs="*", metavar="RESOURCE")
    build.add_argument("-c", "--config", type=Path, help=_CONFIG_HELP)
    build.add_argument(
        "--push",
        nargs="?",
        const="",
        metavar="REGISTRY",
        help="then push each image to REGISTRY (host:port; default: the setting "
        "swarm.registry) as REGISTRY/<namespace>/<name>:latest",
    )
    build.set_defaults(run=_images_build)
    add_trajectory_commands(commands)
    return parser


_CONFIG_HELP = "settings file: a JSON or YAML profile, or an AgentFlow server config"
_LOG_LEVELS = get_args(Settings.model_fields["log_level"].annotation)


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("-p", "--port", type=int, help="listen port (default 18890)")
    serve.add_argument("-c", "--config", type=Path, help=_CONFIG_HELP)
    serve.add_argument(
        "--log-level",
        type=str.lower,
        choices=_LOG_LEVELS,
        help="server log level (default info; any case)",
    )
    serve.add_argument(
        "--show-config",
        action="store_true",
        help="print the effective settings as JSON (secrets masked) and exit",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="listen on a non-loopback address without an API key (only behind a "
        "firewall or a loopback-only port mapping); same as SANDBOX_INSECURE=true",
    )
    serve.add_argument(
        "--warmup",
        nargs="+",
        metavar="RESOURCE",
        help="warm these resource types up once listening, as POST /warmup does "
        "(build images, start shared services such as rag); default: the setting warmup",
    )
    serve.set_defaults(run=_serve)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "insecure", "log_level", "warmup"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if args.config is not None:
        overrides["config_file"] = args.config
    return Settings(**overrides)


def refuse_open_bind(settings: Settings) -> None:
    """Refuse to serve every address of the machine to anyone without a key.

    Without an API key the API runs any code for whoever reaches it, so it
    listens beyond loopback only when the operator says so (``--insecure``), e.g.
    in a container whose port is published on the host's loopback only.

    Raises:
        ValueError: `settings.host` is not a loopback address, no API key is
            configured and `settings.insecure` is off.
    """
    if settings.tenant_keys() or settings.insecure or _is_loopback(settings.host):
        return
    raise ValueError(
        f"refusing to listen on {settings.host} without an API key: anyone who reaches "
        "that address could run code. Set SANDBOX_API_KEY (or api_keys), listen on "
        "127.0.0.1, or pass --insecure (SANDBOX_INSECURE=true) if a firewall or a "
        "loopback-only port mapping keeps others out"
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server import create_app
    from .server.logs import configure_logging
    from .server.routes.ui_vnc import WS_MAX_MESSAGE_BYTES

    settings = _settings(args)
    notes = _profile_notes(settings)
    if args.show_config:
        for note in notes:
            print(f"sandbox: {note}", file=sys.stderr)
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
        return 0
    refuse_open_bind(settings)
    configure_logging(settings)
    for note in notes:
        log.warning("%s", note)
    servers: list[uvicorn.Server] = []

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    app = create_app(settings, request_shutdown=stop)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's loggers go through the handler configure_logging installed.
        log_config=None,
        # Access lines name method, path and status, never headers (no API key).
        access_log=settings.log_level == "debug",
        # The /ui live view's WebSocket (pure Python, flow-controlled sends).
        ws="wsproto",
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        timeout_graceful_shutdown=30,
    )
    servers.append(uvicorn.Server(config))
    if settings.warmup:
        _warm_up_when_listening(servers[0], settings, settings.warmup)
    servers[0].run()
    return 0


def _profile_notes(settings: Settings) -> list[str]:
    """What the profile asks for that the server leaves out, each naming the file and key."""
    if settings.config_file is None:
        return []
    profile = read_profile(settings.config_file)
    return [f"config file {settings.config_file}: {note}" for note in profile.notes]


def _warm_up_when_listening(server: Any, settings: Settings, resources: list[str]) -> None:
    """``serve --warmup``: POST /warmup to this server from a thread once it listens."""
    import threading

    import httpx

    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/warmup"
    headers = {}
    keys = settings.tenant_keys()
    admin = next((keys[tenant] for tenant in settings.admin_tenants if tenant in keys), None)
    if admin is not None:  # /warmup takes any tenant's key; an admin's may also set pools
        headers["Authorization"] = f"Bearer {admin.get_secret_value()}"

    def warm() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        try:
            response = httpx.post(url, json={"resources": resources}, headers=headers, timeout=30)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("warmup of %s at start failed: %s", ", ".join(resources), exc)
            return
        if body.get("code") == 0:
            log.info("warmup of %s started", ", ".join(resources))
        else:
            log.warning("warmup of %s at start failed: %s", ", ".join(resources), body)

    threading.Thread(target=warm, name="warmup-at-start", daemon=True).start()


def _warmup(args: argparse.Namespace) -> int:
    from .warmup_progress import run

    api_key = args.api_key or os.environ.get("SANDBOX_API_KEY")
    return run(args.url, args.resources, args.pool, api_key=api_key)


def _printer(prefix: str) -> Callable[[str], None]:
    def show(line: str) -> None:
        print(f"[{prefix}] {line}", flush=True)

    return show


def _images_build(args: argparse.Namespace) -> int:
    from .runtime.docker import DockerRuntime
    from .runtime.images import ImageService

    settings = _settings(args)
    known = {resource.name: resource.image for resource in RESOURCE_TYPES}
    # Optional images are built only when named (`vm-full`), never by default.
    optional = {
        name: image
        for resource in RESOURCE_TYPES
        for name, image in resource.optional_images.items()
    }
    unknown = [name for name in args.resources if name not in known and name not in optional]
    if unknown:
        raise ValueError(
            f"unknown resource type(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted([*known, *optional]))}"
        )
    wanted = args.resources or sorted(known)
    image_names = sorted({known.get(name) or optional[name] for name in wanted})
    registry = None if args.push is None else args.push or settings.swarm.registry
    if registry == "":
        raise ValueError("--push needs a REGISTRY (host:port) or the setting swarm.registry")
    if registry is not None:
        try:
            SwarmSettings(registry=registry)  # the same check as the setting's
        except ValidationError:
            raise ValueError(f"--push: {registry!r} is not a registry's host:port") from None

    async def build_all() -> None:
        runtime = DockerRuntime(threads=4)
        images = ImageService(runtime, settings.images_dir, settings.image_namespace)
        try:
            for name in image_names:
                started = time.monotonic()
                print(f"==> building {images.tag(name)}", flush=True)
                await images.build(name, _printer(name))
                print(f"==> {images.tag(name)} ready in {time.monotonic() - started:.1f}s")
                if registry is not None:
                    pushed = await runtime.push_image(images.tag(name), registry, _printer(name))
                    print(f"==> pushed {pushed}", flush=True)
        finally:
            runtime.close()

    asyncio.run(build_all())
    return 0
