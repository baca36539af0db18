"""Shared fixtures for the desktop tests: a private session's tray host (a
StatusNotifierWatcher), a recording notification server (python3-dbusmock's
notification_daemon template), and the real `runwatch-app`.

Run inside `xvfb-run -a dbus-run-session -- /usr/bin/python3 -m pytest tests/desktop`.
"""
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import dbus
import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
APP = TARGET / "debug" / "runwatch-app"
ARTIFACTS = TARGET / "artifacts"
PATIENCE = 60.0  # seconds to wait for the app to do something before failing


def wait_until(what, check, timeout=PATIENCE):
    """Polls `check` until it returns something truthy (another process's doing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def app_env(data_dir):
    return dict(os.environ, RUNWATCH_HOME=str(data_dir),
                # Xvfb has no GPU: let WebKit render in software; no accessibility bus.
                WEBKIT_DISABLE_DMABUF_RENDERER="1", WEBKIT_DISABLE_COMPOSITING_MODE="1", NO_AT_BRIDGE="1")


@pytest.fixture
def bus():
    assert os.environ.get("DISPLAY"), "run under xvfb-run"
    assert os.environ.get("DBUS_SESSION_BUS_ADDRESS"), "run under dbus-run-session"
    return dbus.SessionBus()


@pytest.fixture
def tray_host(tmp_path, bus):
    """A StatusNotifierWatcher; yields the file it logs registrations to."""
    log = tmp_path / "sni.jsonl"
    log.touch()
    proc = subprocess.Popen(["/usr/bin/python3", str(Path(__file__).with_name("sni_watcher.py")), str(log)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "StatusNotifierWatcher ready"
    yield log
    proc.kill()
    proc.wait()


class Notifications:
    """The recording notification server."""

    def __init__(self, bus):
        self.obj = bus.get_object("org.freedesktop.Notifications", "/org/freedesktop/Notifications")
        self.mock = dbus.Interface(self.obj, "org.freedesktop.DBus.Mock")

    def calls(self):
        """Every Notify call: dicts of its arguments."""
        out = []
        for _, args in self.mock.GetMethodCalls("Notify"):
            app, replaces, icon, summary, body, actions, hints, timeout = args
            out.append({"app": str(app), "summary": str(summary), "body": str(body),
                        "actions": [str(a) for a in actions],
                        "urgency": int(hints["urgency"]) if "urgency" in hints else None})
        return out

    def click(self, notification_id, action="default"):
        self.mock.EmitSignal("org.freedesktop.Notifications", "ActionInvoked", "us",
                             [dbus.UInt32(notification_id), action])


@pytest.fixture
def notifications(bus):
    proc = subprocess.Popen(["/usr/bin/python3", "-m", "dbusmock", "--session", "--template", "notification_daemon"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until("the notification server", lambda: bus.name_has_owner("org.freedesktop.Notifications"))
    yield Notifications(bus)
    proc.kill()
    proc.wait()


class App:
    def __init__(self, proc, data_dir):
        self.proc = proc
        self.data_dir = data_dir
        line = wait_until("the app's API address", proc.stdout.readline)
        self.api = line.split("API at ")[1].strip()
        self.token = (data_dir / "api-token").read_text().strip()

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.api + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.loads(res.read() or b"null")

    def event(self, level, message):
        return self.call("POST", "/api/v1/events", {"level": level, "message": message})["id"]


@pytest.fixture
def app(tmp_path, bus):
    assert APP.exists(), f"{APP} is not built; run `make test`"
    data = tmp_path / "data"
    proc = subprocess.Popen([str(APP)], env=app_env(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield App(proc, data)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
