"""AgentFlow's server config files, read as this server's settings.

AgentFlow (OpenDCAI/AgentFlow) starts its sandbox server with
``sandbox-server --config configs/sandbox-server/<name>.json``; this module lets
the same files start this server (``sandbox serve -c FILE``, or ``sandbox-server
-c FILE``). A profile is AgentFlow's when it has a ``server``, ``resources`` or
``apis`` section at the top: none of them is a setting of ours.

Where their keys go::

    server.url, server.host, server.port  host, port (host and port win over the url)
    server.session_ttl                    session_ttl_s
    server.cleanup_interval               sweep_interval_s
    server.log_level                      log_level
    resources.<type>.enabled              resource_types: the enabled ones we have
    resources.<type>.config.<option>      session_defaults.<type>.<option>, for the
                                          options of our session config (vm
                                          screen_size, memory, cpus, network...)
    resources.<type>.config.pool_size     pools
    resources.rag.config.corpus_path      rag.corpus
    resources.vm.config.recording_path    screen_recording.dir (a file's directory)
    warmup.enabled, warmup.resources      warmup

Anything else becomes a note naming its key: a resource type, API or option this
server lacks is left out and the server serves the rest. Options whose value asks
for nothing we do differently (vm ``provider: docker``, ``headless: true``)
pass silently; ``_comment*`` keys are skipped at every level.

Strings may name environment variables, ``${VAR}`` or ``${VAR:-default}``, which
are expanded as AgentFlow does (a set variable wins, even when empty). An unset
variable without a default is an error only where its value is used: options
left out are never expanded, so GUI_config.json needs no ``VM_IMAGE_PATH``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError

from .backends import RESOURCE_TYPES, ResourceType
from .config import PoolSettings, RagSettings, Settings
from .profiles import Profile, ProfileError

_VARIABLE = re.compile(r"\$\{([^}:]+)(?::-([^}]*))?\}")
_SECTIONS = ("server", "resources", "apis")
_SERVER_FIELDS = {
    "host": "host",
    "port": "port",
    "session_ttl": "session_ttl_s",
    "cleanup_interval": "sweep_interval_s",
    "log_level": "log_level",
}
_SERVER_SILENT = frozenset({"url", "title", "description"})
_RESOURCE_SILENT = frozenset({"enabled", "description", "backend_class", "config"})
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

M = TypeVar("M", bound=BaseModel)


def is_agentflow_config(data: Mapping[str, Any]) -> bool:
    """Whether a profile's top-level mapping is in AgentFlow's format."""
    return any(section in data for section in _SECTIONS)


def translate(
    data: Mapping[str, Any], source: Path, environ: Mapping[str, str] | None = None
) -> Profile:
    """AgentFlow config `data` (read from `source`) as our settings, with notes.

    Args:
        data: The file's top-level mapping.
        source: The file, named in errors.
        environ: Variables for ``${VAR}``; the process environment by default.

    Raises:
        ProfileError: A key has the wrong shape or value, or a used value names
            an unset variable without a default; the message names the file and
            the key.
    """
    reader = _Reader(source, os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for key, section in data.items():
        if _skipped(key) or key in ("resources", "warmup"):
            continue
        if key == "server":
            values.update(reader.server(section))
        elif key == "apis":
            reader.apis(section)
        else:
            reader.note(key, "not a section this server reads; ignored")
    served = reader.resources(data.get("resources") or {}, values)
    values["resource_types"] = served
    if "warmup" in data:
        values["warmup"] = reader.warmup(data["warmup"], served)
    return Profile(values, tuple(reader.notes))


def _skipped(key: object) -> bool:
    return isinstance(key, str) and (key.startswith("_comment") or key == "$schema")


def _unset(value: Any) -> bool:
    """No value: empty, or a variable that is not set (kept as ``${VAR}``)."""
    if value is None or value in ("", [], {}):
        return True
    return isinstance(value, str) and _VARIABLE.fullmatch(value) is not None


def _one_of(*accepted: str) -> Callable[[Any], bool]:
    return lambda value: _unset(value) or str(value).strip().lower() in accepted


def _always(value: Any) -> bool:
    del value
    return True


@dataclass(frozen=True)
class _Ignored:
    """An option of theirs we leave out: silently while its value asks for what we do."""

    harmless: Callable[[Any], bool]
    reason: str = ""


_DESKTOP = "vm sessions run this server's desktop image (Debian, Xvfb) in Docker"
_FRESH = "pool containers are never reused: every session starts fresh from the image"
_BM25 = (
    "rag here is BM25 full-text search whose index the server builds from corpus_path "
    "(no embedding model, index file or GPU)"
)
_IGNORED: dict[str, dict[str, _Ignored]] = {
    "vm": {
        "provider": _Ignored(_one_of("docker"), _DESKTOP),
        "os_type": _Ignored(_one_of("ubuntu", "linux"), _DESKTOP),
        "region": _Ignored(_unset, _DESKTOP),
        "connection_type": _Ignored(_one_of("local"), _DESKTOP),
        "vm_path": _Ignored(_unset, _DESKTOP),
        "snapshot_name": _Ignored(_unset, _FRESH),
        "pool_reset": _Ignored(_one_of("true"), _FRESH),
        "headless": _Ignored(
            _one_of("true"), "the desktop is always headless; vm:screenshot shows it"
        ),
        "setup": _Ignored(
            _unset,
            "setup steps of the server's config are not run; give them in a session's "
            "config (config.setup) or run them with vm:setup",
        ),
        "use_proxy": _Ignored(
            _one_of("false"),
            "no proxy: a session has network only with config network: true, where "
            "the setting ceilings.allow_network permits it",
        ),
        # Meaningless here whatever its value: the desktop has no login.
        "client_password": _Ignored(_always),
    },
    "rag": {
        **{
            key: _Ignored(_unset, _BM25)
            for key in (
                "model_name",
                "index_path",
                "device",
                "batcher_trigger_batch_size",
                "batcher_max_batch_size",
                "batcher_max_wait_time",
            )
        },
        "default_top_k": _Ignored(_unset, "rag:search and rag:batch_search take top_k per call"),
    },
}


class _Reader:
    """One file's translation: where errors point, the variables, the notes so far."""

    def __init__(self, source: Path, environ: Mapping[str, str]) -> None:
        self._source = source
        self._environ = environ
        self.notes: list[str] = []

    # -- sections ---------------------------------------------------------------

    def server(self, section: Any) -> dict[str, Any]:
        section = self._mapping(section, "server")
        values: dict[str, Any] = {}
        if section.get("url"):
            values.update(self._url(section["url"]))
        for key, raw in section.items():
            where = f"server.{key}"
            if _skipped(key) or key in _SERVER_SILENT:
                continue
            field = _SERVER_FIELDS.get(key)
            if field is None:
                self.note(where, "not a server option here; ignored")
                continue
            value = self._expand(raw, where)
            if value is None or value == "":
                continue  # as AgentFlow: an empty host or port falls back to the url
            if field == "log_level" and isinstance(value, str):
                value = value.lower()
            values[field] = self._setting(Settings, field, value, where)
        return values

    def _url(self, raw: Any) -> dict[str, Any]:
        url = self._expand(raw, "server.url")
        try:
            parts = urlsplit(str(url))
            port = parts.port
        except ValueError as exc:
            raise self._error("server.url", f"not a URL: {exc}") from None
        values: dict[str, Any] = {}
        if parts.hostname:
            values["host"] = parts.hostname
        if port is not None:
            values["port"] = self._setting(Settings, "port", port, "server.url")
        return values

    def apis(self, section: Any) -> None:
        for name in self._mapping(section, "apis"):
            if not _skipped(name):
                self.note(f"apis.{name}", "not served: this server has no stateless API tools")

    def resources(self, section: Any, values: dict[str, Any]) -> list[str]:
        section = self._mapping(section, "resources")
        known = {resource.name: resource for resource in RESOURCE_TYPES}
        served: list[str] = []
        for name, entry in section.items():
            if _skipped(name):
                continue
            where = f"resources.{name}"
            entry = self._mapping(entry, where)
            if not self._flag(entry.get("enabled", True), f"{where}.enabled"):
                continue
            resource = known.get(name)
            if resource is None:
                backend = entry.get("backend_class")
                named = f" (backend_class {backend})" if isinstance(backend, str) else ""
                self.note(
                    where,
                    f"not served: this server has no resource type {name!r}{named}; "
                    f"it has {', '.join(sorted(known))}",
                )
                continue
            served.append(name)
            for key in entry:
                if not (_skipped(key) or key in _RESOURCE_SILENT):
                    self.note(f"{where}.{key}", "not a resource option here; ignored")
            config = self._mapping(entry.get("config") or {}, f"{where}.config")
            self._resource_config(resource, config, values)
        if not served:
            self.note(
                "resources",
                f"enables none of this server's resource types ({', '.join(sorted(known))}): "
                "it serves no sessions",
            )
        return served

    def warmup(self, section: Any, served: list[str]) -> list[str]:
        section = self._mapping(section, "warmup")
        if not self._flag(section.get("enabled", False), "warmup.enabled"):
            return []
        names = self._expand(section.get("resources") or [], "warmup.resources")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise self._error("warmup.resources", "must be a list of resource names")
        warmed: list[str] = []
        for name in names:
            if name not in served:
                self.note("warmup.resources", f"{name} is not served here; not warmed up")
            elif name not in warmed:
                warmed.append(name)
        return warmed

    # -- one resource's config ----------------------------------------------------

    def _resource_config(
        self, resource: ResourceType, config: dict[str, Any], values: dict[str, Any]
    ) -> None:
        where = f"resources.{resource.name}.config"
        options = resource.config_model.model_fields
        defaults: dict[str, Any] = {}
        ignored: dict[str, list[str]] = {}
        for key, raw in config.items():
            at = f"{where}.{key}"
            if _skipped(key):
                continue
            if key == "recording_path" and resource.name == "vm":
                self._recording_path(self._expand(raw, at), at, values)
            elif key in options and key not in _IGNORED.get(resource.name, {}):
                defaults[key] = self._expand(raw, at)
            elif key == "pool_size" and not resource.shared:
                size = self._setting(PoolSettings, "size", self._expand(raw, at), at)
                if size:
                    values.setdefault("pools", []).append({"resource": resource.name, "size": size})
            elif key == "corpus_path" and resource.name == "rag":
                corpus = self._expand(raw, at)
                if corpus:
                    checked = self._checked(RagSettings, {"corpus": corpus}, {"corpus": at})
                    values["rag"] = {"corpus": str(checked.corpus)}
            else:
                rule = _IGNORED.get(resource.name, {}).get(key)
                if rule is None:
                    self.note(at, f"not an option of {resource.name} here; ignored")
                elif not rule.harmless(self._expand(raw, at, strict=False)):
                    ignored.setdefault(rule.reason, []).append(key)
        for reason, keys in ignored.items():
            if len(keys) == 1:
                self.note(f"{where}.{keys[0]}", f"ignored: {reason}")
            else:
                self.note(where, f"{', '.join(keys)} ignored: {reason}")
        if defaults:
            fields = {key: f"{where}.{key}" for key in defaults}
            config_model = self._checked(resource.config_model, defaults, fields)
            session_defaults = values.setdefault("session_defaults", {})
            session_defaults[resource.name] = config_model.model_dump(
                mode="json", exclude_unset=True
            )

    def _recording_path(self, raw: Any, at: str, values: dict[str, Any]) -> None:
        """AgentFlow's ``recording_path`` (a directory, or a file whose directory
        is taken) as the directory the server keeps screen videos in."""
        if not raw:
            return
        if not isinstance(raw, str):
            raise self._error(at, "must be a path")
        path = Path(raw).expanduser()
        if path.suffix:
            self.note(at, f"videos are kept one per recording in {path.parent}, as <id>.mp4")
            path = path.parent
        values["screen_recording"] = {"dir": str(path)}

    # -- values -------------------------------------------------------------------

    def note(self, where: str, message: str) -> None:
        self.notes.append(f"{where}: {message}")

    def _error(self, where: str, message: str) -> ProfileError:
        return ProfileError(f"config file {self._source}: {where}: {message}")

    def _mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self._error(where, f"must be a mapping, not {type(value).__name__}")
        return value

    def _flag(self, raw: Any, where: str) -> bool:
        value = self._expand(raw, where)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self._error(where, "must be true or false")

    def _expand(self, value: Any, where: str, *, strict: bool = True) -> Any:
        """`value` with every ``${VAR}`` and ``${VAR:-default}`` in its strings replaced.

        Not `strict`, an unset variable without a default stays as written.
        """
        if isinstance(value, str):
            return _VARIABLE.sub(lambda match: self._variable(match, where, strict), value)
        if isinstance(value, dict):
            return {k: self._expand(v, f"{where}.{k}", strict=strict) for k, v in value.items()}
        if isinstance(value, list):
            return [self._expand(v, f"{where}.{i}", strict=strict) for i, v in enumerate(value)]
        return value

    def _variable(self, match: re.Match[str], where: str, strict: bool) -> str:
        name, default = match.group(1), match.group(2)
        value = self._environ.get(name)
        if value is not None:
            return value
        if default is not None:
            return default
        if strict:
            raise self._error(
                where,
                f"environment variable {name} is not set and has no default "
                f"(set it, or write ${{{name}:-default}})",
            )
        return match.group(0)

    def _setting(self, model: type[BaseModel], field: str, value: Any, where: str) -> Any:
        """`value` checked as `model`'s `field`, so a bad one names the file's key."""
        adapter: TypeAdapter[Any] = TypeAdapter(model.model_fields[field].rebuild_annotation())
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            raise self._error(
                where, exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            ) from None

    def _checked(self, model: type[M], values: dict[str, Any], where: dict[str, str]) -> M:
        """`values` as `model`; an error names the file's key of the field that failed."""
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = str(error["loc"][0]) if error["loc"] else ""
            raise self._error(
                where.get(field, field), error["msg"].removeprefix("Value error, ")
            ) from None
