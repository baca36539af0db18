"""Clicking a popup opens that notification's details: the recording notification server
emits `ActionInvoked(id, "default")` and WebDriver (tauri-driver + WebKitWebDriver) reads
the page the app's window shows."""
import base64
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import APP, ARTIFACTS, app_env, wait_until

TAURI_DRIVER = shutil.which("tauri-driver") or os.path.expanduser("~/.cargo/bin/tauri-driver")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None

    def call(self, method, path, body=None, timeout=60):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return json.loads(res.read())["value"]

    def start(self, application, args):
        caps = {"capabilities": {"alwaysMatch": {"tauri:options": {"application": str(application), "args": args}}}}
        self.session = self.call("POST", "/session", caps, timeout=120)["sessionId"]

    def script(self, js):
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": js, "args": []})

    def screenshot(self, path):
        """The window through WebDriver; if WebKitWebDriver fails at that (it sometimes
        drops the connection under load), the X screen instead: the page was already read."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.write_bytes(base64.b64decode(self.call("GET", f"/session/{self.session}/screenshot")))
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            print(f"WebDriver screenshot failed ({e}); taking the X screen")
            subprocess.run(["/usr/bin/import", "-window", "root", str(path)], check=True)


@pytest.fixture
def driver(tmp_path, bus, notifications):
    if not os.path.exists(TAURI_DRIVER):
        pytest.fail("tauri-driver is not installed; `make test` installs it (cargo install tauri-driver)")
    port, native = free_port(), free_port()
    proc = subprocess.Popen([TAURI_DRIVER, "--port", str(port), "--native-port", str(native)],
                            env=app_env(tmp_path / "data"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wd = WebDriver(port)

    def up():
        try:
            wd.call("GET", "/status", timeout=2)
            return True
        except (urllib.error.URLError, ConnectionError, OSError):
            return False
    wait_until("tauri-driver", up)
    yield wd, tmp_path / "data"
    if wd.session:
        try:
            wd.call("DELETE", f"/session/{wd.session}")
        except Exception:
            pass
    proc.terminate()
    proc.wait(timeout=30)


def test_clicking_a_popup_opens_its_details(driver, notifications):
    wd, data = driver
    api_port = free_port()
    wd.start(APP, ["--http", f"127.0.0.1:{api_port}"])
    token = wait_until("the API token", lambda: (data / "api-token").exists() and (data / "api-token").read_text().strip())
    req = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/v1/events", method="POST",
                                 data=json.dumps({"level": "ERROR", "message": "CUDA out of memory at step 4242"}).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    notification_id = json.loads(urllib.request.urlopen(req, timeout=10).read())["id"]
    wait_until("the popup", notifications.calls)
    notifications.click(1, "default")  # the mock numbers popups from 1
    wait_until("the details of that notification",
               lambda: wd.script("return location.hash") == f"#/notifications/{notification_id}")
    text = wait_until("the details to render", lambda: (t := wd.script("return document.body.innerText"))
                      and "CUDA out of memory at step 4242" in t and notification_id[:8] in t and t)
    assert "ERROR" in text
    wd.screenshot(ARTIFACTS / "desktop-popup-click-details.png")
