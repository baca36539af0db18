//! The domain's vocabulary — levels, run states, notifier and delivery states — with the
//! exact spellings used in SQL, the API and the UI.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

/// Severity, numbered as Python logging (Aim's `set-log-level` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema, TS)]
#[serde(rename_all = "UPPERCASE")]
#[ts(export)]
pub enum Level {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Critical = 50,
}

impl Level {
    pub const ALL: [Level; 5] = [Level::Debug, Level::Info, Level::Warning, Level::Error, Level::Critical];

    /// The Python logging number stored in SQL.
    pub fn number(self) -> i64 {
        self as i64
    }

    /// The level for a Python logging number; numbers between levels round down, as a
    /// threshold would (Aim stores 20/30/40; a custom 35 counts as WARNING).
    pub fn from_number(n: i64) -> Option<Level> {
        Level::ALL.into_iter().rev().find(|l| n >= l.number())
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level '{0}': use DEBUG, INFO, WARNING, ERROR or CRITICAL")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        Level::ALL
            .into_iter()
            .find(|l| l.name() == upper || (upper == "WARN" && *l == Level::Warning))
            .ok_or_else(|| UnknownLevel(s.to_string()))
    }
}

/// Defines a string-valued enum whose spelling is shared by Rust, SQL CHECK constraints,
/// JSON and the UI.
macro_rules! domain_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, TS)]
        #[serde(rename_all = "lowercase")]
        #[ts(export)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok($name::$variant),)+ _ => Err(format!("unknown {} '{}'", stringify!($name), s)) }
            }
        }
    };
}

domain_enum!(
    /// Where a run stands, as the detector sees it.
    RunState {
        Running => "running",
        Finished => "finished",
        Stuck => "stuck",
        Crashed => "crashed",
        Ended => "ended",
        Failed => "failed",
    }
);

domain_enum!(
    /// Whether a notifier receives notifications.
    NotifierStatus {
        Enabled => "enabled",
        Disabled => "disabled",
    }
);

domain_enum!(
    /// The state of one notification's delivery to one notifier (an outbox row).
    DeliveryState {
        Pending => "pending",
        Sent => "sent",
        Failed => "failed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_python_names_and_numbers() {
        assert_eq!("warning".parse::<Level>().unwrap(), Level::Warning);
        assert_eq!("WARN".parse::<Level>().unwrap(), Level::Warning);
        assert!("LOUD".parse::<Level>().unwrap_err().to_string().contains("'LOUD'"));
        assert_eq!(Level::from_number(40), Some(Level::Error));
        assert_eq!(Level::from_number(35), Some(Level::Warning));
        assert_eq!(Level::from_number(5), None);
        assert!(Level::Critical > Level::Error);
    }

    #[test]
    fn domain_enums_round_trip_their_sql_spelling() {
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>().unwrap(), *s);
        }
        assert_eq!(serde_json::to_string(&DeliveryState::Failed).unwrap(), "\"failed\"");
        assert!("paused".parse::<NotifierStatus>().is_err());
    }
}
