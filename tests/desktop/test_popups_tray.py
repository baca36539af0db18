"""Popups and the tray badge, read back over D-Bus: one critical popup per ERROR with
Open, Acknowledge and Snooze 1 h, none for a WARNING, a burst coalesced, 64 failures of
one array job as one popup (and one Slack message), the popup's "Snooze 1 h" snoozing it,
the tray's "Snooze all for 1 hour", the badge red after an
ERROR and gone after "Acknowledge all" from the tray menu."""
import json
import subprocess
import time

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
    assert call["actions"] == ["default", "Open", "ack", "Acknowledge", "snooze", "Snooze 1 h"]


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


def test_the_popups_snooze_action_snoozes_it_for_an_hour(bus, notifications, tray_host, app):
    tray_item(bus, tray_host)
    nid = app.event("ERROR", "loss is NaN at step 77")
    wait_until("a popup", notifications.calls)
    assert app.call("GET", "/api/v1/notifications/summary")["total"] == 1
    notifications.click(1, "snooze")  # the mock numbers popups from 1
    snoozed = wait_until("the notification to be snoozed",
                         lambda: app.call("GET", "/api/v1/notifications?state=snoozed")["items"])
    assert [n["id"] for n in snoozed] == [nid]
    until = snoozed[0]["snoozed_until"]
    assert 3_500_000 < until - snoozed[0]["created_at"] <= 3_700_000, "an hour"
    assert app.call("GET", "/api/v1/notifications/summary")["total"] == 0
    assert app.call("GET", "/api/v1/notifications")["items"] == []


class FakeSlack:
    """A Slack incoming webhook on loopback that records what it is sent."""

    def __init__(self):
        import http.server
        import threading
        texts = self.texts = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                texts.append(json.loads(body)["text"])
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T/B/ARRAY"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_sixty_four_failures_of_one_array_job_make_one_popup_and_one_slack_message(bus, notifications, tray_host, app):
    tray_item(bus, tray_host)
    slack = FakeSlack()
    app.call("POST", "/api/v1/notifiers", {"type": "slack", "config": {"url": slack.url}})
    app.call("PATCH", "/api/v1/settings", {"group_window_secs": 5})
    for task in range(64):
        app.call("POST", "/api/v1/check-ins", {
            "run_id": f"array-4242-{task}", "failed": True, "exit_code": 1,
            "labels": {"slurm_array_job_id": "4242", "slurm_array_task_id": str(task)}})
    wait_until("all 64 in the inbox", lambda: app.call("GET", "/api/v1/notifications/summary")["error"] == 64)
    calls = wait_until("the group's popup", notifications.calls)
    assert calls[0]["summary"] == "64 new errors"
    assert calls[0]["body"].startswith("64 runs of array 4242 failed: "), calls[0]
    # Proving that nothing else pops up takes real time: a straggler would open a group of
    # its own, shown when that group's window (5 s) closes.
    time.sleep(6)
    assert len(notifications.calls()) == 1, notifications.calls()
    wait_until("the Slack message", lambda: slack.texts)
    assert len(slack.texts) == 1, slack.texts
    assert slack.texts[0].startswith("64 runs of array 4242 failed: "), slack.texts[0]
    slack.close()


def test_snooze_all_from_the_tray_takes_the_badge_away_for_an_hour(bus, notifications, tray_host, app):
    item, props = tray_item(bus, tray_host)
    app.event("ERROR", "boom")
    wait_until("the red badge", lambda: badge_pixel(props) == "217,45,32")
    sni = props.GetAll("org.kde.StatusNotifierItem")
    menu, items = menu_items(bus, item["service"], sni["Menu"])
    click(menu, items["Snooze all for 1 hour"])
    wait_until("the badge to go", lambda: badge_pixel(props) != "217,45,32")
    assert app.call("GET", "/api/v1/notifications/summary")["total"] == 0
    snoozed = app.call("GET", "/api/v1/notifications?state=snoozed")["items"]
    assert [n["title"] for n in snoozed] == ["boom"]
