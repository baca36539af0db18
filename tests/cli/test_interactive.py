"""`runwatch notifiers add` and `remove` answered at their prompts in a real
pseudo-terminal (pexpect), as a person at a terminal would."""
import json
import os
import subprocess
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[2]
RUNWATCH = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "runwatch"
DOWN = "\x1b[B"


def spawn(data, *args):
    env = dict(os.environ, TERM="xterm", NO_COLOR="1", RUNWATCH_NOTIFICATIONS="hidden")
    return pexpect.spawn(str(RUNWATCH), ["--data-dir", str(data), *args], env=env, encoding="utf-8", timeout=30,
                         dimensions=(40, 120))


def notifiers(data):
    out = subprocess.run([str(RUNWATCH), "--data-dir", str(data), "--json", "notifiers", "list"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_add_a_slack_notifier_by_answering_prompts(tmp_path):
    child = spawn(tmp_path, "notifiers", "add")
    child.expect("Notifier type")
    child.send("\r")  # slack is first
    child.expect("Slack webhook URL")
    child.send("not-a-url\r")
    child.expect("invalid URL")  # checked before anything is saved
    child.send("\x15")  # clear the line
    child.send("https://hooks.slack.com/services/T0/B0/PROMPTSECRET\r")
    child.expect("Stuck-run message")
    child.send("{run.hsh}\r")
    child.expect("unknown placeholder")
    child.send("\x15")
    child.send("Run {run.hash} needs you\r")
    child.expect("Send notifications from level")
    child.send(DOWN + DOWN + "\r")  # WARNING
    child.expect("Add this notifier")
    child.send("y")
    child.expect("Added slack notifier")
    child.expect("Add another notifier")
    child.send("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    [n] = notifiers(tmp_path)
    assert (n["type"], n["status"], n["min_level"]) == ("slack", "enabled", "WARNING")
    assert n["config"]["message"] == "Run {run.hash} needs you"
    assert "PROMPTSECRET" not in json.dumps(n)


def test_remove_asks_and_no_keeps_it(tmp_path):
    subprocess.run([str(RUNWATCH), "--data-dir", str(tmp_path), "notifiers", "add", "logger"], check=True,
                   capture_output=True)
    nid = notifiers(tmp_path)[0]["id"]
    child = spawn(tmp_path, "notifiers", "remove", nid[:8])
    child.expect("Remove this logger notifier")
    child.send("n")
    child.expect("Nothing removed.")
    child.expect(pexpect.EOF)
    assert len(notifiers(tmp_path)) == 1
    child = spawn(tmp_path, "notifiers", "remove", nid[:8])
    child.expect("Remove this logger notifier")
    child.send("y")
    child.expect("Removed notifier")
    child.expect(pexpect.EOF)
    assert notifiers(tmp_path) == []


def test_start_on_a_terminal_offers_a_notifier_or_the_logger(tmp_path):
    child = spawn(tmp_path, "start", "--http", "127.0.0.1:0")
    child.expect("No notifiers are configured.")
    child.expect("Where should notifications go")
    child.send("\x1b[B\r")  # the logger
    child.expect("using the logger")
    child.expect("Press Ctrl\\+C to exit")
    child.sendintr()
    child.expect("Stopped.")
    child.expect(pexpect.EOF)
    [n] = notifiers(tmp_path)
    assert n["type"] == "logger"
