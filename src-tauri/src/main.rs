//! `runwatch-app`: the desktop app's entry point and its window.
//!
//! Launched as the user does (and as "Start at login" does, with `--hidden`), it execs
//! `runwatch-tray` before anything else: the engine, tray icon and popups run in that
//! process, which links neither GTK nor WebKit. With `--window` it is the window: a thin
//! Tauri shell showing the UI (ui/dist), which talks to the running engine over its HTTP
//! API. runwatch-tray starts it on demand; it takes no lock and runs no engine.

use std::io::BufRead;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

/// Runwatch's desktop app: a tray icon, popups and a window on the notification inbox.
#[derive(Debug, Parser)]
#[command(name = "runwatch-app", version, about)]
struct Args {
    /// Where the store lives [env: RUNWATCH_HOME] [default: the user data dir]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// An Aim repository to watch (repeatable) [default: the watched repos in Settings]
    #[arg(long, value_name = "PATH")]
    repo: Vec<PathBuf>,

    /// Address of the API the window (and scripts) use
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    http: SocketAddr,

    /// Start with no window (only the tray icon), as at login
    #[arg(long)]
    hidden: bool,

    /// Only the window, on the engine at RUNWATCH_SERVER (with RUNWATCH_TOKEN); what the
    /// tray starts
    #[arg(long, conflicts_with_all = ["data_dir", "repo", "hidden"])]
    window: bool,

    /// With --window: the page of the UI to open (e.g. /notifications/ID)
    #[arg(long, value_name = "ROUTE", requires = "window")]
    route: Option<String>,

    /// With --window: read pages to show from stdin, one per line, and exit at its end
    #[arg(long, requires = "window", hide = true)]
    commands_on_stdin: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.window {
        return exec_tray();
    }
    let (Some(api), Some(token)) = (std::env::var("RUNWATCH_SERVER").ok(), std::env::var("RUNWATCH_TOKEN").ok()) else {
        eprintln!("runwatch-app: error: --window needs RUNWATCH_SERVER and RUNWATCH_TOKEN (the engine's API and its token)");
        return ExitCode::from(2);
    };
    // Not handed down to WebKit's processes. No other thread exists yet.
    std::env::remove_var("RUNWATCH_TOKEN");
    window(&api, &token, args.route, args.commands_on_stdin)
}

/// Becomes runwatch-tray (next to this binary), with the same arguments, before GTK or
/// WebKit start: what runs for the whole session pays for neither.
fn exec_tray() -> ExitCode {
    let tray = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("runwatch-tray"),
        Err(e) => {
            eprintln!("runwatch-app: error: cannot find runwatch-tray: {e}");
            return ExitCode::FAILURE;
        }
    };
    let err = std::process::Command::new(&tray).args(std::env::args_os().skip(1)).exec();
    eprintln!("runwatch-app: error: cannot start '{}': {err}", tray.display());
    ExitCode::FAILURE
}

fn window(api: &str, token: &str, route: Option<String>, commands_on_stdin: bool) -> ExitCode {
    let script = format!("window.__RUNWATCH__ = {{ api: {api:?}, token: {token:?} }};");
    let result = tauri::Builder::default()
        .setup(move |app| {
            build_main_window(app.handle(), &script, route.as_deref())?;
            if commands_on_stdin {
                follow_stdin(app.handle().clone());
            }
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match result {
        Ok(app) => app,
        Err(err) => {
            eprintln!("runwatch-app: error: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Closing the window (the only one) ends the process.
    app.run(|_, _| {});
    ExitCode::SUCCESS
}

/// Each line on stdin shows the window at that page (an empty line: as it is); the end of
/// stdin (the tray closed it, or exited) ends the process.
fn follow_stdin(app: AppHandle) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(route) = line else { break };
            let handle = app.clone();
            let _ = app.run_on_main_thread(move || show_window(&handle, Some(route.trim()).filter(|r| !r.is_empty())));
        }
        app.exit(0);
    });
}

/// Shows, unhides and focuses the window; with `route`, opens that page of the UI (e.g.
/// `/notifications/<id>` for a notification's details).
fn show_window(app: &AppHandle, route: Option<&str>) {
    let Some(window) = app.get_webview_window("main") else { return };
    if let Some(route) = route {
        let _ = window.eval(format!("location.hash = {:?};", format!("#{route}")));
    }
    let _ = window.show();
    let _ = window.unminimize();
    let _ = window.set_focus();
}

/// The window, showing the UI (at `route`, if given); `script` tells the page where the
/// engine's API is and its token (the page reads `window.__RUNWATCH__` instead of the URL
/// a browser gets).
fn build_main_window(app: &AppHandle, script: &str, route: Option<&str>) -> tauri::Result<()> {
    let page = route.map_or_else(|| "index.html".to_string(), |r| format!("index.html#{r}"));
    let window = WebviewWindowBuilder::new(app, "main", WebviewUrl::App(page.into()))
        .title("Runwatch")
        .inner_size(960.0, 640.0)
        .min_inner_size(480.0, 360.0)
        .initialization_script(script)
        .build()?;
    let _ = window.set_focus();
    Ok(())
}
