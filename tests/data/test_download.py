"""``videorep data davis`` against a local HTTP server: checksum, truncation + resume, success.

The server (a ``http.server`` thread on 127.0.0.1, written here) serves a small DAVIS-layout zip
built by the test, honours ``Range: bytes=N-`` with ``206 Partial Content``, records every
request's ``Range`` header and can be told to cut a response short (it announces the full
``Content-Length``, sends half and closes) or to ignore ``Range``. Nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from videorep.cli import main
from videorep.data.download import download, fetch_davis, unpack_zip
from videorep.errors import VideorepError


def davis_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("DAVIS/ImageSets/2017/val.txt", "bear\n")
        zf.writestr("DAVIS/JPEGImages/480p/bear/00000.jpg", bytes(range(256)) * 40)
        zf.writestr("DAVIS/Annotations/480p/bear/00000.png", b"\x89PNG" + bytes(5000))
    return buf.getvalue()


PAYLOAD = davis_zip()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    def __init__(self) -> None:
        self.ranges: list[str | None] = []
        self.truncate = 0  # cut this many upcoming responses short
        self.honour_range = True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = 0
                if rng and outer.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(PAYLOAD):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = PAYLOAD[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/*")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.truncate:
                    outer.truncate -= 1
                    body = body[: len(body) // 2]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/DAVIS-2017-trainval-480p.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


FAST = {"timeout": 5.0, "backoff": 0.0, "progress": False, "log": lambda m: None}


def test_success_unpacks_a_davis_root_and_records_the_digest(server, tmp_path) -> None:
    root = fetch_davis(tmp_path, server.url, SHA, **FAST)
    assert root == tmp_path / "DAVIS"
    assert (root / "ImageSets" / "2017" / "val.txt").read_text() == "bear\n"
    archive = tmp_path / "DAVIS-2017-trainval-480p.zip"
    assert (
        archive.read_bytes() == PAYLOAD and not archive.with_name(archive.name + ".part").exists()
    )
    assert (tmp_path / (archive.name + ".sha256")).read_text().split()[0] == SHA
    assert server.ranges == [None]
    assert fetch_davis(tmp_path, server.url, SHA, **FAST) == root  # unpacked: no new request
    assert server.ranges == [None]


def test_checksum_mismatch_deletes_the_download(server, tmp_path) -> None:
    wrong = "0" * 64
    with pytest.raises(VideorepError, match=f"checksum mismatch \\(sha256 {SHA}, expected {wrong}"):
        fetch_davis(tmp_path, server.url, wrong, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-done is left
    with pytest.raises(VideorepError, match="64 hexadecimal digits"):
        download(server.url, tmp_path / "x.zip", "abc", **FAST)


def test_truncated_transfer_resumes_within_the_call(server, tmp_path) -> None:
    server.truncate = 1
    dest = download(server.url, tmp_path / "a.zip", SHA, retries=2, **FAST)
    half = (len(PAYLOAD)) // 2
    assert server.ranges == [None, f"bytes={half}-"]  # the second request continued
    assert dest.read_bytes() == PAYLOAD


def test_truncated_transfer_is_resumed_by_the_next_run(server, tmp_path) -> None:
    server.truncate = 1
    with pytest.raises(VideorepError, match="run the same command again to resume"):
        download(server.url, tmp_path / "a.zip", SHA, retries=0, **FAST)
    part = tmp_path / "a.zip.part"
    half = len(PAYLOAD) // 2
    assert part.read_bytes() == PAYLOAD[:half]
    dest = download(server.url, tmp_path / "a.zip", SHA, retries=0, **FAST)
    assert server.ranges == [None, f"bytes={half}-"]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_a_server_without_range_support_starts_over(server, tmp_path) -> None:
    server.truncate, server.honour_range = 1, False
    dest = download(server.url, tmp_path / "a.zip", SHA, retries=1, **FAST)
    assert dest.read_bytes() == PAYLOAD and len(server.ranges) == 2


def test_cli_prints_the_root(server, tmp_path, capsys) -> None:
    out = tmp_path / "data"
    args = ["data", "davis", "--out", str(out), "--url", server.url, "--sha256", SHA]
    assert main([*args, "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "DAVIS")
    assert main(["data", "davis", "--out", str(tmp_path / "b"), "--url", server.url,
                 "--sha256", "1" * 64, "--no-progress"]) == 2  # fmt: skip
    assert "checksum mismatch" in capsys.readouterr().err


def test_unreachable_server_is_one_error(tmp_path) -> None:
    s = Server()
    url = s.url
    s.close()  # nothing listens there any more
    with pytest.raises(VideorepError, match="cannot connect"):
        download(url, tmp_path / "a.zip", None, retries=0, **FAST)


def test_unsafe_archive_members_are_refused(tmp_path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
    (tmp_path / "into").mkdir()
    with pytest.raises(VideorepError, match="unsafe member '../outside.txt'"):
        unpack_zip(archive, tmp_path / "into")
    assert not (tmp_path / "outside.txt").exists() and not list((tmp_path / "into").iterdir())
