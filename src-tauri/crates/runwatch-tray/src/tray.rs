//! The tray icon, as a StatusNotifierItem over D-Bus (ksni; no GTK): a badge with the
//! unread count coloured by the worst unread level, a tooltip with counts by level, and the
//! menu. Menu clicks that take time go to the main thread as [`Command`]s.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use ksni::blocking::TrayMethods;
use ksni::menu::{CheckmarkItem, MenuItem, StandardItem};
use runwatch_core::clock::{Clock, SystemClock};
use runwatch_core::inbox::UnreadSummary;
use runwatch_desktop::{draw_badge, tooltip_with_servers, Rgba};

use crate::popups::Pause;
use crate::{Command, Wake};

const ICON: &[u8] = include_bytes!("../../../../icons/tray-64.png");
/// The name "Start at login" registers under (as tauri-plugin-autostart did, so an entry
/// made by an earlier version is recognised): `~/.config/autostart/Runwatch.desktop`.
const AUTOSTART_NAME: &str = "Runwatch";

pub type Handle = ksni::blocking::Handle<RunwatchTray>;

pub struct RunwatchTray {
    commands: Sender<Command>,
    pause: Arc<Pause>,
    wake: Wake,
    base: Rgba,
    summary: UnreadSummary,
    unreachable: Vec<String>,
    icon: ksni::Icon,
}

/// Registers the tray item (once a tray host is there: at login it may come up after us).
pub fn start(commands: Sender<Command>, pause: Arc<Pause>, wake: Wake) -> anyhow::Result<Handle> {
    let base = Rgba::from_png(ICON)?;
    let summary = UnreadSummary::default();
    let icon = icon_for(&base, &summary);
    let tray = RunwatchTray { commands, pause, wake, base, summary, unreachable: Vec::new(), icon };
    Ok(tray.assume_sni_available(true).spawn()?)
}

impl RunwatchTray {
    /// Shows a summary on the icon, and the followed servers that cannot be reached.
    pub fn show(&mut self, summary: UnreadSummary, unreachable: Vec<String>) {
        self.icon = icon_for(&self.base, &summary);
        self.summary = summary;
        self.unreachable = unreachable;
    }

    fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

/// The icon for a summary: the app icon, with a badge when anything is pending, as the
/// ARGB32 pixmap (network byte order) a StatusNotifierItem carries.
fn icon_for(base: &Rgba, summary: &UnreadSummary) -> ksni::Icon {
    let img = draw_badge(base, summary.total, summary.highest);
    let data = img.pixels.chunks_exact(4).flat_map(|p| [p[3], p[0], p[1], p[2]]).collect();
    ksni::Icon { width: img.width as i32, height: img.height as i32, data }
}

fn autostart() -> Option<auto_launch::AutoLaunch> {
    // What is registered is `runwatch-app --hidden`: it execs this binary before any GTK.
    let app = std::env::current_exe().ok()?.with_file_name("runwatch-app");
    Some(auto_launch::AutoLaunch::new(AUTOSTART_NAME, app.to_str()?, auto_launch::LinuxLaunchMode::XdgAutostart, &["--hidden"]))
}

impl ksni::Tray for RunwatchTray {
    fn id(&self) -> String {
        "runwatch".into()
    }

    fn title(&self) -> String {
        "Runwatch".into()
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        vec![self.icon.clone()]
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip { title: tooltip_with_servers(&self.summary, &self.unreachable), ..Default::default() }
    }

    fn activate(&mut self, _x: i32, _y: i32) {
        self.send(Command::Open(None));
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let paused = self.pause.until().is_some_and(|u| u > SystemClock.now());
        let login = autostart().and_then(|a| a.is_enabled().ok()).unwrap_or(false);
        vec![
            StandardItem {
                label: "Open Runwatch".into(),
                activate: Box::new(|t: &mut Self| t.send(Command::Open(None))),
                ..Default::default()
            }
            .into(),
            StandardItem {
                label: "Acknowledge all".into(),
                activate: Box::new(|t: &mut Self| t.send(Command::AckAll)),
                ..Default::default()
            }
            .into(),
            StandardItem {
                label: "Snooze all for 1 hour".into(),
                activate: Box::new(|t: &mut Self| t.send(Command::SnoozeAll)),
                ..Default::default()
            }
            .into(),
            StandardItem {
                label: if paused { "Resume popups" } else { "Pause popups for 1 hour" }.into(),
                activate: Box::new(|t: &mut Self| {
                    t.pause.toggle(SystemClock.now());
                    crate::wake(&t.wake);
                }),
                ..Default::default()
            }
            .into(),
            MenuItem::Separator,
            StandardItem {
                label: "Notifiers…".into(),
                activate: Box::new(|t: &mut Self| t.send(Command::Open(Some("/notifiers".into())))),
                ..Default::default()
            }
            .into(),
            CheckmarkItem {
                label: "Start at login".into(),
                checked: login,
                activate: Box::new(|_: &mut Self| {
                    let Some(al) = autostart() else { return };
                    let result = if al.is_enabled().unwrap_or(false) { al.disable() } else { al.enable() };
                    if let Err(e) = result {
                        tracing::warn!("cannot change start at login: {e}");
                    }
                }),
                ..Default::default()
            }
            .into(),
            MenuItem::Separator,
            StandardItem { label: "Quit".into(), activate: Box::new(|t: &mut Self| t.send(Command::Quit)), ..Default::default() }.into(),
        ]
    }
}
