"""`aro build --download` against a real local HTTP server that drops and stalls connections, and zip archives
damaged in transfer; Google Drive goes through gdown, whose network side is the boundary replaced here."""

import http.server
import json
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import refused
from test_build import draw, save

from aro.builders import build
from aro.builders.build import extract, fetch, fetch_google_drive
from aro.cli import main


class FlakyServer(http.server.ThreadingHTTPServer):
    """Serves `files` (path -> bytes) with HTTP range requests; the first answer for a path in `drop` stops halfway,
    and a path in `stall` never sends its body."""

    def __init__(self, files: dict[str, bytes], drop=(), stall=()):
        self.files, self.drop, self.stall, self.requests = files, set(drop), set(stall), []
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), RangeHandler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if self.path not in server.files:
            self.send_error(404)
            return
        data = server.files[self.path]
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if self.path in server.stall:
            server.release.wait(5)
            return
        body = data[start:]
        if self.path in server.drop:
            server.drop.discard(self.path)
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def serve():
    servers = []

    def start(files, **kwargs) -> FlakyServer:
        server = FlakyServer(files, **kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.release.set()
        server.shutdown()


def test_a_dropped_connection_is_resumed_where_it_stopped(serve, tmp_path):
    payload = bytes(range(256)) * 4000
    server = serve({"/file.bin": payload}, drop={"/file.bin"})
    fetch(server.url("/file.bin"), tmp_path / "file.bin", retries=2, timeout=5)
    assert (tmp_path / "file.bin").read_bytes() == payload
    assert server.requests == [("/file.bin", None), ("/file.bin", f"bytes={len(payload) // 2}-")]
    assert not (tmp_path / "file.bin.partial").exists()


def test_a_stalled_server_times_out_and_leaves_a_partial_file_to_resume(serve, tmp_path):
    server = serve({"/file.bin": b"x" * 1000}, stall={"/file.bin"})
    with pytest.raises(ConnectionError, match="run the same command again to resume from file.bin.partial"):
        fetch(server.url("/file.bin"), tmp_path / "file.bin", retries=1, timeout=0.5)
    assert len(server.requests) == 2 and not (tmp_path / "file.bin").exists()


def test_a_missing_file_on_the_server_is_one_line(serve, tmp_path):
    server = serve({})
    with pytest.raises(ValueError, match="answered HTTP 404"):
        fetch(server.url("/nothing"), tmp_path / "nothing", retries=3, timeout=5)
    assert len(server.requests) == 1  # a client error is not retried


def zip_of(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_an_archive_is_tested_before_extraction_and_a_damaged_one_is_deleted(tmp_path):
    members = {"images/1.jpg": b"a" * 5000, "images/2.jpg": b"b" * 5000}
    archive = zip_of(tmp_path / "images.zip", members)
    damaged = bytearray(archive.read_bytes())
    damaged[100:110] = b"\0" * 10  # inside the first member's data
    archive.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="images.zip is damaged .* deleted, run the same command again"):
        extract(archive, "images")
    assert not archive.exists() and not (tmp_path / "images").exists()
    assert [path.name for path in tmp_path.iterdir()] == []

    extract(zip_of(tmp_path / "images.zip", members), "images")
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == ["1.jpg", "2.jpg"]


def test_coco_sources_download_resume_and_build(serve, tmp_path, monkeypatch, capsys):
    image = tmp_path / "staging" / "val2014" / "0.jpg"
    save(draw(0), image, "RGB")
    archive = zip_of(tmp_path / "val2014.zip", {"val2014/0.jpg": image.read_bytes()})
    karpathy = json.dumps(
        [{"image": "val2014/0.jpg", "caption": ["a brown dog chases a white cat"], "image_id": "0"}]
    ).encode()
    server = serve({"/coco_karpathy_test.json": karpathy, "/val2014.zip": archive.read_bytes()}, drop={"/val2014.zip"})
    monkeypatch.setattr(build, "KARPATHY_URL", server.url("/{name}"))
    monkeypatch.setattr(build, "COCO_VAL2014_URL", server.url("/val2014.zip"))
    root, out = tmp_path / "sources", tmp_path / "aro"
    assert main(["build", "--download", str(root), "--configs", "coco_order", "--out", str(out)]) == 0
    assert "coco_order/test: 1 items" in capsys.readouterr().out
    assert (root / "coco" / "val2014" / "0.jpg").read_bytes() == image.read_bytes()
    assert [range_ for path, range_ in server.requests if path == "/val2014.zip"][1].startswith("bytes=")


def test_google_drive_goes_through_gdown_with_resume_timeout_and_retries(tmp_path, monkeypatch):
    import gdown

    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        Path(kwargs["output"]).write_text("[]")
        return kwargs["output"]

    monkeypatch.setattr(gdown, "download", fake_download)
    fetch_google_drive("FILE_ID", tmp_path / "visual_genome_relation.json")
    assert calls == [
        {
            "id": "FILE_ID",
            "output": str(tmp_path / "visual_genome_relation.json"),
            "resume": True,
            "timeout": 60,
            "retries": 5,
        }
    ]

    def refusing(**kwargs):
        raise gdown.exceptions.FileURLRetrievalError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(gdown, "download", refusing)
    with pytest.raises(
        ConnectionError, match="Google Drive did not serve other.json .*Too many users.* download it by hand"
    ):
        fetch_google_drive("FILE_ID", tmp_path / "other.json")


def test_a_download_that_keeps_failing_is_one_line_saying_how_to_resume(tmp_path, monkeypatch, capfd):
    import socket

    with socket.socket() as closed:  # a port nothing listens on: every attempt is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(build, "KARPATHY_URL", f"http://127.0.0.1:{port}/{{name}}")
    monkeypatch.setattr(build.time, "sleep", lambda seconds: None)  # the waits between retries
    refused(
        capfd,
        ["build", "--download", str(tmp_path / "sources"), "--configs", "coco_order", "--out", str(tmp_path / "aro")],
        "could not download",
    )
    assert not (tmp_path / "aro").exists()


def test_flickr_cannot_be_downloaded_and_says_how_to_get_it(tmp_path, capsys):
    assert (
        main(
            [
                "build",
                "--download",
                str(tmp_path / "sources"),
                "--configs",
                "flickr30k_order",
                "--out",
                str(tmp_path / "aro"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "request them from the authors" in err
