import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
# the stage scripts as a user runs them: no byte-code written next to the copies, no progress bars
STAGE_ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1"}

# A miniature embedded city: same generator as the default, a few hundred small images.
TINY_SYNTHETIC = dict(image_size=(48, 64), train_cities=2, train_blocks=3, places_per_city=20, val_blocks=2,
                      test_blocks=2, val_queries=20, test_queries=24,
                      query_aspects=((4, 3), (3, 4), (16, 9), (1, 1)))   # phone photos of several shapes


def eval_set(set_dir, **options):
    """Ground truth of ``<set_dir>/{database,queries}`` as the build_gt stage computes it (vpr.data.layouts)."""
    from vpr.data.layouts import build_eval_index
    return build_eval_index(str(set_dir), **options)[0]


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """Path of a generated miniature dataset root (train/, val/, test/)."""
    from vpr.data.synthetic.generate import SyntheticSpec, generate
    root = tmp_path_factory.mktemp("synth") / "synth"
    generate(root, SyntheticSpec.of(TINY_SYNTHETIC), workers=1)
    return root


def stage_sandbox(box, raw):
    """A copy of the stage scripts and the library in ``box``, with ``raw`` as its params.yaml (a string: the
    file's text as is) and a previous models/best.pt: a stage run there must leave all of it as it was."""
    for d in ("stages", "src"):
        shutil.copytree(ROOT / d, box / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if isinstance(raw, str):
        (box / "params.yaml").write_text(raw)
    else:
        with open(box / "params.yaml", "w") as fh:
            yaml.safe_dump(raw, fh)
    (box / "models").mkdir()
    (box / "models" / "best.pt").write_bytes(b"previous model")
    return box


def files_under(box):
    """Every path under ``box`` with its size (files) or None (folders), byte-code aside."""
    return sorted((str(p.relative_to(box)), p.stat().st_size if p.is_file() else None)
                  for p in box.rglob("*") if "__pycache__" not in p.parts)


def run_unchanged(box, *args, timeout=180):
    """Run ``python <args>`` in ``box``; the completed process. Nothing may change there."""
    before = files_under(box)
    proc = subprocess.run([sys.executable, *args], cwd=box, capture_output=True, text=True, timeout=timeout,
                          env=STAGE_ENV)
    assert files_under(box) == before, "the stage wrote or removed files"
    return proc


def one_line(lines, start):
    """The only line of ``lines`` (stderr of a stage), which starts with ``start``."""
    assert len(lines) == 1 and lines[0].startswith(start), "\n".join(lines)
    return lines[0]


class Server:
    """A tiny file server on 127.0.0.1 whose misbehaviour each test sets: fail the first N requests with
    503, cut the first response after N bytes, ignore Range. Records the Range header of every request."""

    def __init__(self):
        self.files, self.ranges = {}, []
        self.fail_first = 0
        self.truncate_first_at = None
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.ranges.append(self.headers.get("Range"))
                if self.path not in server.files:
                    self.send_error(404)
                    return
                if server.fail_first > 0:
                    server.fail_first -= 1
                    self.send_error(503)
                    return
                body = server.files[self.path]
                start = 0
                rng = self.headers.get("Range")
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.truncate_first_at is not None:
                    payload, server.truncate_first_at = payload[:server.truncate_first_at], None
                    self.close_connection = True
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def cambridge_copy() -> Path | None:
    """The developers' and CI's copy of the Cambridge street-view photos (never on a user's machine, never
    committed): $VPR_CAMBRIDGE_SV, else shared/data/cambridge_streetview beside the repository or above it."""
    env = os.environ.get("VPR_CAMBRIDGE_SV")
    candidates = [Path(env)] if env else [p / "shared" / "data" / "cambridge_streetview" for p in ROOT.parents]
    return next((c for c in candidates if (c / "data" / "coordinates").is_file()), None)


@pytest.fixture(scope="session")
def cambridge_source():
    """The shared Cambridge copy; skipped with a reason where it is absent, a failure under CI=true."""
    found = cambridge_copy()
    if found is None:
        why = ("the Cambridge street-view copy (../shared/data/cambridge_streetview, or $VPR_CAMBRIDGE_SV) is not on "
               "this machine")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI must run the real-photo tests")
        pytest.skip(why)
    return found
