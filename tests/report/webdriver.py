"""Just enough of the W3C WebDriver protocol (spoken to ``chromedriver`` over HTTP) to open a page in
headless Chromium, read its text (through shadow roots and iframes) and take a screenshot."""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

# Start flags measured to work on these machines (see FIELD-NOTES.md).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1600,1000"]
INSTALL_HINT = "apt-get install -y chromium chromium-driver"

# All text of the page, including open shadow roots and same-origin iframes (TensorBoard uses both).
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


def find_browser() -> Optional[tuple]:
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                   None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    def __init__(self, browser: str, driver: str, profile_dir: Path):
        self.port = free_port()
        self.driver = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_driver()
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": browser, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"]}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _wait_driver(self, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/status", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise RuntimeError("chromedriver did not start")

    def _call(self, method: str, path: str, body: Optional[dict] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = json.loads(response.read() or b"{}")
        value = payload.get("value", payload)
        return value

    def _session(self, method: str, path: str, body: Optional[dict] = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    def text(self) -> str:
        return self._session("POST", "/execute/sync", {"script": DEEP_TEXT_JS, "args": []}) or ""

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._session("GET", "/screenshot")))
        return path

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=10)
