"""The app following a server (issue 14): a `runwatch start` serves, the app follows it
(added through the app's own API, as Settings → Servers does), and the server's ERROR pops
up on this desktop and turns the badge red, as a local one would."""
import re
import subprocess
import urllib.request

from conftest import TARGET, wait_until
from test_app import tray_item
from test_popups_tray import badge_pixel


def start_server(data_dir):
    proc = subprocess.Popen([str(TARGET / "debug" / "runwatch"), "--data-dir", str(data_dir), "start", "--http", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        m = None
        while m is None:
            line = wait_until("the server's URL", proc.stdout.readline)
            m = re.search(r"Serving the UI at (http://[^/]+)/#token=(\S+)", line)
        return proc, m.group(1), m.group(2)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def test_a_followed_server_s_error_pops_up_and_reddens_the_badge(tmp_path, bus, notifications, tray_host, app):
    _, props = tray_item(bus, tray_host)
    server, url, token = start_server(tmp_path / "server")
    try:
        app.call("POST", "/api/v1/remotes", {"name": "gpu-a", "url": url, "token": token})
        wait_until("connected", lambda: app.call("GET", "/api/v1/remotes")[0]["state"] == "connected")
        req = urllib.request.Request(
            url + "/api/v1/events", method="POST", data=b'{"level": "ERROR", "message": "NCCL timeout on gpu-a"}',
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        calls = wait_until("the popup", notifications.calls)
        assert calls[0]["body"] == "NCCL timeout on gpu-a", calls
        wait_until("the red badge", lambda: badge_pixel(props) == "217,45,32")
        listed = app.call("GET", "/api/v1/notifications")["items"]
        assert [n["origin"] for n in listed] == ["gpu-a"], listed
    finally:
        server.kill()
        server.wait()
