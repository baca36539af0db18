//! The tray icon's badge: the unread count (1…99, then "99+") on a disc coloured by the
//! most severe unread level — red for ERROR and CRITICAL, amber for WARNING, neutral for
//! INFO and DEBUG — and no badge when nothing is pending.

use runwatch_core::inbox::UnreadSummary;
use runwatch_core::Level;

/// An RGBA image, 4 bytes a pixel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgba {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Rgba {
    /// Decodes an 8-bit RGBA PNG (the app's tray icon).
    pub fn from_png(bytes: &[u8]) -> Result<Rgba, png::DecodingError> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
        let mut reader = decoder.read_info()?;
        let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
        let info = reader.next_frame(&mut buf)?;
        buf.truncate(info.buffer_size());
        let pixels = match info.color_type {
            png::ColorType::Rgba => buf,
            png::ColorType::Rgb => buf.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
            png::ColorType::GrayscaleAlpha => buf.chunks(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
            _ => buf.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        };
        Ok(Rgba { width: info.width, height: info.height, pixels })
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let i = ((y * self.width + x) * 4) as usize;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2], self.pixels[i + 3]]
    }

    fn put(&mut self, x: i32, y: i32, c: [u8; 4]) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            let i = ((y as u32 * self.width + x as u32) * 4) as usize;
            self.pixels[i..i + 4].copy_from_slice(&c);
        }
    }
}

pub const RED: [u8; 4] = [0xd9, 0x2d, 0x20, 0xff];
pub const AMBER: [u8; 4] = [0xf0, 0x9a, 0x00, 0xff];
pub const NEUTRAL: [u8; 4] = [0x5b, 0x65, 0x76, 0xff];
pub const WHITE: [u8; 4] = [0xff, 0xff, 0xff, 0xff];

/// The badge's colour for the most severe unread level.
pub fn badge_color(level: Level) -> [u8; 4] {
    match level {
        Level::Critical | Level::Error => RED,
        Level::Warning => AMBER,
        Level::Info | Level::Debug => NEUTRAL,
    }
}

/// What the badge says: `None` for no badge.
pub fn badge_text(count: i64) -> Option<String> {
    match count {
        ..=0 => None,
        1..=99 => Some(count.to_string()),
        _ => Some("99+".into()),
    }
}

/// The icon with the badge drawn on its lower right (`level` is the most severe unread).
pub fn draw_badge(base: &Rgba, count: i64, level: Option<Level>) -> Rgba {
    let mut out = base.clone();
    let (Some(text), Some(level)) = (badge_text(count), level) else { return out };
    let size = base.width.min(base.height) as i32;
    // Glyphs are 3×5 cells; the scale keeps text legible at 32 px and above.
    let scale = (size / 32).max(1);
    let gap = scale;
    let text_w = text.chars().map(|c| glyph_width(c) * scale + gap).sum::<i32>() - gap;
    let text_h = 5 * scale;
    let pad = 2 * scale;
    let h = text_h + 2 * pad;
    let w = (text_w + 2 * pad).max(h);
    let (x0, y0) = (size - w, size - h);
    let color = badge_color(level);
    // A pill: a rectangle with round ends (a disc when the text is short).
    let r = h as f32 / 2.0;
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let cx = px.clamp(r, w as f32 - r);
            if (px - cx).powi(2) + (py - r).powi(2) <= r * r {
                out.put(x0 + x, y0 + y, color);
            }
        }
    }
    let mut x = x0 + (w - text_w) / 2;
    let y = y0 + (h - text_h) / 2;
    for c in text.chars() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..glyph_width(c) {
                if bits & (1 << (glyph_width(c) - 1 - col)) != 0 {
                    for sy in 0..scale {
                        for sx in 0..scale {
                            out.put(x + col * scale + sx, y + row as i32 * scale + sy, WHITE);
                        }
                    }
                }
            }
        }
        x += glyph_width(c) * scale + gap;
    }
    out
}

