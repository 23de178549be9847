"""`ganaug demo` as a server: it hands out the page, onnxruntime-web and the ONNX files of finished
runs, and nothing else. Requests are sent raw with http.client, so `..` and percent-encodings reach
the server exactly as written (a browser or urllib would normalise them first)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import stat
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import REPO, assert_user_error
from demo_runs import CLASSIFIER, GENERATOR, running_demo, trained_out
from ganaug import cli, demo

SECRET = "ganaug-demo-test-secret-7f3a"  # planted in files the server must never hand out
WEB = REPO / "src" / "ganaug" / "web"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_out(tmp_path_factory)


@pytest.fixture(scope="module")
def planted(tmp_path_factory, trained) -> Path:
    """A copy of the trained --out with traps: secrets beside the models, symlinks that lead out
    of --out, an unfinished run, and a second finished classifier."""
    root = tmp_path_factory.mktemp("planted")
    out = root / "out"
    shutil.copytree(trained.out, out, symlinks=True)
    clf = out / "models" / "classifiers"
    (out / "secret.txt").write_text(SECRET)
    (clf / CLASSIFIER / "secret.txt").write_text(SECRET)
    (clf / CLASSIFIER / "model.onnx.bak").write_text(SECRET)
    outside = root / "outside"
    shutil.copytree(clf / CLASSIFIER, outside / "Evil Run 1")
    (outside / "Evil Run 1" / "model.onnx").write_text(SECRET)
    (outside / "secret.onnx").write_text(SECRET)
    # a whole run folder that is a symlink to a folder outside --out
    os.symlink(outside / "Evil Run 1", clf / "CNNOriginalClassifier Run 7")
    # a run folder whose model.onnx is a symlink to a file outside --out
    (clf / "CNNOriginalClassifier Run 8").mkdir()
    shutil.copy(clf / CLASSIFIER / "config.json", clf / "CNNOriginalClassifier Run 8")
    os.symlink(outside / "secret.onnx", clf / "CNNOriginalClassifier Run 8" / "model.onnx")
    # an unfinished run
    shutil.copytree(clf / CLASSIFIER, clf / "CNNOriginalClassifier Run 9")
    (clf / "CNNOriginalClassifier Run 9" / "INCOMPLETE").write_text("not finished\n")
    # a second finished classifier
    shutil.copytree(clf / CLASSIFIER, clf / "CNNOriginalClassifier Run 3",
                    ignore=shutil.ignore_patterns("secret.txt", "*.bak"))
    return out


@pytest.fixture(scope="module")
def server(planted):
    with running_demo(planted) as running:
        yield running


def get(server, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def model_path(kind: str, run: str, name: str) -> str:
    return "/" + quote(f"models/{kind}/{run}/{name}")


# ---------------------------------------------------------------- what it serves

def test_prints_a_loopback_url_and_what_it_found(server, planted):
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    text = "".join(server.lines)
    assert "2 classifier(s) and 1 generator(s)" in text
    assert str(planted.resolve() / "models") in text


def test_index_lists_only_finished_runs_inside_out(server):
    status, headers, body = get(server, "/models.json")
    assert status == 200 and headers["content-type"] == "application/json"
    index = json.loads(body)
    assert [m["name"] for m in index["classifiers"]] == [CLASSIFIER, "CNNOriginalClassifier Run 3"]
    assert [m["name"] for m in index["generators"]] == [GENERATOR]
    gen = index["generators"][0]
    assert gen["z_dim"] == 64 and gen["class_names"][7] == "Sneaker" and gen["architecture"] == "CGAN"
    clf = index["classifiers"][0]
    assert clf["class_names"][0] == "T-shirt/top" and 0 <= clf["test_accuracy"] <= 1
    assert clf["url"] == model_path("classifiers", CLASSIFIER, "model.onnx").lstrip("/")


def test_serves_the_models_byte_for_byte(server, planted):
    index = json.loads(get(server, "/models.json")[2])
    for kind, name in (("classifiers", "model.onnx"), ("generators", "generator.onnx")):
        for entry in index[kind]:
            status, headers, body = get(server, "/" + entry["url"])
            assert status == 200 and headers["content-type"] == "application/octet-stream"
            assert body == (planted / "models" / kind / entry["name"] / name).read_bytes()
            status, _, body = get(server, "/" + entry["config_url"])
            assert status == 200 and json.loads(body)["class_names"] == entry["class_names"]


@pytest.mark.parametrize("path, content_type", [
    ("/", "text/html; charset=utf-8"),
    ("/index.html", "text/html; charset=utf-8"),
    ("/app.js", "text/javascript; charset=utf-8"),
    ("/style.css", "text/css; charset=utf-8"),
    ("/ort/ort.wasm.min.mjs", "text/javascript; charset=utf-8"),
    ("/ort/ort-wasm-simd-threaded.mjs", "text/javascript; charset=utf-8"),
    ("/ort/ort-wasm-simd-threaded.wasm", "application/wasm"),
])
def test_serves_page_and_runtime_with_their_content_types(server, path, content_type):
    status, headers, body = get(server, path)
    assert status == 200 and headers["content-type"] == content_type
    assert int(headers["content-length"]) == len(body) > 0
    assert "script-src 'self'" in headers["content-security-policy"]
    if path.endswith(".wasm"):
        assert body[:4] == b"\0asm"
    head_status, head_headers, head_body = get(server, path, method="HEAD")
    assert head_status == 200 and head_body == b""
    assert head_headers["content-length"] == headers["content-length"]


# ---------------------------------------------------------------- what it must not serve

def traversal_paths(planted: Path) -> list[str]:
    run = quote(f"models/classifiers/{CLASSIFIER}")
    onnx = planted / "models" / "classifiers" / CLASSIFIER / "model.onnx"
    return [
        "/../pyproject.toml", "/../../../../etc/passwd", "/..%2fpyproject.toml",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/%252e%252e/pyproject.toml",
        "/ort/../../pyproject.toml", "/ort/..%2f..%2f..%2fpyproject.toml", "/ort/%2e%2e/package.json",
        "/ort/ort.wasm.min.mjs.map", "/ort/ort.min.mjs", "/ort/", "/ort", "/ort/../index.html",
        "/node_modules/onnxruntime-web/package.json", "/web/package.json", "/package.json",
        "/demo.py", "/__init__.py", "/../demo.py", "/%2e%2e/demo.py",
        "//etc/passwd", "/etc/passwd", "/%2fetc%2fpasswd", "/%2Fetc/passwd", "file:///etc/passwd",
        "/" + str(planted / "secret.txt"), "/" + quote(str(onnx)), "/" + quote(str(onnx.with_name("model.safetensors"))),
        f"/{run}/model.safetensors", f"/{run}/secret.txt", f"/{run}/model.onnx.bak",
        f"/{run}/model.onnx/../secret.txt", f"/{run}/..%2f..%2f..%2fsecret.txt",
        f"/{run}/%2e%2e/%2e%2e/%2e%2e/secret.txt", f"/{run}/../../../results/classifiers/"
        f"{quote(CLASSIFIER)}/metrics.json", f"/{run}/model.onnx%00", f"/{run}/model.onnx%00.png",
        f"/{run}/", f"/{run}", "/models/", "/models/classifiers/", "/secret.txt", "/models/secret.txt",
        "/" + quote(f"models/generators/{GENERATOR}/checkpoint.pt"),
        "/" + quote(f"models/generators/{GENERATOR}/generator.safetensors"),
        "/" + quote(f"results/classifiers/{CLASSIFIER}/metrics.json"),
        "/" + quote("models/classifiers/CNNOriginalClassifier Run 7/model.onnx"),
        "/" + quote("models/classifiers/CNNOriginalClassifier Run 7/config.json"),
        "/" + quote("models/classifiers/CNNOriginalClassifier Run 8/model.onnx"),
        "/" + quote("models/classifiers/CNNOriginalClassifier Run 9/model.onnx"),
        "/models.json/../secret.txt", "/index.html/..", "/%ff%fe", "/index.html?../../secret.txt#x",
    ]


def test_traversal_and_everything_else_is_404(server, planted):
    served = []
    for path in traversal_paths(planted):
        status, _, body = get(server, path)
        if path.startswith("/index.html?"):  # a query string does not change the file
            assert status == 200 and SECRET.encode() not in body
            continue
        if status != 404 or SECRET.encode() in body:
            served.append((path, status, body[:80]))
    assert not served, served


def test_absolute_form_request_target_is_404(server):
    status, _, body = get(server, f"http://127.0.0.1:{server.port}/../secret.txt")
    assert status == 404 and SECRET.encode() not in body


def test_other_methods_are_refused(server):
    status, _, _ = get(server, "/index.html", method="POST")
    assert status == 501


# ---------------------------------------------------------------- user errors

def test_new_runs_appear_without_a_restart(tmp_path, trained):
    out = tmp_path / "out"
    shutil.copytree(trained.models("generators"), out / "models" / "generators" / GENERATOR)
    app = demo.DemoApp(out)
    assert app.counts() == (0, 1)
    shutil.copytree(trained.models("classifiers"), out / "models" / "classifiers" / CLASSIFIER,
                    ignore=shutil.ignore_patterns("*.safetensors"))
    index = json.loads(app.index_json())
    assert [m["name"] for m in index["classifiers"]] == [CLASSIFIER]
    assert app.lookup(model_path("classifiers", CLASSIFIER, "model.onnx").replace("%20", " ")) \
        == out / "models" / "classifiers" / CLASSIFIER / "model.onnx"


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_bad_port_is_a_user_error(capsys, trained, port):
    assert cli.run(["demo", "--out", str(trained.out), "--port", port]) == 2
    assert capsys.readouterr().err.startswith("error: --port must be in 0..65535")


def test_port_not_a_number_is_a_user_error(capsys, trained):
    assert cli.run(["demo", "--out", str(trained.out), "--port", "http"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_port_in_use_is_a_user_error(capsys, trained):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.run(["demo", "--out", str(trained.out), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot listen on 127.0.0.1 port") and "--port" in err


def test_out_without_models_is_a_user_error(tmp_path, capsys):
    (tmp_path / "models" / "classifiers" / "CNNOriginalClassifier Run 1").mkdir(parents=True)
    assert cli.run(["demo", "--out", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no finished runs with ONNX files" in err and "ganaug train-classifier" in err
    assert cli.run(["demo", "--out", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_onnxruntime_web_says_how_to_install_it(tmp_path, monkeypatch, capsys, trained):
    monkeypatch.setattr(demo, "REPO_DIR", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANAUG_ORT_DIST", raising=False)
    assert cli.run(["demo", "--out", str(trained.out), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: onnxruntime-web is not installed")
    assert "make setup" in err and "npm ci --prefix" in err and err.count("\n") == 1


def test_a_real_process_reports_errors_as_one_line(tmp_path):
    from conftest import ganaug

    assert_user_error(ganaug("demo", "--out", tmp_path, "--port", "0"), "no finished runs")


def test_open_starts_the_users_browser(tmp_path, trained):
    """--open goes through the webbrowser module, which honours $BROWSER."""
    seen = tmp_path / "opened.txt"
    fake = tmp_path / "fake-browser"
    fake.write_text(f"#!/bin/sh\necho \"$1\" > '{seen}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with running_demo(trained.out, "--open", BROWSER=f"{fake} %s") as running:
        for _ in range(200):
            if seen.exists() and seen.read_text().strip():
                break
            time.sleep(0.05)
        assert seen.read_text().strip() == running.url


# ---------------------------------------------------------------- the page itself

def test_page_references_nothing_outside_this_server():
    external = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
    for path in WEB.rglob("*"):
        if path.is_file():
            text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
            assert not external.findall(text), (path, external.findall(text))


def test_onnxruntime_web_is_pinned_by_a_lockfile():
    package = json.loads((REPO / "web" / "package.json").read_text())
    lock = json.loads((REPO / "web" / "package-lock.json").read_text())
    pinned = package["dependencies"]["onnxruntime-web"]
    assert re.fullmatch(r"1\.30\.\d+", pinned)
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == pinned
    assert lock["packages"]["node_modules/onnxruntime-web"]["integrity"].startswith("sha512-")
