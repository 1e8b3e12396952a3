"""AgentFlow's server config files start this server: what they enable, set and leave out.

`THEIR_CONFIGS` is the content of the seven files AgentFlow ships in
``configs/sandbox-server/`` (OpenDCAI/AgentFlow at 23aa36a), written out as read,
descriptions trimmed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sandbox.agentflow_config import is_agentflow_config, translate
from sandbox.cli import main
from sandbox.config import Settings
from sandbox.profiles import ProfileError

_VM_BACKEND = "sandbox.server.backends.resources.vm.VMBackend"
_RAG_BACKEND = "sandbox.server.backends.resources.rag.RAGBackend"
_MCP_BACKEND = "sandbox.server.backends.resources.mcp.toolathlon_gym.ToolathlonGymBackend"
_SERVER = {"url": "http://127.0.0.1:18890", "port": 18890}

THEIR_CONFIGS: dict[str, dict[str, Any]] = {
    "GUI_config.json": {
        "server": {**_SERVER, "session_ttl": 600},
        "resources": {
            "vm": {
                "enabled": True,
                "description": "VM backend - desktop automation",
                "backend_class": _VM_BACKEND,
                "config": {
                    "provider": "docker",
                    "region": "",
                    "os_type": "Ubuntu",
                    "screen_size": [1920, 1080],
                    "headless": True,
                    "connection_type": "local",
                    "pool_size": 1,
                    "setup": [],
                    "pool_reset": True,
                    "snapshot_name": "",
                    "use_proxy": False,
                    "_comment_required": "Provide ... VM_CLIENT_PASSWORD / VM_IMAGE_PATH ...",
                    "client_password": "${VM_CLIENT_PASSWORD:-password}",
                    "vm_path": "${VM_IMAGE_PATH}",
                    "recording": True,
                    "recording_path": "${VM_RECORDING_PATH:-sandbox_recordings}",
                },
            }
        },
        "warmup": {"enabled": True, "resources": ["vm"]},
    },
    "doc_config.json": {
        "server": {**_SERVER, "session_ttl": 300},
        "apis": {
            "doc": {
                "_comment_required": "Required: vlm_model / vlm_api_key / vlm_api_url",
                "seed_path": "seeds/doc/seed/2210.02442v1",
                "max_search_results": 10,
                "vlm_model": "openai/gpt-4o-mini",
                "vlm_api_key": "${VLM_API_KEY}",
                "vlm_api_url": "https://openrouter.ai/api/v1",
            }
        },
    },
    "ds_config.json": {
        "server": {**_SERVER, "session_ttl": 300},
        "apis": {
            "ds": {
                "ds_max_csv": 100,
                "summary_model": "openai/gpt-oss-120b",
                "openai_api_key": "${OPENAI_API_KEY}",
                "openai_api_url": "${OPENAI_API_URL}",
            }
        },
    },
    "mcp_config.json": {
        "server": {**_SERVER, "session_ttl": 600},
        "resources": {
            "mcp": {
                "enabled": True,
                "description": "Toolathlon-GYM MCP backend",
                "backend_class": _MCP_BACKEND,
                "config": {
                    "enabled_mcp_servers": ["filesystem", "terminal", "snowflake"],
                    "workspace_root": "${TOOLATHLON_WORKSPACE_ROOT:-/tmp/agentflow_mcp}",
                    "env_overrides": {"PGHOST": "${PGHOST:-toolathlon_pg}"},
                },
            }
        },
        "warmup": {"enabled": True, "resources": ["mcp"]},
    },
    "rag_config.json": {
        "server": {**_SERVER, "session_ttl": 600},
        "resources": {
            "rag": {
                "enabled": True,
                "description": "RAG retrieval backend - document search (E5 + Faiss)",
                "backend_class": _RAG_BACKEND,
                "config": {
                    "_comment_device": ["Device format reference:", "- 'cpu' -> all on cpu"],
                    "_comment_required": "RAG_EMBEDDING_MODEL_PATH / RAG_INDEX_PATH / ...",
                    "model_name": "${RAG_EMBEDDING_MODEL_PATH}",
                    "index_path": "${RAG_INDEX_PATH}",
                    "corpus_path": "${RAG_CORPUS_PATH}",
                    "device": "cuda:2",
                    "default_top_k": 10,
                    "batcher_trigger_batch_size": 16,
                    "batcher_max_batch_size": 32,
                    "batcher_max_wait_time": 0.05,
                },
            }
        },
        "warmup": {"enabled": True, "resources": ["rag"]},
    },
    "text2sql_config.json": {
        "$schema": "Launch config - local Text2SQL",
        "server": {**_SERVER, "session_ttl": 600},
        "apis": {
            "text2sql": {
                "_comment_databases": "Provide database file paths via environment variables",
                "databases": {"retail": "${TEXT2SQL_RETAIL_DB_PATH:-}"},
            }
        },
    },
    "web_config.json": {
        "server": _SERVER,
        "apis": {
            "websearch": {
                "serper_api_key": "${SERPER_API_KEY}",
                "jina_api_key": "${JINA_API_KEY}",
                "visit_method": "jina",
                "openai_api_key": "${OPENROUTER_API_KEY}",
            }
        },
    },
}


@pytest.fixture(autouse=True)
def their_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The variables their README asks for; none of the runner's own ``SANDBOX_*``."""
    for name in [name for name in os.environ if name.startswith("SANDBOX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SANDBOX_MEMORY_BUDGET", "1024g")
    corpus = tmp_path / "wiki.jsonl"
    corpus.write_text('{"id": "1", "contents": "\\"Paris\\"\\nThe capital of France."}\n')
    variables = {
        "VM_CLIENT_PASSWORD": "secret-vm-password",
        "VM_IMAGE_PATH": str(tmp_path / "Ubuntu.qcow2"),
        "RAG_EMBEDDING_MODEL_PATH": str(tmp_path / "e5-base-v2"),
        "RAG_INDEX_PATH": str(tmp_path / "e5_Flat.index"),
        "RAG_CORPUS_PATH": str(corpus),
        "VLM_API_KEY": "vlm-key",
        "OPENAI_API_KEY": "openai-key",
        "OPENAI_API_URL": "https://openrouter.ai/api/v1",
        "SERPER_API_KEY": "serper-key",
        "JINA_API_KEY": "jina-key",
        "OPENROUTER_API_KEY": "openrouter-key",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return corpus


def written(directory: Path, name: str, content: dict[str, Any] | None = None) -> Path:
    path = directory / name
    path.write_text(json.dumps(THEIR_CONFIGS[name] if content is None else content))
    return path


# What each file starts here: resource types served (and warmed up), settings, and the
# keys named in the startup notes.
EXPECTED: dict[str, dict[str, Any]] = {
    "GUI_config.json": {
        "resource_types": ["vm"],
        "warmup": ["vm"],
        "session_ttl_s": 600,
        "pools": [{"resource": "vm", "size": 1, "config": {}}],
        # Their recording: every vm session records its screen, kept in their path.
        "session_defaults": {"vm": {"screen_size": [1920, 1080], "recording": True}},
        "screen_recording.dir": "sandbox_recordings",
        "notes": ["resources.vm.config.vm_path"],
    },
    "doc_config.json": {"resource_types": [], "session_ttl_s": 300, "notes": ["apis.doc"]},
    "ds_config.json": {"resource_types": [], "session_ttl_s": 300, "notes": ["apis.ds"]},
    "mcp_config.json": {
        "resource_types": [],
        "warmup": [],
        "session_ttl_s": 600,
        "notes": ["resources.mcp", "ToolathlonGymBackend", "warmup.resources: mcp"],
    },
    "rag_config.json": {
        "resource_types": ["rag"],
        "warmup": ["rag"],
        "session_ttl_s": 600,
        "notes": [
            "resources.rag.config: model_name, index_path, device, "
            "batcher_trigger_batch_size, batcher_max_batch_size, batcher_max_wait_time",
            "resources.rag.config.default_top_k",
        ],
    },
    "text2sql_config.json": {
        "resource_types": [],
        "session_ttl_s": 600,
        "notes": ["apis.text2sql"],
    },
    # No session_ttl in the file: ours (600 s), where theirs would be 300 s.
    "web_config.json": {"resource_types": [], "session_ttl_s": 600, "notes": ["apis.websearch"]},
}


@pytest.mark.parametrize("name", sorted(THEIR_CONFIGS))
def test_each_shipped_config_starts_what_we_have_and_names_the_rest(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = written(tmp_path, name)

    assert main(["serve", "-c", str(path), "--show-config"]) == 0

    out, err = capsys.readouterr()
    shown = json.loads(out)
    expected = EXPECTED[name]
    assert (shown["host"], shown["port"]) == ("127.0.0.1", 18890)
    for field in ("resource_types", "warmup", "session_ttl_s", "pools", "session_defaults"):
        if field in expected:
            assert shown[field] == expected[field], field
    if "screen_recording.dir" in expected:
        assert shown["screen_recording"]["dir"] == expected["screen_recording.dir"]
    for key in expected["notes"]:
        assert key in err
    assert all(line.startswith(f"sandbox: config file {path}: ") for line in err.splitlines())
    for secret in ("secret-vm-password", "vlm-key", "openai-key", "serper-key", "jina-key"):
        assert secret not in out + err


def test_their_rag_corpus_becomes_the_shared_collection(
    tmp_path: Path, their_environment: Path
) -> None:
    settings = Settings(config_file=written(tmp_path, "rag_config.json"))

    assert settings.rag.corpus == their_environment


def test_options_that_ask_for_what_we_do_anyway_pass_silently(tmp_path: Path) -> None:
    profile = translate(THEIR_CONFIGS["GUI_config.json"], tmp_path / "GUI_config.json")

    noted = " ".join(profile.notes)
    for quiet in ("provider", "os_type", "headless", "setup", "pool_reset", "use_proxy"):
        assert f".{quiet}" not in noted, quiet
    assert "client_password" not in noted, "a credential of their VM, meaningless here"
    assert "recording" not in noted, "recording and its path are served"


def test_a_recording_path_naming_a_file_keeps_videos_in_its_directory(tmp_path: Path) -> None:
    gui = THEIR_CONFIGS["GUI_config.json"]
    vm = gui["resources"]["vm"]
    config = {**vm["config"], "recording_path": "/data/videos/run.mp4"}
    data = {**gui, "resources": {"vm": {**vm, "config": config}}}

    profile = translate(data, tmp_path / "GUI.json")

    assert profile.values["screen_recording"] == {"dir": "/data/videos"}
    assert any("recording_path" in note and "/data/videos" in note for note in profile.notes)


def test_options_that_ask_for_something_else_are_named(tmp_path: Path) -> None:
    gui = THEIR_CONFIGS["GUI_config.json"]
    vm = gui["resources"]["vm"]
    asking = {"headless": False, "setup": [{"type": "launch"}], "provider": "aliyun", "gpu": 1}
    data = {**gui, "resources": {"vm": {**vm, "config": {**vm["config"], **asking}}}}

    notes = translate(data, tmp_path / "GUI.json").notes

    assert any(note.startswith("resources.vm.config.headless: ignored") for note in notes)
    assert any(note.startswith("resources.vm.config.setup: ignored") for note in notes)
    assert any("resources.vm.config: provider, vm_path ignored" in note for note in notes)
    assert "resources.vm.config.gpu: not an option of vm here; ignored" in notes


def test_our_session_options_in_their_config_become_session_defaults(tmp_path: Path) -> None:
    data = {
        "resources": {
            "vm": {"config": {"screen_size": "1024x768", "memory": "2g", "pool_size": 0}},
            "bash": {"enabled": True, "config": {"cpus": 0.5, "pool_size": "${BASH_POOL:-3}"}},
            "code": {"enabled": False},
        }
    }
    settings = Settings(config_file=written(tmp_path, "ours.json", data))

    assert settings.resource_types == ["vm", "bash"], "enabled by default, as theirs"
    assert settings.session_defaults == {
        "vm": {"screen_size": [1024, 768], "memory": "2g"},
        "bash": {"cpus": 0.5},
    }
    assert [(pool.resource, pool.size) for pool in settings.pools] == [("bash", 3)]


def test_variables_expand_with_defaults_as_theirs_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {
        "server": {
            "url": "http://${HOST_NAME:-127.0.0.2}:18890",
            "port": "${PORT}",
            "session_ttl": "${TTL:-45}",
            "log_level": "${LEVEL:-WARNING}",
        }
    }
    monkeypatch.setenv("PORT", "18999")
    monkeypatch.setenv("LEVEL", "Debug")

    settings = Settings(config_file=written(tmp_path, "vars.json", data))

    assert (settings.host, settings.port) == ("127.0.0.2", 18999)
    assert (settings.session_ttl_s, settings.log_level) == (45, "debug")


def test_a_used_variable_that_is_unset_is_an_error_naming_file_key_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAG_CORPUS_PATH")
    path = written(tmp_path, "rag_config.json")

    with pytest.raises(ProfileError) as raised:
        Settings(config_file=path)

    message = str(raised.value)
    assert str(path) in message
    assert "resources.rag.config.corpus_path" in message
    assert "RAG_CORPUS_PATH is not set" in message


def test_an_unset_variable_in_an_option_left_out_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("VM_IMAGE_PATH", "VM_CLIENT_PASSWORD", "RAG_EMBEDDING_MODEL_PATH"):
        monkeypatch.delenv(name)

    gui = Settings(config_file=written(tmp_path, "GUI_config.json"))
    rag = translate(THEIR_CONFIGS["rag_config.json"], tmp_path / "rag_config.json")

    assert gui.resource_types == ["vm"]
    assert not any(
        "vm_path" in note
        for note in translate(THEIR_CONFIGS["GUI_config.json"], tmp_path / "GUI.json").notes
    )
    assert not any("model_name" in note for note in rag.notes), "unset: nothing asked for"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"server": ["http://127.0.0.1:18890"]}, "server: must be a mapping"),
        ({"server": {"port": 70000}}, "server.port: Input should be less than or equal"),
        ({"server": {"url": "http://h:port"}}, "server.url: not a URL"),
        ({"server": {"log_level": "TRACE"}}, "server.log_level: Input should be"),
        ({"resources": {"vm": "yes"}}, "resources.vm: must be a mapping"),
        ({"resources": {"vm": {"enabled": "sometimes"}}}, "resources.vm.enabled: must be true"),
        (
            {"resources": {"vm": {"config": {"screen_size": [1920]}}}},
            "resources.vm.config.screen_size: ",
        ),
        ({"resources": {"vm": {"config": {"pool_size": -1}}}}, "resources.vm.config.pool_size"),
        (
            {"resources": {"rag": {"config": {"corpus_path": "/nowhere.jsonl"}}}},
            "resources.rag.config.corpus_path: rag corpus /nowhere.jsonl is not a file",
        ),
        ({"resources": {}, "warmup": {"enabled": True, "resources": "vm"}}, "warmup.resources"),
    ],
)
def test_a_malformed_key_is_an_error_naming_file_and_key(
    data: dict[str, Any], key: str, tmp_path: Path
) -> None:
    path = written(tmp_path, "bad.json", data)

    with pytest.raises(ProfileError) as raised:
        Settings(config_file=path)

    assert str(raised.value).startswith(f"config file {path}: {key}")


