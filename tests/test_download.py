"""`ganaug data check` and `ganaug data download`, against the real files and a loopback server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import pytest

from conftest import DATA_DIR, FASHION, assert_user_error, ganaug
from ganaug import cli

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- data check

def test_check_prints_per_class_counts_of_the_vendored_data():
    proc = ganaug("data", "check", "--data-dir", DATA_DIR)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"fashion-mnist train: 60000 images, per class {[6000] * 10}" in lines
    assert f"fashion-mnist test: 10000 images, per class {[1000] * 10}" in lines
    mnist_train = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    mnist_test = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert f"mnist train: 60000 images, per class {mnist_train}" in lines
    assert f"mnist test: 10000 images, per class {mnist_test}" in lines
    assert proc.stderr == ""


@pytest.fixture
def fashion_copy(tmp_path) -> Path:
    """A private data folder with a copy of the Fashion-MNIST files."""
    shutil.copytree(FASHION, tmp_path / "data" / "fashion-mnist")
    return tmp_path / "data"


def test_check_rejects_one_flipped_byte(fashion_copy):
    path = fashion_copy / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    proc = ganaug("data", "check", "--dataset", "fashion-mnist", "--data-dir", fashion_copy)
    assert_user_error(proc, "t10k-images-idx3-ubyte.gz", "SHA-256", "ganaug data download")
    assert proc.stdout == ""


def test_check_names_a_missing_file_and_a_missing_dataset(fashion_copy, capsys):
    (fashion_copy / "fashion-mnist" / "train-labels-idx1-ubyte.gz").unlink()
    assert cli.run(["data", "check", "--dataset", "fashion-mnist", "--data-dir", str(fashion_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train-labels-idx1-ubyte.gz: missing" in err
    # without --dataset every data set is checked, and mnist is absent from this folder
    shutil.copy(FASHION / "train-labels-idx1-ubyte.gz", fashion_copy / "fashion-mnist")
    assert cli.run(["data", "check", "--data-dir", str(fashion_copy)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "mnist" in err and "missing" in err


# ---------------------------------------------------------------- download from a loopback mirror

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class TruncatingHandler(QuietHandler):
    """Announces the full length, sends half of it, and hangs up (a dropped connection)."""

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self.send_error(404)
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:len(data) // 2])
        self.close_connection = True


@pytest.fixture
def serve():
    """serve(folder, handler) -> base URL of a loopback HTTP server for ``folder``."""
    servers = []

    def start(folder: Path, handler=QuietHandler) -> str:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_fetches_and_verifies_then_reports_present(tmp_path, serve):
    base = serve(DATA_DIR)
    target = tmp_path / "data"
    args = ("data", "download", "--dataset", "fashion-mnist", "--data-dir", target,
            "--mirror", base + "fashion-mnist/")
    proc = ganaug(*args, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in FILES:
        assert sha256(target / "fashion-mnist" / name) == sha256(FASHION / name)
        assert f"{name}: downloaded from {base}fashion-mnist/{name} and verified" in proc.stdout
    assert leftovers(target / "fashion-mnist") == sorted(FILES)  # no temporary files

    again = ganaug(*args, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already present and verified") == 4
    assert "downloaded" not in again.stdout


def test_download_repairs_a_damaged_file(fashion_copy, serve, capsys):
    path = fashion_copy / "fashion-mnist" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-1])
    base = serve(DATA_DIR) + "fashion-mnist"  # no trailing slash: still a base URL
    assert cli.run(["data", "download", "--dataset", "fashion-mnist", "--data-dir",
                    str(fashion_copy), "--mirror", base]) == 0
    out = capsys.readouterr().out
    assert "train-labels-idx1-ubyte.gz: downloaded" in out and out.count("already present") == 3
    assert sha256(path) == sha256(FASHION / path.name)


def _damaged_mirror(tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror" / "fashion-mnist"
    mirror.mkdir(parents=True)
    data = bytearray((FASHION / "train-labels-idx1-ubyte.gz").read_bytes())
    data[100] ^= 0x01
    for name in FILES:  # every file has the right size but the wrong content
        (mirror / name).write_bytes(bytes(data))
    return mirror.parent


@pytest.mark.parametrize("case", ["damaged", "truncated transfer", "not found"])
def test_failed_download_is_an_error_and_leaves_nothing(case, tmp_path, serve, capsys):
    if case == "damaged":
        base = serve(_damaged_mirror(tmp_path))
    elif case == "truncated transfer":
        base = serve(DATA_DIR, TruncatingHandler)
    else:
        (tmp_path / "empty").mkdir()
        base = serve(tmp_path / "empty")
    target = tmp_path / "data"
    status = cli.run(["data", "download", "--dataset", "fashion-mnist", "--data-dir", str(target),
                      "--mirror", base + "fashion-mnist/"])
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: could not download "
                                                         "train-images-idx3-ubyte.gz")
    assert leftovers(target / "fashion-mnist") == []  # neither a file nor a temporary file


def test_damaged_mirror_through_the_real_cli(tmp_path, serve):
    base = serve(_damaged_mirror(tmp_path))
    proc = ganaug("data", "download", "--dataset", "fashion-mnist", "--data-dir", tmp_path / "data",
                  "--mirror", base + "fashion-mnist/", timeout=120)
    assert_user_error(proc, "checksum mismatch")
    assert leftovers(tmp_path / "data" / "fashion-mnist") == []


def test_unreachable_mirror_is_an_error(tmp_path, capsys):
    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status = cli.run(["data", "download", "--dataset", "fashion-mnist", "--data-dir",
                      str(tmp_path), "--mirror", f"http://127.0.0.1:{port}/fashion-mnist/"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("error: could not download")
    assert leftovers(tmp_path / "fashion-mnist") == []


@pytest.mark.parametrize("mirror, fragment", [
    ("ftp://127.0.0.1/fashion-mnist/", "http(s) URL"),
    ("http://127.0.0.1:notaport/fashion-mnist/", "could not download"),
])
def test_bad_mirror_url_is_an_error(tmp_path, capsys, mirror, fragment):
    status = cli.run(["data", "download", "--dataset", "fashion-mnist", "--data-dir",
                      str(tmp_path), "--mirror", mirror])
    err = capsys.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1 and fragment in err


def test_data_dir_that_is_a_file_is_an_error(tmp_path, serve, capsys):
    (tmp_path / "data").write_text("not a folder")
    status = cli.run(["data", "download", "--dataset", "fashion-mnist", "--data-dir",
                      str(tmp_path / "data"), "--mirror", serve(DATA_DIR) + "fashion-mnist/"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert (tmp_path / "data").read_text() == "not a folder"