/// The tray tooltip: counts by level.
pub fn tooltip(s: &UnreadSummary) -> String {
    if s.total == 0 {
        return "Runwatch — no pending notifications".into();
    }
    let parts: Vec<String> = [(s.critical, "critical"), (s.error, "error"), (s.warning, "warning"), (s.info, "info"), (s.debug, "debug")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    format!("Runwatch — {} pending: {}", s.total, parts.join(", "))
}

/// The tray tooltip with the followed servers that cannot be reached, by name: a server
/// away is said where the user looks, not only as a notification.
pub fn tooltip_with_servers(s: &UnreadSummary, unreachable: &[String]) -> String {
    let mut text = tooltip(s);
    if !unreachable.is_empty() {
        text.push_str(&format!("\nUnreachable: {}", unreachable.join(", ")));
    }
    text
}

/// Every glyph is 3 cells wide.
fn glyph_width(_: char) -> i32 {
    3
}

/// 3×5 pixel glyphs, one row per byte, the low 3 bits left to right.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '+' => [0b000, 0b010, 0b111, 0b010, 0b000],
        _ => [0; 5],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(size: u32) -> Rgba {
        Rgba { width: size, height: size, pixels: vec![0; (size * size * 4) as usize] }
    }

    fn count_color(img: &Rgba, c: [u8; 4]) -> usize {
        img.pixels.chunks(4).filter(|p| *p == c).count()
    }

    #[test]
    fn no_badge_when_nothing_is_pending() {
        let base = blank(32);
        assert_eq!(draw_badge(&base, 0, None), base);
        assert_eq!(draw_badge(&base, 0, Some(Level::Error)), base);
        assert_eq!(badge_text(0), None);
    }

    #[test]
    fn badge_colour_follows_the_worst_level() {
        let base = blank(64);
        for (level, color) in
            [(Level::Critical, RED), (Level::Error, RED), (Level::Warning, AMBER), (Level::Info, NEUTRAL), (Level::Debug, NEUTRAL)]
        {
            let img = draw_badge(&base, 3, Some(level));
            // The lower right corner area is the badge; the upper left is untouched.
            assert!(count_color(&img, color) > 100, "{level}");
            assert_eq!(img.pixel(2, 2), [0, 0, 0, 0]);
            // 64 px: a disc of 18 px in the lower right corner, the digit in its middle.
            assert_eq!(img.pixel(48, 55), color, "{level}: badge near the lower right");
            assert_eq!(img.pixel(44, 55), [0, 0, 0, 0], "{level}: left of the badge");
            assert!(count_color(&img, WHITE) > 0, "the digit is drawn");
        }
    }

    #[test]
    fn text_is_capped_at_99_plus_and_wider_text_makes_a_wider_badge() {
        assert_eq!(badge_text(1).as_deref(), Some("1"));
        assert_eq!(badge_text(99).as_deref(), Some("99"));
        assert_eq!(badge_text(100).as_deref(), Some("99+"));
        let base = blank(64);
        let red =
            |n| count_color(&draw_badge(&base, n, Some(Level::Error)), RED) + count_color(&draw_badge(&base, n, Some(Level::Error)), WHITE);
        assert!(red(5) < red(55) && red(55) < red(500), "{} {} {}", red(5), red(55), red(500));
        assert_eq!(draw_badge(&base, 100, Some(Level::Error)), draw_badge(&base, 12345, Some(Level::Error)));
        // '1' and '7' draw different pixels.
        assert_ne!(draw_badge(&base, 1, Some(Level::Error)), draw_badge(&base, 7, Some(Level::Error)));
    }

    #[test]
    fn the_real_tray_icon_decodes_and_takes_a_badge() {
        let icon = Rgba::from_png(include_bytes!("../../../../icons/tray-64.png")).unwrap();
        assert_eq!((icon.width, icon.height), (64, 64));
        let with = draw_badge(&icon, 12, Some(Level::Warning));
        assert_ne!(with, icon);
        assert_eq!(with.pixel(44, 55), AMBER, "two digits make a wider pill");
    }

    #[test]
    fn tooltip_gives_counts_by_level() {
        let s = UnreadSummary { total: 4, error: 1, warning: 2, info: 1, highest: Some(Level::Error), ..Default::default() };
        assert_eq!(tooltip(&s), "Runwatch — 4 pending: 1 error, 2 warning, 1 info");
        assert_eq!(tooltip(&UnreadSummary::default()), "Runwatch — no pending notifications");
        assert_eq!(tooltip_with_servers(&s, &[]), tooltip(&s));
        assert_eq!(
            tooltip_with_servers(&UnreadSummary::default(), &["gpu-a".into(), "gpu-b".into()]),
            "Runwatch — no pending notifications\nUnreachable: gpu-a, gpu-b"
        );
    }
}
