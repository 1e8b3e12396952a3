"""Recording through a real server: a bash session and a desktop screenshot, read back."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import docker

from sandbox import HTTPServiceClient, Sandbox

from .support import checked, start_server


def _png_size(raw: bytes) -> tuple[int, int]:
    assert raw.startswith(b"\x89PNG\r\n\x1a\n"), raw[:16]
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def test_a_recorded_bash_session_and_screenshot_read_back(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    env = {"SANDBOX_RECORDING": "true", "SANDBOX_RECORDING_DIR": str(tmp_path / "recordings")}
    server = start_server(tmp_path, env=env)
    with checked(docker_client, server), Sandbox(server_url=server.url, worker_id="rec") as sb:
        sb.execute_sync("bash:run", {"command": "cd /tmp && echo made > f.txt"})
        ran = sb.execute_sync("bash:run", {"command": "cat f.txt", "env": {"API_TOKEN": "s3"}})
        assert ran["data"]["stdout"] == "made\n"
        created = sb.client.create_session_sync("vm", {"screen_size": [800, 600]})
        assert created["code"] == 0, created
        shot = sb.execute_sync("vm:screenshot", {})
        assert shot["code"] == 0, shot
        client: HTTPServiceClient = sb.client

        listed = client.list_trajectories_sync(worker_id="rec").raise_for_code().data
        by_type = {t["resource_type"]: t for t in listed["trajectories"]}
        assert by_type["bash"]["steps"] == 2
        assert by_type["vm"]["steps"] == 1

        bash = client.get_trajectory_sync(by_type["bash"]["session_id"]).raise_for_code()
        first, second = bash.data["steps"]
        assert (first["seq"], second["seq"]) == (1, 2)
        assert first["params"]["command"] == "cd /tmp && echo made > f.txt"
        assert second["data"]["stdout"] == "made\n"
        assert second["data"]["cwd"] == "/tmp"
        assert second["params"]["env"] == {"API_TOKEN": "[redacted]"}
        assert second["trace_id"] == ran["meta"]["trace_id"]

        vm = client.get_trajectory_sync(by_type["vm"]["session_id"]).raise_for_code()
        (step,) = vm.data["steps"]
        reference = step["data"]["image"]
        assert reference["format"] == "png"
        image = client.get_trajectory_image_sync(reference["$image"]).raise_for_code()
        assert _png_size(image.data["content"]) == (800, 600)
        assert image.data["content"] == base64.b64decode(shot["data"]["image"])
        inline = client.get_trajectory_sync(by_type["vm"]["session_id"], images="inline")
        assert inline.data["steps"][0]["data"]["image"] == shot["data"]["image"]

    # What was recorded outlives the server.
    again = start_server(tmp_path, env=env)
    with checked(docker_client, again):
        client = HTTPServiceClient(again.url, "rec")
        listed = client.list_trajectories_sync(worker_id="rec").raise_for_code().data
        assert listed["count"] == 2
        assert client.delete_trajectory_sync(by_type["vm"]["session_id"]).code == 0
        assert list((tmp_path / "recordings" / "images").rglob("*.png")) == []
        client.close_sync()
