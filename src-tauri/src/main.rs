//! `runwatch-app`: the desktop shell. Runs the same engine as `runwatch start` in-process
//! (watcher, dispatcher, HTTP API) and owns what only a desktop has: the tray icon with its
//! badge, native popups, and the windows. Everything testable lives in the Tauri-free crates.

mod engine;
mod lean;
mod popups;
mod tray;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder, WindowEvent};

/// Runwatch's desktop app: a tray icon, popups and a window on the notification inbox.
#[derive(Debug, Parser)]
#[command(name = "runwatch-app", version, about)]
struct Args {
    /// Where the store lives [default: the user data dir]
    #[arg(long, value_name = "DIR", env = runwatch_core::data_dir::HOME_ENV)]
    data_dir: Option<PathBuf>,

    /// An Aim repository to watch (repeatable) [default: the watched repos in Settings]
    #[arg(long, value_name = "PATH")]
    repo: Vec<PathBuf>,

    /// Address of the API the window (and scripts) use
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    http: SocketAddr,

    /// Start with the window hidden (only the tray icon), as at login
    #[arg(long)]
    hidden: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    lean::before_gtk(args.hidden);
    // No colour codes in a log file or with NO_COLOR.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(runwatch_notify::send::log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    let hidden = args.hidden;
    let result = tauri::Builder::default()
        // First: a second launch hands over to the running app and exits.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| show_window(app, None)))
        .plugin(tauri_plugin_autostart::init(tauri_plugin_autostart::MacosLauncher::LaunchAgent, Some(vec!["--hidden"])))
        .setup(move |app| {
            let engine = engine::Engine::start(app.handle(), args.data_dir.as_deref(), &args.repo, args.http)?;
            app.manage(engine);
            // Started hidden (at login) the app makes no window until one is asked for: a
            // web view costs ~300 MiB of WebKit processes that a tray icon does not need.
            if !hidden {
                build_main_window(app.handle(), None)?;
            }
            tray::build(app.handle())?;
            popups::start(app.handle().clone());
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing a window keeps the app (and its tray icon) running.
            if let WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .build(tauri::generate_context!());
    let app = match result {
        Ok(app) => app,
        Err(err) => {
            eprintln!("runwatch-app: error: {err}");
            return ExitCode::FAILURE;
        }
    };
    app.run(|handle, event| {
        if let tauri::RunEvent::Exit = event {
            if let Some(engine) = handle.try_state::<engine::Engine>() {
                engine.stop();
            }
        }
    });
    ExitCode::SUCCESS
}

/// Shows, unhides and focuses the main window; with `route`, opens that page of the UI
/// (e.g. `/notifications/<id>` for a notification's details).
pub fn show_window(app: &AppHandle, route: Option<&str>) {
    let Some(window) = app.get_webview_window("main") else {
        if let Err(e) = build_main_window(app, route) {
            tracing::warn!("cannot open the window: {e}");
        }
        return;
    };
    if let Some(route) = route {
        let _ = window.eval(format!("location.hash = {:?};", format!("#{route}")));
    }
    let _ = window.show();
    let _ = window.unminimize();
    let _ = window.set_focus();
}

/// The main window, showing the UI (at `route`, if given) with the engine's API settings.
fn build_main_window(app: &AppHandle, route: Option<&str>) -> tauri::Result<()> {
    let Some(engine) = app.try_state::<engine::Engine>() else { return Ok(()) };
    let script = api_settings_script(&engine);
    let page = route.map_or_else(|| "index.html".to_string(), |r| format!("index.html#{r}"));
    let window = WebviewWindowBuilder::new(app, "main", WebviewUrl::App(page.into()))
        .title("Runwatch")
        .inner_size(960.0, 640.0)
        .min_inner_size(480.0, 360.0)
        .initialization_script(&script)
        .build()?;
    let _ = window.set_focus();
    Ok(())
}

/// Tells the page where the engine's API is and its token (the page reads
/// `window.__RUNWATCH__` instead of the URL a browser gets).
fn api_settings_script(engine: &engine::Engine) -> String {
    format!("window.__RUNWATCH__ = {{ api: {:?}, token: {:?} }};", engine.api_url(), engine.token())
}

/// Opens (or focuses) the settings window, where notifiers are added.
pub fn show_settings(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("settings") {
        let _ = w.show();
        let _ = w.set_focus();
        return;
    }
    let Some(engine) = app.try_state::<engine::Engine>() else { return };
    let script = api_settings_script(&engine);
    let built = WebviewWindowBuilder::new(app, "settings", WebviewUrl::App("index.html#/notifiers".into()))
        .title("Runwatch — Notifiers")
        .inner_size(760.0, 560.0)
        .initialization_script(&script)
        .build();
    if let Err(e) = built {
        tracing::warn!("cannot open the settings window: {e}");
    }
}
