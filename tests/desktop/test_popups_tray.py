"""Popups and the tray badge, read back over D-Bus: one critical popup per ERROR with
Open and Acknowledge, none for a WARNING, a burst coalesced, the badge red after an
ERROR and gone after "Acknowledge all" from the tray menu."""
import subprocess

from conftest import ARTIFACTS, wait_until
from test_app import click, menu_items, tray_item


def badge_icon(props):
    """The tray icon the item carries: (width, height, RGBA bytes) from its IconPixmap
    (ARGB32 in network byte order), the largest if several."""
    w, h, argb = max(props.Get("org.kde.StatusNotifierItem", "IconPixmap"), key=lambda i: int(i[0]))
    argb = bytes(argb)
    rgba = bytearray(len(argb))
    rgba[0::4], rgba[1::4], rgba[2::4], rgba[3::4] = argb[1::4], argb[2::4], argb[3::4], argb[0::4]
    return int(w), int(h), bytes(rgba)


def badge_pixel(props):
    """The tray icon's pixel where the badge is drawn, as "R,G,B"."""
    w, _, rgba = badge_icon(props)
    i = (55 * w + 48) * 4
    return ",".join(str(c) for c in rgba[i:i + 3])


def test_an_error_pops_up_once_a_warning_does_not(bus, notifications, tray_host, app):
    tray_item(bus, tray_host)
    app.event("WARNING", "disk almost full")
    app.event("ERROR", "loss is NaN at step 1200")
    calls = wait_until("a popup", notifications.calls)
    # The WARNING was stored first: had it popped up, it would be here before the ERROR.
    assert len(calls) == 1, calls
    call = calls[0]
    assert call["app"] == "Runwatch"
    assert call["summary"] == "Runwatch: ERROR"
    assert call["body"] == "loss is NaN at step 1200"
    assert call["urgency"] == 2, "critical urgency"
    assert call["actions"] == ["default", "Open", "ack", "Acknowledge"]


def test_a_burst_of_ten_errors_makes_at_most_two_popups(bus, notifications, tray_host, app):
    tray_item(bus, tray_host)
    app.call("POST", "/api/v1/events/batch", {"events": [{"level": "ERROR", "message": f"e{i}"} for i in range(10)]})
    calls = wait_until("the coalesced popup", lambda: (c := notifications.calls()) and len(c) >= 2 and c, timeout=30)
    assert len(calls) == 2, calls
    assert calls[0]["body"] == "e0"
    assert calls[1]["summary"] == "9 new errors"


def test_badge_turns_red_on_an_error_and_goes_after_acknowledge_all(bus, notifications, tray_host, app):
    item, props = tray_item(bus, tray_host)
    before = badge_pixel(props)
    assert before != "217,45,32", before
    app.event("ERROR", "boom")
    wait_until("the red badge", lambda: badge_pixel(props) == "217,45,32")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    w, h, rgba = badge_icon(props)
    subprocess.run(["/usr/bin/convert", "-size", f"{w}x{h}", "-depth", "8", "rgba:-", "-scale", "400%",
                    str(ARTIFACTS / "tray-badge-error.png")], input=rgba, check=True)
    sni = props.GetAll("org.kde.StatusNotifierItem")
    menu, items = menu_items(bus, item["service"], sni["Menu"])
    click(menu, items["Acknowledge all"])
    wait_until("the badge to go", lambda: badge_pixel(props) != "217,45,32")
    assert app.call("GET", "/api/v1/notifications/summary")["total"] == 0
