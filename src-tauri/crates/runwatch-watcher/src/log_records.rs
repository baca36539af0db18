//! Aim log records as notifications: at or above the log level, identical messages of one
//! batch folded into "<msg> (N more messages logged)", as Aim does.

use runwatch_aim::logs::LogRecord;
use runwatch_core::ingest::title_from;
use runwatch_core::{Level, NewNotification};

/// Turns one batch of newly read records into notifications, in step order.
pub fn notifications(run: &str, records: &[LogRecord], threshold: Level) -> Vec<NewNotification> {
    // (level, message) -> index in `out`; the first record of a group names it.
    let mut groups: Vec<(i64, &str, u64, i64)> = Vec::new(); // level, message, first step, more
    let mut index = std::collections::HashMap::new();
    for r in records.iter().filter(|r| r.level >= threshold.number()) {
        match index.get(&(r.level, r.message.as_str())) {
            Some(&i) => {
                let g: &mut (i64, &str, u64, i64) = &mut groups[i];
                g.3 += 1;
            }
            None => {
                index.insert((r.level, r.message.as_str()), groups.len());
                groups.push((r.level, &r.message, r.step, 0));
            }
        }
    }
    groups
        .into_iter()
        .map(|(level, message, step, more)| {
            let text = if more > 0 { format!("{message} ({more} more messages logged)") } else { message.to_string() };
            NewNotification {
                level: Some(Level::from_number(level).unwrap_or(Level::Debug)),
                title: title_from(&text),
                body: text,
                run_id: Some(run.to_string()),
                source: "aim-log".into(),
                dedupe_key: Some(format!("log:{run}:{step}")),
                repeat_count: more,
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: u64, level: i64, message: &str) -> LogRecord {
        LogRecord { step, level, message: message.into() }
    }

    #[test]
    fn threshold_aggregation_and_braces() {
        let records = [
            rec(0, 20, "info is below WARNING"),
            rec(1, 30, "disk {almost} full"),
            rec(2, 40, "boom"),
            rec(3, 30, "disk {almost} full"),
            rec(4, 30, "disk {almost} full"),
            rec(5, 40, "boom"),
        ];
        let out = notifications("r1", &records, Level::Warning);
        let got: Vec<_> = out.iter().map(|n| (n.level.unwrap(), n.body.as_str(), n.dedupe_key.as_deref().unwrap())).collect();
        assert_eq!(
            got,
            [
                (Level::Warning, "disk {almost} full (2 more messages logged)", "log:r1:1"),
                (Level::Error, "boom (1 more messages logged)", "log:r1:2"),
            ]
        );
        assert_eq!(out[0].repeat_count, 2);
        assert_eq!(notifications("r1", &records, Level::Info).len(), 3);
        assert!(notifications("r1", &records, Level::Critical).is_empty());
    }
}
