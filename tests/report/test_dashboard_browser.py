"""The local dashboard, seen in a real headless Chromium (driven by selenium): one command starts
TensorBoard over a sweep's runs, and the hparams view lists every run with its hyperparameters and metrics."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional, Tuple

import pytest
from selenium import webdriver
from selenium.webdriver.common.utils import free_port
from sweep_helpers import REPO, explain

pytestmark = pytest.mark.slow

# Start flags measured to work on these machines (see FIELD-NOTES.md); a fresh --user-data-dir is added.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1600,1000"]
INSTALL_HINT = "apt-get install -y chromium chromium-driver"

# All text of the page, including open shadow roots and same-origin iframes (TensorBoard uses both),
# which selenium's element text does not reach.
DEEP_TEXT_JS = """
const out = [];
const walk = (node) => {
  if (!node) return;
  if (node.nodeType === Node.TEXT_NODE) { out.push(node.textContent); return; }
  if (node.shadowRoot) walk(node.shadowRoot);
  if (node.tagName === 'IFRAME') { try { walk(node.contentDocument); } catch (e) {} }
  if (node.tagName === 'INPUT' && node.value) out.push(node.value);
  for (const child of node.childNodes) walk(child);
};
walk(document);
return out.join(' ');
"""


def find_browser() -> Optional[Tuple[str, str]]:
    """(chromium, chromedriver) from PATH, or None: the Debian packages, never a download by Selenium
    Manager (these machines have no internet)."""
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                   None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_chromium(browser: str, driver: str, profile_dir: Path) -> webdriver.Chrome:
    """Headless Chromium with the measured flags and a fresh profile, so no earlier state leaks in."""
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


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
        session = start_chromium(*browser, tmp_path / "profile")
        session.get(base + "/#hparams")
        text = ""
        deadline = time.time() + 90
        while time.time() < deadline:
            text = session.execute_script(DEEP_TEXT_JS) or ""
            if all(name in text for name in names) and "eval_accuracy" in text:
                break
            time.sleep(1)
        shot = tmp_path / "dashboard.png"
        assert session.save_screenshot(str(shot)), "no screenshot taken"
        print(f"screenshot: {shot}")
        missing = [name for name in names if name not in text]
        assert not missing, f"runs not shown in the hparams view: {missing} (screenshot: {shot})"
        for expected in ("trainer.lr", "trainer.per_device_batch_size", "eval_accuracy", "PARALLEL COORDINATES"):
            assert expected.lower() in text.lower(), f"'{expected}' not shown (screenshot: {shot})"
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        if session is not None:
            session.quit()
        proc.terminate()
        proc.wait(timeout=20)
