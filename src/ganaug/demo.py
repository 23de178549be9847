"""`ganaug demo`: serve the in-browser demo (ganaug/web/) and the ONNX models of the runs under --out.

The browser runs the models itself with onnxruntime-web (WebAssembly, one thread), so the server
only hands out files. It serves an explicit allow-list and nothing else:

  /                 and the files of ganaug/web/        the page
  /ort/<file>       three files of onnxruntime-web's dist/ (installed by `npm ci --prefix web`)
  /models.json      the index of finished runs that have an ONNX file (names, classes, z_dim, URLs)
  /models/<kind>/<run>/{model,generator}.onnx and config.json   of those runs

A request path is percent-decoded once and looked up as an exact key, so `..`, encoded slashes,
absolute paths and any other file under --out are simply not found (404). Files whose real path
(symlinks followed) leaves their folder are never listed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

from .errors import UserError
from .runs import INCOMPLETE_MARKER, RUN_PATTERN

WEB_DIR = Path(__file__).resolve().parent / "web"
REPO_DIR = Path(__file__).resolve().parents[2]  # a source checkout (editable install)
ORT_PACKAGE = Path("node_modules") / "onnxruntime-web"
# What onnxruntime-web 1.30 needs for the plain WebAssembly backend: the JS API, the Emscripten
# loader and the SIMD build (it is used single-threaded, so no cross-origin isolation is needed).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_FILES = {"classifiers": "model.onnx", "generators": "generator.onnx"}
DEFAULT_PORT = 8000
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png",
    ".wasm": "application/wasm", ".onnx": "application/octet-stream",
}
# Everything comes from this server; WebAssembly compilation is the one extra the page needs.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
       "img-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def ort_dist_candidates() -> list[Path]:
    found = [Path(os.environ["GANAUG_ORT_DIST"])] if os.environ.get("GANAUG_ORT_DIST") else []
    return found + [REPO_DIR / "web" / ORT_PACKAGE / "dist", Path.cwd() / "web" / ORT_PACKAGE / "dist"]


def find_ort_dist() -> Path:
    candidates = ort_dist_candidates()
    for dist in candidates:
        if all((dist / name).is_file() for name in ORT_FILES):
            return dist.resolve()
    raise UserError(f"onnxruntime-web is not installed (looked for {ORT_FILES[0]} in "
                    f"{', '.join(map(str, dict.fromkeys(candidates)))}); run `make setup` or "
                    f"`npm ci --prefix {REPO_DIR / 'web'}` (or set GANAUG_ORT_DIST to its dist/ folder)")


def _inside(path: Path, root: Path) -> bool:
    """True if ``path`` is a regular file whose real location (symlinks followed) is under ``root``."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real.is_file() and real.is_relative_to(root)


def _run_order(folder: Path) -> tuple[str, int]:
    match = RUN_PATTERN.match(folder.name)
    return (match["label"], int(match["index"])) if match else (folder.name, 0)


def _class_names(config: dict) -> list[str]:
    names = config.get("class_names")
    count = int(config.get("num_classes", len(names) if isinstance(names, list) else 0))
    if isinstance(names, list) and len(names) == count and all(isinstance(n, str) for n in names):
        return names
    return [f"class {i}" for i in range(count)]


def scan_models(out: Path) -> tuple[dict[str, Path], dict]:
    """URL path -> file for every finished run with an ONNX file, and the index the page reads."""
    routes: dict[str, Path] = {}
    index: dict[str, list] = {"classifiers": [], "generators": []}
    root = out / "models"
    try:
        real_root = root.resolve(strict=True)
    except (OSError, RuntimeError):
        return routes, index
    for kind, filename in MODEL_FILES.items():
        folder = root / kind
        runs = sorted((p for p in folder.iterdir() if RUN_PATTERN.match(p.name)), key=_run_order) \
            if folder.is_dir() else []
        for run in runs:
            onnx_file, config_file = run / filename, run / "config.json"
            if (run / INCOMPLETE_MARKER).exists() or not (
                    _inside(onnx_file, real_root) and _inside(config_file, real_root)):
                continue
            try:
                config = json.loads(config_file.read_text())
                entry = index_entry(kind, run.name, config)
            except (OSError, ValueError, TypeError, KeyError):
                continue  # a damaged config.json: leave the run out rather than break the page
            base = f"/models/{kind}/{run.name}/"
            routes[base + filename] = onnx_file
            routes[base + "config.json"] = config_file
            entry["url"] = quote(base.lstrip("/") + filename)
            entry["config_url"] = quote(base.lstrip("/") + "config.json")
            index[kind].append(entry)
    return routes, index


