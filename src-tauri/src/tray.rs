//! The tray icon: a badge with the unread count coloured by the worst unread level, a
//! tooltip with counts by level, and the menu.

use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::inbox::UnreadSummary;
use runwatch_core::Store;
use runwatch_desktop::{draw_badge, tooltip, tooltip_with_servers, Rgba};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager};
use tauri_plugin_autostart::ManagerExt;

use crate::engine::Engine;
use crate::popups::Pause;

pub const TRAY_ID: &str = "runwatch";
const ICON: &[u8] = include_bytes!("../../icons/tray-64.png");

pub fn build(app: &AppHandle) -> tauri::Result<()> {
    let open = MenuItem::with_id(app, "open", "Open Runwatch", true, None::<&str>)?;
    let ack_all = MenuItem::with_id(app, "ack_all", "Acknowledge all", true, None::<&str>)?;
    let snooze_all = MenuItem::with_id(app, "snooze_all", "Snooze all for 1 hour", true, None::<&str>)?;
    let pause = MenuItem::with_id(app, "pause", "Pause popups for 1 hour", true, None::<&str>)?;
    let notifiers = MenuItem::with_id(app, "notifiers", "Notifiers…", true, None::<&str>)?;
    let autostart = app.autolaunch().is_enabled().unwrap_or(false);
    let login = CheckMenuItem::with_id(app, "autostart", "Start at login", true, autostart, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let sep = || PredefinedMenuItem::separator(app);
    let menu = Menu::with_items(app, &[&open, &ack_all, &snooze_all, &pause, &sep()?, &notifiers, &login, &sep()?, &quit])?;
    let pause_item = pause.clone();
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon_for(&UnreadSummary::default()))
        .tooltip(tooltip(&UnreadSummary::default()))
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click { button: MouseButton::Left, button_state: MouseButtonState::Up, .. } = event {
                crate::show_window(tray.app_handle(), None);
            }
        })
        .on_menu_event(move |app, event| match event.id.as_ref() {
            "open" => crate::show_window(app, None),
            "ack_all" => acknowledge_all(app),
            "snooze_all" => snooze_all_for_an_hour(app),
            "pause" => {
                let pause = app.state::<Pause>();
                let paused = pause.toggle(SystemClock.now());
                let _ = pause_item.set_text(if paused { "Resume popups" } else { "Pause popups for 1 hour" });
            }
            "notifiers" => crate::show_settings(app),
            "autostart" => {
                let al = app.autolaunch();
                let result = if al.is_enabled().unwrap_or(false) { al.disable() } else { al.enable() };
                if let Err(e) = result {
                    tracing::warn!("cannot change start at login: {e}");
                }
            }
            "quit" => app.exit(0),
            _ => {}
        })
        .build(app)?;
    Ok(())
}

/// The icon for a summary: the app icon, with a badge when anything is pending.
pub fn icon_for(summary: &UnreadSummary) -> Image<'static> {
    let base = Rgba::from_png(ICON).expect("the bundled tray icon is a valid PNG");
    let img = draw_badge(&base, summary.total, summary.highest);
    Image::new_owned(img.pixels, img.width, img.height)
}

/// Shows a summary on the tray icon, and the followed servers that cannot be reached.
pub fn show(app: &AppHandle, summary: &UnreadSummary, unreachable: &[String]) {
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        let _ = tray.set_icon(Some(icon_for(summary)));
        let _ = tray.set_tooltip(Some(tooltip_with_servers(summary, unreachable)));
        let _ = tray.set_title(summary.total.gt(&0).then(|| summary.total.to_string()));
    }
}

fn acknowledge_all(app: &AppHandle) {
    let Some(engine) = app.try_state::<Engine>() else { return };
    match Store::open(engine.data_dir()).and_then(|mut s| s.ack_all(SystemClock.now())) {
        Ok(n) => tracing::info!("acknowledged {n} notifications from the tray"),
        Err(e) => tracing::warn!("cannot acknowledge: {e}"),
    }
    crate::popups::wake(app);
}

/// Snoozes everything pending now for an hour: it leaves the badge and comes back then.
fn snooze_all_for_an_hour(app: &AppHandle) {
    let Some(engine) = app.try_state::<Engine>() else { return };
    let now = SystemClock.now();
    let snoozed =
        Store::open(engine.data_dir()).map_err(runwatch_core::noise::NoiseError::from).and_then(|mut s| s.snooze_all(now + 3_600_000, now));
    match snoozed {
        Ok(n) => tracing::info!("snoozed {n} notifications for an hour from the tray"),
        Err(e) => tracing::warn!("cannot snooze: {e}"),
    }
    crate::popups::wake(app);
}
