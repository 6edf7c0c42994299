"""`hsi fetch` against a local HTTP server (127.0.0.1, random port): no test touches the internet."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hsicli.cli.fetch import fetch as fetch_command
from hsicli.data.datasets import RECEIPT_NAME, DatasetInfo, RemoteFile, get_dataset
from hsicli.data.fetch import MIRROR_ENV, fetch
from hsicli.errors import HsiError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CUBE = bytes(range(256)) * 40  # 10 240 bytes
LABELS = b"ground truth " * 50


class Server:
    """A tiny file server that honours `Range: bytes=N-` (unless told not to) and logs requests."""

    def __init__(self, files: dict[str, bytes], *, ignore_range: bool = False, cut_after: int | None = None):
        self.files = files
        self.ignore_range = ignore_range
        self.cut_after = cut_after  # send only this many body bytes, then hang up
        self.requests: list[tuple[str, str | None]] = []
        self.sent: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a stuck client cannot hold the server

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                range_header = self.headers.get("Range")
                outer.requests.append((self.path, range_header))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if range_header and not outer.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if outer.cut_after is not None:
                    payload = payload[: outer.cut_after]
                self.wfile.write(payload)
                outer.sent[self.path] = outer.sent.get(self.path, 0) + len(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.deadline = threading.Timer(60, self.httpd.shutdown)  # stops by itself whatever happens
        self.thread.start()
        self.deadline.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.deadline.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator:
    servers: list[Server] = []

    def start(files: dict[str, bytes], **options) -> Server:
        servers.append(Server(files, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _no_local_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HSI_DATA_DIR", raising=False)
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def toy(base: str | None, cube_sha: str | None = None, **cube_options) -> DatasetInfo:
    """A two-file scene served at BASE/files/...: the cube has a checksum, the labels none."""
    url = (lambda name: f"{base}/files/{name}") if base else (lambda name: None)
    return DatasetInfo(
        name="toy", title="Toy", sensor="none", shape=(2, 3, 4), class_names=("a", "b"),
        class_colors=("#000000", "#ffffff"), class_ids=None, water_bands=None, water_bands_of=None, aux=(),
        files=(
            RemoteFile("cube.bin", url("cube.bin"), cube_sha or hashlib.sha256(CUBE).hexdigest(),
                       len(CUBE), "cube", **cube_options),
            RemoteFile("labels.bin", url("labels.bin"), None, None, "gt"),
        ),
        aliases=(), citation="", homepage="https://example.org/toy",
    )  # fmt: skip


FILES = {"/files/cube.bin": CUBE, "/files/labels.bin": LABELS}


def test_download_checks_the_checksum_and_writes_a_receipt(serve, tmp_path: Path):
    server = serve(FILES)
    calls: list[tuple[int, int | None]] = []
    messages: list[str] = []
    paths = fetch(toy(server.base), tmp_path, progress=lambda d, t: calls.append((d, t)),
                  on_message=messages.append, timeout=5)  # fmt: skip
    folder = tmp_path / "toy"
    assert paths == {"cube.bin": folder / "cube.bin", "labels.bin": folder / "labels.bin"}
    assert (folder / "cube.bin").read_bytes() == CUBE and (folder / "labels.bin").read_bytes() == LABELS
    assert sorted(p.name for p in folder.iterdir()) == ["cube.bin", RECEIPT_NAME, "labels.bin"]
    assert server.requests == [("/files/cube.bin", None), ("/files/labels.bin", None)]
    assert (len(CUBE), len(CUBE)) in calls and calls[-1] == (len(LABELS), len(LABELS))
    assert any("cube.bin" in m for m in messages)
    receipt = json.loads((folder / RECEIPT_NAME).read_text())
    assert receipt["dataset"] == "toy"
    assert receipt["files"]["labels.bin"]["sha256"] == hashlib.sha256(LABELS).hexdigest()
    assert receipt["files"]["cube.bin"]["checked_against_registry"] is True
    assert receipt["files"]["labels.bin"]["checked_against_registry"] is False

    # Again: everything is on disk, nothing is requested.
    assert fetch(toy(server.base), tmp_path, timeout=5) == paths
    assert len(server.requests) == 2


def test_a_partial_download_resumes_with_a_range_request(serve, tmp_path: Path):
    server = serve(FILES)
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "cube.bin.part").write_bytes(CUBE[:4000])
    paths = fetch(toy(server.base), tmp_path, timeout=5)
    assert ("/files/cube.bin", "bytes=4000-") in server.requests
    assert server.sent["/files/cube.bin"] == len(CUBE) - 4000  # only the rest travelled
    assert paths["cube.bin"].read_bytes() == CUBE
    assert not (folder / "cube.bin.part").exists()


def test_a_server_ignoring_the_range_restarts_cleanly(serve, tmp_path: Path):
    server = serve(FILES, ignore_range=True)
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "cube.bin.part").write_bytes(b"x" * 3000)  # not even a prefix of the file
    paths = fetch(toy(server.base), tmp_path, timeout=5)
    assert ("/files/cube.bin", "bytes=3000-") in server.requests
    assert paths["cube.bin"].read_bytes() == CUBE


def test_a_part_longer_than_the_file_is_restarted(serve, tmp_path: Path):
    server = serve(FILES)
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "cube.bin.part").write_bytes(CUBE + b"junk")  # the server answers 416
    paths = fetch(toy(server.base), tmp_path, timeout=5)
    assert server.requests[:2] == [("/files/cube.bin", f"bytes={len(CUBE) + 4}-"), ("/files/cube.bin", None)]
    assert paths["cube.bin"].read_bytes() == CUBE


def test_a_broken_connection_keeps_the_part_and_the_next_run_resumes(serve, tmp_path: Path):
    flaky = serve(FILES, cut_after=2500)
    with pytest.raises(HsiError, match="closed after 2500 of 10240") as caught:
        fetch(toy(flaky.base), tmp_path, timeout=5)
    assert "resume" in caught.value.hint
    part = tmp_path / "toy" / "cube.bin.part"
    assert part.read_bytes() == CUBE[:2500]
    assert not (tmp_path / "toy" / "cube.bin").exists()

    server = serve(FILES)
    paths = fetch(toy(server.base), tmp_path, timeout=5)
    assert server.requests[0] == ("/files/cube.bin", "bytes=2500-")
    assert paths["cube.bin"].read_bytes() == CUBE


def test_a_checksum_mismatch_is_an_error_and_leaves_no_file(serve, tmp_path: Path):
    server = serve(FILES)
    wrong = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(HsiError, match=f"expected {len(CUBE)} with sha256 {wrong}"):
        fetch(toy(server.base, cube_sha=wrong), tmp_path, timeout=5)
    folder = tmp_path / "toy"
    assert not (folder / "cube.bin").exists() and not (folder / "cube.bin.part").exists()


def test_a_failing_address_falls_back_to_a_mirror(serve, tmp_path: Path):
    server = serve({"/copy/cube.bin": CUBE, "/files/labels.bin": LABELS})
    info = toy(server.base, mirrors=(f"{server.base}/copy/cube.bin",))
    paths = fetch(info, tmp_path, timeout=5)
    assert [path for path, _ in server.requests[:2]] == ["/files/cube.bin", "/copy/cube.bin"]
    assert paths["cube.bin"].read_bytes() == CUBE


def test_files_in_the_data_dir_are_used_without_any_request(serve, tmp_path: Path, monkeypatch):
    server = serve(FILES)
    data = tmp_path / "data" / "toy"
    data.mkdir(parents=True)
    (data / "cube.bin").write_bytes(CUBE)
    (data / "labels.bin").write_bytes(LABELS)
    monkeypatch.setenv("HSI_DATA_DIR", str(tmp_path / "data"))
    paths = fetch(toy(server.base), tmp_path / "dest", timeout=5)
    assert paths == {"cube.bin": data / "cube.bin", "labels.bin": data / "labels.bin"}
    assert server.requests == []
    assert not (tmp_path / "dest").exists()  # nothing copied


def test_a_corrupt_file_in_the_data_dir_is_an_error(serve, tmp_path: Path, monkeypatch):
    server = serve(FILES)
    data = tmp_path / "data"
    data.mkdir()
    (data / "cube.bin").write_bytes(CUBE[:-1] + b"!")
    (data / "labels.bin").write_bytes(LABELS)
    monkeypatch.setenv("HSI_DATA_DIR", str(data))
    with pytest.raises(HsiError, match="sha256"):
        fetch(toy(server.base), tmp_path / "dest", timeout=5)
    assert server.requests == []


def test_the_receipt_guards_files_the_registry_has_no_checksum_for(serve, tmp_path: Path):
    server = serve(FILES)
    paths = fetch(toy(server.base), tmp_path, timeout=5)
    paths["labels.bin"].write_bytes(LABELS.upper())  # same size, other content
    with pytest.raises(HsiError, match="labels.bin"):
        fetch(toy(server.base), tmp_path, timeout=5)


def test_the_mirror_setting_replaces_every_address(serve, tmp_path: Path, monkeypatch):
    server = serve({"/toy/cube.bin": CUBE, "/toy/labels.bin": LABELS})
    monkeypatch.setenv(MIRROR_ENV, server.base + "/")
    paths = fetch(toy(None), tmp_path, timeout=5)  # no canonical address at all
    assert server.requests == [("/toy/cube.bin", None), ("/toy/labels.bin", None)]
    assert paths["labels.bin"].read_bytes() == LABELS


def test_a_file_without_address_names_where_to_get_it(tmp_path: Path):
    with pytest.raises(HsiError, match="no download address for cube.bin, labels.bin") as caught:
        fetch(toy(None), tmp_path, timeout=5)
    assert "https://example.org/toy" in caught.value.hint and str(tmp_path / "toy") in caught.value.hint
    with pytest.raises(HsiError, match="houston.mat"):
        fetch("houston2013", tmp_path, timeout=5)
    assert not (tmp_path / "houston2013").exists()


def test_an_unknown_dataset_is_an_error(tmp_path: Path):
    with pytest.raises(HsiError, match="unknown dataset 'atlantis'"):
        fetch("atlantis", tmp_path)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("fetch")(fetch_command)
    app.command("other")(lambda: None)
    return app


def _shared(relative: str) -> bytes:
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"shared data not found at {SHARED}")
    return path.read_bytes()


def test_cli_prints_the_cube_from_the_data_dir(monkeypatch, tmp_path: Path):
    _shared("salinasA/SalinasA_gt.mat")
    monkeypatch.setenv("HSI_DATA_DIR", str(SHARED))
    result = CliRunner().invoke(_app(), ["fetch", "SalinasA", "--dest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{SHARED / 'salinasA' / 'SalinasA_corrected.mat'}\n"
    result = CliRunner().invoke(_app(), ["fetch", "salinasA", "--dest", str(tmp_path), "--json"])
    record = json.loads(result.stdout)
    assert record["dataset"] == "salinasA"
    assert record["files"]["SalinasA_gt.mat"] == str(SHARED / "salinasA" / "SalinasA_gt.mat")
    assert list(tmp_path.iterdir()) == []


def test_cli_downloads_the_real_salinas_a_from_a_mirror_with_the_registry_checksums(serve, tmp_path: Path):
    files = {f"/salinasA/{name}": _shared(f"salinasA/{name}") for name in ("SalinasA_corrected.mat", "SalinasA_gt.mat")}
    server = serve(files)
    result = CliRunner().invoke(
        _app(), ["fetch", "salinasA", "--dest", str(tmp_path), "--mirror", server.base, "--timeout", "5"]
    )
    assert result.exit_code == 0, result.output
    cube = tmp_path / "salinasA" / "SalinasA_corrected.mat"
    assert result.stdout == f"{cube}\n"
    assert cube.read_bytes() == files["/salinasA/SalinasA_corrected.mat"]
    assert len(server.requests) == 2
    assert get_dataset("salinasA").cube.sha256 == hashlib.sha256(cube.read_bytes()).hexdigest()
