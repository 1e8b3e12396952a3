"""Files answered from the descriptor the route opened: deleted afterwards, sent whole."""

from __future__ import annotations

from pathlib import Path

from sandbox.server.files import open_file_response


async def test_a_file_deleted_once_opened_is_still_sent_whole(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    content = bytes(range(256)) * 1000  # several chunks
    path.write_bytes(content)
    response = open_file_response(path, media_type="video/mp4", headers={"X-Recording-ID": "r"})
    assert response is not None
    path.unlink()  # a DELETE or retention, after the route found and opened the file
    sent = b""
    async for chunk in response.body_iterator:
        assert isinstance(chunk, bytes)
        sent += chunk
    assert sent == content
    assert response.headers["content-length"] == str(len(content))
    assert response.headers["x-recording-id"] == "r"
    assert response.media_type == "video/mp4"


def test_a_missing_file_or_a_directory_is_none(tmp_path: Path) -> None:
    assert open_file_response(tmp_path / "gone.mp4", media_type="video/mp4") is None
    assert open_file_response(tmp_path, media_type="video/mp4") is None
    assert open_file_response(tmp_path / "gone" / "deeper.mp4", media_type="video/mp4") is None