def index_entry(kind: str, name: str, config: dict) -> dict:
    entry = {"name": name, "kind": kind[:-1], "arch": str(config.get("arch", "")),
             "architecture": str(config.get("architecture", "")),
             "dataset": str(config.get("dataset", "")), "class_names": _class_names(config)}
    if kind == "generators":
        entry["z_dim"] = int(config["z_dim"])
        if entry["z_dim"] < 1:
            raise ValueError("z_dim")
    elif isinstance(config.get("test_accuracy"), (int, float)):
        entry["test_accuracy"] = float(config["test_accuracy"])
    return entry


class DemoApp:
    """What the server may hand out. Model routes are rescanned, so new runs appear on reload."""

    def __init__(self, out: str | Path, ort_dist: Path | None = None):
        self.out = Path(out)
        if not self.out.is_dir():
            raise UserError(f"--out {self.out} does not exist; pass the folder that holds models/ "
                            "and results/")
        ort_dist = ort_dist or find_ort_dist()
        self.static = self._web_routes()
        self.static.update({f"/ort/{name}": ort_dist / name for name in ORT_FILES})
        self.models, self.index = scan_models(self.out)
        self._lock = threading.Lock()

    @staticmethod
    def _web_routes() -> dict[str, Path]:
        real_web = WEB_DIR.resolve()
        routes = {"/" + p.relative_to(WEB_DIR).as_posix(): p for p in sorted(WEB_DIR.rglob("*"))
                  if p.suffix in CONTENT_TYPES and not any(part.startswith((".", "_")) or
                                                           part == "node_modules"
                                                           for part in p.relative_to(WEB_DIR).parts)
                  and _inside(p, real_web)}
        if "/index.html" not in routes:
            raise UserError(f"the demo page is missing from {WEB_DIR}; reinstall ganaug")
        routes["/"] = routes["/index.html"]
        return routes

    def rescan(self) -> None:
        models, index = scan_models(self.out)
        with self._lock:
            self.models, self.index = models, index

    def counts(self) -> tuple[int, int]:
        return len(self.index["classifiers"]), len(self.index["generators"])

    def index_json(self) -> bytes:
        self.rescan()
        return json.dumps(self.index).encode()

    def lookup(self, path: str) -> Path | None:
        if path in self.static:
            return self.static[path]
        if path.startswith("/models/"):
            if path not in self.models:
                self.rescan()
            return self.models.get(path)
        return None


class DemoHandler(BaseHTTPRequestHandler):
    server_version = "ganaug-demo"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet: the page's own status line says what happened

    def _respond(self, send_body: bool) -> None:
        app: DemoApp = self.server.app  # type: ignore[attr-defined]
        raw = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            path = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return self._not_found(send_body)
        if path == "/models.json":
            return self._send(app.index_json(), CONTENT_TYPES[".json"], send_body)
        file = app.lookup(path)
        if file is None:
            return self._not_found(send_body)
        try:
            handle = open(file, "rb")
        except OSError:
            return self._not_found(send_body)
        with handle:
            size = os.fstat(handle.fileno()).st_size
            self._headers(200, CONTENT_TYPES[file.suffix], size)
            if send_body:
                try:
                    shutil.copyfileobj(handle, self.wfile)
                except (BrokenPipeError, ConnectionResetError):
                    pass

    def _send(self, body: bytes, content_type: str, send_body: bool, status: int = 200) -> None:
        self._headers(status, content_type, len(body))
        if send_body:
            self.wfile.write(body)

    def _headers(self, status: int, content_type: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()

    def _not_found(self, send_body: bool) -> None:
        self._send(b"not found\n", "text/plain; charset=utf-8", send_body, status=404)


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: DemoApp):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        super().__init__(address, DemoHandler)


def check_port(port: int) -> int:
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535 (0 picks a free port); got {port}")
    return port


def make_server(out: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> DemoServer:
    check_port(port)
    app = DemoApp(out)
    classifiers, generators = app.counts()
    if classifiers + generators == 0:
        raise UserError(f"no finished runs with ONNX files under {Path(out) / 'models'}; train one "
                        f"first (e.g. `ganaug train-classifier --arch cnn --out {out}`) or pass the "
                        "--out that holds them")
    try:
        return DemoServer((host, port), app)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(f"cannot listen on {host} port {port} ({reason}); pass another --port "
                        "(0 picks a free one) or --host") from None


def server_url(server: DemoServer, host: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{server.server_address[1]}/"


def serve(out: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          open_browser: bool = False) -> None:
    server = make_server(out, host, port)
    url = server_url(server, host)
    classifiers, generators = server.app.counts()
    print(f"ganaug demo: {classifiers} classifier(s) and {generators} generator(s) from "
          f"{Path(out).resolve() / 'models'}", flush=True)
    print(f"open {url}  (Ctrl+C stops the server)", flush=True)
    if open_browser:
        def launch() -> None:
            if not webbrowser.open(url):
                print(f"no web browser found here; open {url} yourself", flush=True)

        threading.Thread(target=launch, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
