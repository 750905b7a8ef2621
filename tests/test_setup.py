"""``scripts/setup.sh``: where the CPU torch comes from, the final check's error, and the fast idempotent path."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from helpers import ROOT

SETUP = ROOT / "scripts" / "setup.sh"


def _bash(script: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``script`` in bash after sourcing setup.sh (which then defines its functions and runs nothing)."""
    return subprocess.run(["bash", "-c", f'source "{SETUP}"; {script}'], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_torch_index_used_when_it_answers(tmp_path):
    (tmp_path / "whl" / "torch").mkdir(parents=True)
    (tmp_path / "whl" / "torch" / "index.html").write_text("<html></html>")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/whl"
        result = _bash("torch_index", TORCH_INDEX=url)
    finally:
        server.shutdown()
    assert result.returncode == 0 and result.stdout.strip() == url


def test_unreachable_torch_index_falls_back_quickly():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = _bash("torch_index", TORCH_INDEX=f"http://127.0.0.1:{port}/whl")
    assert result.returncode == 0 and result.stdout == ""
    assert "not reachable" in result.stderr and "pip's configured sources" in result.stderr
    assert time.monotonic() - start < 30


def test_final_check_shows_its_error():
    """A Python without torch fails the check, and the reason reaches the user (it was sent to /dev/null)."""
    result = _bash(f'final_check "{sys.base_prefix}/bin/python3"')
    assert result.returncode != 0
    assert "No module named 'torch'" in result.stderr


def test_unchanged_setup_does_nothing(tmp_path):
    """With the stamp of the current pyproject.toml and setup.sh, a run exits at once without touching the venv."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SETUP, tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    want = subprocess.run("sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16", shell=True,
                          cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / ".r1-aqa-setup").write_text(want + "\n")
    result = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "VENV": "venv"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "venv").iterdir()) == [".r1-aqa-setup"]
    assert result.stdout.splitlines()[-1].startswith("r1-aqa setup: done (venv). Next: venv/bin/r1-aqa demo")
