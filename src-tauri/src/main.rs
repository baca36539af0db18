//! `runwatch-app`: the desktop shell. Owns the tray icon and the window; everything else
//! lives in the Tauri-free crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use runwatch_core::{DataDir, InstanceLock, Store};
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, WindowEvent};

/// Runwatch's desktop app: a tray icon and a window on the notification inbox.
#[derive(Debug, Parser)]
#[command(name = "runwatch-app", version, about)]
struct Args {
    /// Where the store lives [default: the user data dir]
    #[arg(long, value_name = "DIR", env = runwatch_core::data_dir::HOME_ENV)]
    data_dir: Option<PathBuf>,
}

/// What the app holds for its whole life: the watcher lock and the open store.
struct Engine {
    _lock: InstanceLock,
    _store: std::sync::Mutex<Store>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let engine = match open_engine(args.data_dir.as_deref()) {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("runwatch-app: error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = tauri::Builder::default()
        .manage(engine)
        .setup(|app| {
            build_tray(app.handle())?;
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window keeps the app (and its tray icon) running.
            if let WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .run(tauri::generate_context!());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("runwatch-app: error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn open_engine(data_dir: Option<&std::path::Path>) -> anyhow::Result<Engine> {
    let dir = DataDir::resolve(data_dir)?;
    let lock = InstanceLock::acquire(&dir)?;
    let store = Store::open(&dir)?;
    println!("Runwatch app — data in '{}'", store.path().display());
    Ok(Engine { _lock: lock, _store: std::sync::Mutex::new(store) })
}

fn build_tray(app: &AppHandle) -> tauri::Result<()> {
    let open = MenuItem::with_id(app, "open", "Open Runwatch", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&open, &PredefinedMenuItem::separator(app)?, &quit])?;
    let mut tray = TrayIconBuilder::with_id("runwatch")
        .tooltip("Runwatch")
        .menu(&menu)
        .on_menu_event(|app, event| match event.id.as_ref() {
            "open" => show_main_window(app),
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    Ok(())
}

fn show_main_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}
