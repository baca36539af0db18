"""The real `runwatch-app` under Xvfb in a private D-Bus session (run by `make test`):
it registers a tray icon, shows its window, keeps the tray when the window closes, and
quits from the tray menu.

Run inside `xvfb-run -a dbus-run-session -- /usr/bin/python3 -m pytest tests/desktop`.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dbus
import pytest
from Xlib import X, display, protocol

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
APP = TARGET / "debug" / "runwatch-app"
ARTIFACTS = TARGET / "artifacts"
PATIENCE = 60.0  # seconds to wait for the app to do something before failing


def wait_until(what, check, timeout=PATIENCE):
    """Polls `check` until it returns something truthy (an external process's event)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def session(tmp_path):
    assert os.environ.get("DISPLAY"), "run under xvfb-run"
    assert os.environ.get("DBUS_SESSION_BUS_ADDRESS"), "run under dbus-run-session"
    assert APP.exists(), f"{APP} is not built; run `make test`"
    registrations = tmp_path / "sni.jsonl"
    registrations.touch()
    watcher = subprocess.Popen(
        ["/usr/bin/python3", str(Path(__file__).with_name("sni_watcher.py")), str(registrations)],
        stdout=subprocess.PIPE, text=True)
    assert watcher.stdout.readline().strip() == "StatusNotifierWatcher ready"
    env = dict(os.environ, RUNWATCH_HOME=str(tmp_path / "data"),
               # Xvfb has no GPU: let WebKit render in software.
               WEBKIT_DISABLE_DMABUF_RENDERER="1", WEBKIT_DISABLE_COMPOSITING_MODE="1",
               NO_AT_BRIDGE="1")
    app = subprocess.Popen([str(APP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield app, registrations
    if app.poll() is None:
        app.kill()
        app.wait()
    watcher.kill()
    watcher.wait()


def toplevel(d, name):
    """The X window titled `name`, or None."""
    stack = [d.screen().root]
    while stack:
        w = stack.pop()
        try:
            if w.get_wm_name() == name:
                return w
            stack.extend(w.query_tree().children)
        except Exception:  # windows come and go while we walk the tree
            continue
    return None


def is_viewable(w):
    return w.get_attributes().map_state == X.IsViewable


def screenshot(window, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["import", "-window", hex(window.id), str(path)], check=True)
    spread = subprocess.run(["convert", str(path), "-format", "%[fx:standard_deviation]", "info:"],
                            check=True, capture_output=True, text=True).stdout
    return float(spread)


def close_window(d, w):
    """What the window manager sends when the user clicks the close button."""
    protocols = d.intern_atom("WM_PROTOCOLS")
    delete = d.intern_atom("WM_DELETE_WINDOW")
    event = protocol.event.ClientMessage(window=w, client_type=protocols,
                                         data=(32, [delete, X.CurrentTime, 0, 0, 0]))
    w.send_event(event, event_mask=X.NoEventMask)
    d.flush()


def menu_items(bus, service, menu_path):
    """(id, label) of every item in the tray item's dbusmenu."""
    menu = dbus.Interface(bus.get_object(service, menu_path), "com.canonical.dbusmenu")
    _, layout = menu.GetLayout(0, -1, ["label"])
    items, stack = [], [layout]
    while stack:
        item_id, props, children = stack.pop()
        if "label" in props:
            items.append((int(item_id), str(props["label"])))
        stack.extend(children)
    return menu, dict((label, item_id) for item_id, label in items)


def test_app_shows_tray_and_window_and_quits_from_the_tray(session):
    app, registrations = session
    bus = dbus.SessionBus()
    d = display.Display()

    # The tray icon is registered with the StatusNotifierWatcher.
    line = wait_until("the tray item to register", lambda: registrations.read_text().strip())
    item = json.loads(line.splitlines()[0])
    props = dbus.Interface(bus.get_object(item["service"], item["path"]), dbus.PROPERTIES_IFACE)
    sni = props.GetAll("org.kde.StatusNotifierItem")
    assert sni["Status"] == "Active"
    assert str(sni.get("Title", "")) in ("Runwatch", "runwatch-app", "")

    # The window shows the UI page; its screenshot is an artifact.
    window = wait_until("the main window", lambda: (w := toplevel(d, "Runwatch")) and is_viewable(w) and w)
    shot = ARTIFACTS / "desktop-main-window.png"
    wait_until("the page to render", lambda: screenshot(window, shot) > 0.05)
    print(f"screenshot: {shot}")

    # Closing the window hides it; the app and its tray item stay.
    close_window(d, window)
    wait_until("the window to hide", lambda: not is_viewable(window))
    assert app.poll() is None, "closing the window quit the app"
    assert bus.name_has_owner(item["service"]), "the tray item left with the window"

    # The tray menu opens the window again, and Quit exits.
    menu, items = menu_items(bus, item["service"], sni["Menu"])
    assert {"Open Runwatch", "Quit"} <= set(items), items
    menu.Event(items["Open Runwatch"], "clicked", dbus.Int32(0, variant_level=1), dbus.UInt32(0))
    wait_until("the window to show again", lambda: is_viewable(window))
    menu.Event(items["Quit"], "clicked", dbus.Int32(0, variant_level=1), dbus.UInt32(0))
    try:
        code = app.wait(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        pytest.fail("Quit in the tray menu did not exit the app")
    assert code == 0, app.stderr.read()
