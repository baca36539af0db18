//! `runwatch --help` for the top level and every subcommand, compared with the snapshots
//! in `tests/tests/snapshots/help/`, and `runwatch completions`.
//!
//! After changing the command line on purpose, rewrite the snapshots and review the diff:
//!
//! ```sh
//! cargo build -p runwatch-cli
//! RUNWATCH_BLESS=1 cargo nextest run -p runwatch-tests -E 'test(help_matches_the_snapshots)'
//! git diff tests/tests/snapshots/
//! ```

use std::path::PathBuf;
use std::process::Command;

use runwatch_tests::{binary, cli_env, run_cli, runwatch, CliOutput};

/// Every command, as the words that name it.
const COMMANDS: &[&[&str]] = &[
    &[],
    &["start"],
    &["notifiers"],
    &["notifiers", "add"],
    &["notifiers", "add", "slack"],
    &["notifiers", "add", "workplace"],
    &["notifiers", "add", "logger"],
    &["notifiers", "add", "webhook"],
    &["notifiers", "list"],
    &["notifiers", "remove"],
    &["notifiers", "test"],
    &["notifiers", "set"],
    &["notifiers", "set-log-level"],
    &["notifiers", "import-aim"],
    &["notifications"],
    &["notifications", "list"],
    &["notifications", "show"],
    &["notifications", "ack"],
    &["notifications", "snooze"],
    &["notifications", "unsnooze"],
    &["silences"],
    &["silences", "add"],
    &["silences", "list"],
    &["silences", "expire"],
    &["send"],
    &["check-in"],
    &["exec"],
    &["runs"],
    &["token"],
    &["spool"],
    &["spool", "flush"],
    &["store"],
    &["store", "migrate"],
    &["store", "check"],
    &["users"],
    &["users", "add"],
    &["users", "list"],
    &["users", "remove"],
    &["remotes"],
    &["remotes", "add"],
    &["remotes", "list"],
    &["remotes", "remove"],
    &["remotes", "enable"],
    &["remotes", "disable"],
    &["completions"],
];

fn snapshot_path(words: &[&str]) -> PathBuf {
    let name = if words.is_empty() { "runwatch".to_string() } else { format!("runwatch-{}", words.join("-")) };
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help").join(format!("{name}.txt"))
}

fn bare(args: &[&str]) -> CliOutput {
    let mut cmd = Command::new(binary("runwatch"));
    cli_env(&mut cmd);
    run_cli(cmd.args(args))
}

#[test]
fn help_matches_the_snapshots() {
    let bless = std::env::var_os("RUNWATCH_BLESS").is_some();
    let mut stale = Vec::new();
    for words in COMMANDS {
        let mut args = words.to_vec();
        args.push("--help");
        let out = bare(&args);
        out.expect_code(0);
        assert_eq!(out.stderr, "", "{args:?}");
        let path = snapshot_path(words);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &out.stdout).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if expected != out.stdout {
            stale.push(format!("--- {} ---\n{}", path.display(), out.stdout));
        }
    }
    assert!(stale.is_empty(), "help differs from the snapshots (rewrite them with RUNWATCH_BLESS=1 if intended):\n{}", stale.join("\n"));
}

#[test]
fn every_subcommand_has_a_snapshot() {
    // A new subcommand must come with its help snapshot.
    let out = bare(&["--help"]);
    let listed: Vec<&str> = out
        .stdout
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    for command in listed {
        assert!(COMMANDS.iter().any(|w| w.first() == Some(&command)), "no help snapshot for '{command}'");
    }
}

#[test]
fn help_and_version_go_to_stdout_with_exit_zero() {
    let out = bare(&["--version"]);
    out.expect_code(0);
    assert!(out.stdout.starts_with("runwatch "), "{}", out.stdout);
    let out = bare(&["help", "notifications", "ack"]);
    out.expect_code(0);
    assert_eq!(out.stdout, bare(&["notifications", "ack", "--help"]).stdout);
}

#[test]
fn completion_scripts_are_printed_for_each_shell_without_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    // A pending error would end any other command with a summary and exit 1; not this one.
    run_cli(runwatch(tmp.path()).args(["--notifications", "hidden", "send", "--level", "error", "boom"])).expect_code(0);
    for shell in ["bash", "zsh", "fish"] {
        let out = run_cli(runwatch(tmp.path()).args(["completions", shell]));
        out.expect_code(0);
        assert_eq!(out.stderr, "", "{shell}");
        for word in ["notifications", "check-in", "silence-timeout"] {
            assert!(out.stdout.contains(word), "{shell} completions lack {word}");
        }
    }
    // bash loads its script and registers the completion.
    let script = run_cli(runwatch(tmp.path()).args(["completions", "bash"])).stdout;
    let path = tmp.path().join("runwatch.bash");
    std::fs::write(&path, script).unwrap();
    let out = run_cli(Command::new("bash").arg("-c").arg(format!("source '{}' && complete -p runwatch", path.display())));
    out.expect_code(0);
    assert!(out.stdout.contains("runwatch"), "{}", out.stdout);
}
