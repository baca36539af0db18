//! What the desktop app shows, as pure functions the tests can check without a display:
//! the tray icon's badge, its tooltip, and which notifications become popups.

pub mod badge;
pub mod popups;

pub use badge::{badge_text, draw_badge, tooltip, tooltip_with_servers, Rgba};
pub use popups::{Popup, PopupGate};
