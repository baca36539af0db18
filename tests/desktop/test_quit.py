"""Quit from the tray menu while Slack holds a request open: the app finishes the send in
flight before it exits; a send that is never answered does not keep the app from exiting
within a few seconds, and the next start sends it again. Nothing is lost."""
import queue
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import APP, PATIENCE, App, app_env, wait_until
from test_app import click, menu_items, tray_item


class FakeSlack:
    """Records each request's body and answers as scripted: "held" answers 200 once
    `release` is set, "hang" never answers, anything after the script answers 200."""

    def __init__(self, script):
        self.script = list(script)
        self.bodies = []
        self.release = threading.Event()
        slack = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                slack.bodies.append(body)
                reply = slack.script.pop(0) if slack.script else "ok"
                if reply == "hang":
                    threading.Event().wait()
                if reply == "held":
                    slack.release.wait()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T/B/QUIT"

    def close(self):
        self.release.set()
        self.server.shutdown()


def lines_of(proc):
    """The app's stdout lines, read in the background."""
    q = queue.Queue()
    threading.Thread(target=lambda: [q.put(line.rstrip("\n")) for line in proc.stdout], daemon=True).start()
    return q


def wait_for_line(q, text):
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            if q.get(timeout=0.5) == text:
                return
        except queue.Empty:
            continue
    raise AssertionError(f"no line {text!r} from the app within {PATIENCE}s")


def outbox(data_dir):
    with sqlite3.connect(data_dir / "runwatch.db") as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall())


def quit_from_tray(bus, tray_host):
    item, props = tray_item(bus, tray_host)
    menu, items = menu_items(bus, item["service"], props.Get("org.kde.StatusNotifierItem", "Menu"))
    click(menu, items["Quit"])


def test_quit_finishes_the_send_in_flight(bus, tray_host, app):
    slack = FakeSlack(["held"])
    try:
        app.call("POST", "/api/v1/notifiers", {"type": "slack", "config": {"url": slack.url}})
        app.event("ERROR", "CUDA out of memory at step 4242")
        wait_until("the send to reach Slack", lambda: slack.bodies)
        out = lines_of(app.proc)
        quit_from_tray(bus, tray_host)
        wait_for_line(out, "Runwatch app — stopping")
        slack.release.set()
        assert app.proc.wait(timeout=PATIENCE) == 0, app.proc.stderr.read()
        assert outbox(app.data_dir) == {"sent": 1}, "the send in flight was recorded"
        assert len(slack.bodies) == 1
    finally:
        slack.close()


def test_quit_with_a_send_never_answered_exits_soon_and_the_next_start_sends_it(bus, tray_host, app):
    slack = FakeSlack(["hang"])
    again = None
    try:
        app.call("POST", "/api/v1/notifiers", {"type": "slack", "config": {"url": slack.url}})
        app.event("ERROR", "GPU fell off the bus")
        wait_until("the send to reach Slack", lambda: slack.bodies)
        asked = time.monotonic()
        quit_from_tray(bus, tray_host)
        assert app.proc.wait(timeout=PATIENCE) == 0, app.proc.stderr.read()
        took = time.monotonic() - asked
        assert took < 8, f"took {took:.1f}s to quit (the send timeout is 10 s)"
        assert outbox(app.data_dir) == {"pending": 1}, "the unanswered delivery stays queued"

        again = subprocess.Popen([str(APP), "--hidden"], env=app_env(app.data_dir), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        App(again, app.data_dir)
        wait_until("the send again", lambda: len(slack.bodies) >= 2)
        assert "GPU fell off the bus" in slack.bodies[1]
        wait_until("the delivery to be recorded", lambda: outbox(app.data_dir) == {"sent": 1})
    finally:
        if again is not None:
            again.kill()
            again.wait()
        slack.close()
