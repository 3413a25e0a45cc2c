"""The local dashboard, seen in a real headless Chromium: one command starts TensorBoard over a
sweep's runs, and the hparams view lists every run with its hyperparameters and metrics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from sweep_helpers import REPO, explain
from webdriver import INSTALL_HINT, Browser, find_browser, free_port

pytestmark = pytest.mark.slow


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"dashboard did not answer at {url}")


def test_dashboard_shows_the_sweep_runs_in_chromium(grid, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip(f"chromium and chromedriver not found on PATH (install them: {INSTALL_HINT})")
    sweep_dir, result = grid
    assert result.returncode == 0, explain(result)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "dashboard.py"), str(sweep_dir.parent),
                             "--port", str(port), "--export-dir", str(tmp_path / "events"), "--reload", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    session = None
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/data/runs", proc)
        with urllib.request.urlopen(base + "/data/runs") as response:
            runs = json.loads(response.read())
        names = [f"multirun/grid/{n}" for n in range(4)]
        assert sorted(runs) == names  # one TensorBoard run per job, named by its folder
        session = Browser(*browser, tmp_path / "profile")
        session.open(base + "/#hparams")
        text = ""
        deadline = time.time() + 90
        while time.time() < deadline:
            text = session.text()
            if all(name in text for name in names) and "eval_accuracy" in text:
                break
            time.sleep(1)
        shot = session.screenshot(tmp_path / "dashboard.png")
        print(f"screenshot: {shot}")
        missing = [name for name in names if name not in text]
        assert not missing, f"runs not shown in the hparams view: {missing} (screenshot: {shot})"
        for expected in ("trainer.lr", "trainer.per_device_batch_size", "eval_accuracy", "PARALLEL COORDINATES"):
            assert expected.lower() in text.lower(), f"'{expected}' not shown (screenshot: {shot})"
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        if session is not None:
            session.close()
        proc.terminate()
        proc.wait(timeout=20)