def test_comments_and_schema_are_skipped_at_every_level(tmp_path: Path) -> None:
    data = {
        "$schema": "Launch config",
        "_comment": "top",
        "server": {"_comment_port": "the port", "port": 18891},
        "resources": {"_comment": "resources", "vm": {"_comment": "vm", "config": {"_c": 1}}},
    }

    profile = translate(data, tmp_path / "commented.json")

    assert profile.values["port"] == 18891
    assert profile.notes == ("resources.vm.config._c: not an option of vm here; ignored",)


def test_unknown_sections_and_server_options_are_named(tmp_path: Path) -> None:
    data = {
        "server": {"port": 18891, "workers": 4},
        "security": {"auth": {"enabled": True}},
        "resources": {"vm": {"enabled": True, "priority": 1}},
    }

    notes = translate(data, tmp_path / "odd.json").notes

    assert set(notes) == {
        "server.workers: not a server option here; ignored",
        "security: not a section this server reads; ignored",
        "resources.vm.priority: not a resource option here; ignored",
    }


def test_the_environment_and_arguments_beat_their_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = written(tmp_path, "GUI_config.json")
    monkeypatch.setenv("SANDBOX_SESSION_TTL_S", "60")

    settings = Settings(config_file=path, port=9000)

    assert (settings.port, settings.session_ttl_s) == (9000, 60)


def test_our_own_profiles_are_not_taken_for_theirs() -> None:
    assert not is_agentflow_config({"port": 1, "warmup": ["vm"], "pools": []})
    assert is_agentflow_config({"server": {"port": 1}})
    assert is_agentflow_config({"apis": {}})
