//! Users of a team store (PostgreSQL): names with a token each (stored hashed), and what
//! each of them sees. On the SQLite store there is one implicit user: these views are the
//! store's own, and adding users is refused.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Millis;
use crate::inbox::{ListFilter, Notification, Page, UnreadSummary};
use crate::store::{Store, StoreError};

/// A user as listed (never with the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub created_at: i64,
}

/// One entry of an audience: a user, or a user on one host (`user@host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user: String,
    /// Empty: on any host.
    pub host: String,
}

impl Recipient {
    /// `alice` or `alice@gpu-01`.
    pub fn parse(s: &str) -> Result<Recipient, String> {
        let (user, host) = s.split_once('@').unwrap_or((s, ""));
        if !valid_name(user) || (s.contains('@') && host.is_empty()) || host.contains(char::is_whitespace) {
            return Err(format!("'{s}' is not a user or user@host"));
        }
        Ok(Recipient { user: user.to_string(), host: host.to_string() })
    }
}

/// User names: letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most
/// 64 characters (they appear in `user@host`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The stored form of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("'{0}' is not a valid user name: use letters, digits, '.', '_' and '-'")]
    BadName(String),
    #[error("a user named '{0}' exists already")]
    Exists(String),
    #[error("no user named '{0}'; list them with 'runwatch users list'")]
    Unknown(String),
    #[error("users belong to a team store: name a PostgreSQL store with --store postgresql://… (this one has a single user)")]
    SingleUser,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Adds a user and returns their token: shown once, stored only as a hash.
    pub fn add_user(&mut self, name: &str, now: Millis) -> Result<String, UserError> {
        if !valid_name(name) {
            return Err(UserError::BadName(name.into()));
        }
        let pg = self.pg().ok_or(UserError::SingleUser)?;
        let token = format!("rwu_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        if !pg.add_user(name, &token_hash(&token), now)? {
            return Err(UserError::Exists(name.into()));
        }
        Ok(token)
    }

    pub fn users(&self) -> Result<Vec<User>, UserError> {
        Ok(self.pg().ok_or(UserError::SingleUser)?.users()?)
    }

    pub fn remove_user(&mut self, name: &str) -> Result<(), UserError> {
        if self.pg().ok_or(UserError::SingleUser)?.remove_user(name)? {
            Ok(())
        } else {
            Err(UserError::Unknown(name.into()))
        }
    }

    /// The user a token belongs to (`None` on the single-user store).
    pub fn user_for_token(&self, token: &str) -> Result<Option<String>, StoreError> {
        match self.pg() {
            Some(pg) => pg.user_for_token(&token_hash(token)),
            None => Ok(None),
        }
    }

    /// The notifications `user` sees (the store's whole inbox for `None`, and on SQLite).
    pub fn list_notifications_as(&self, user: Option<&str>, filter: &ListFilter) -> Result<Page, StoreError> {
        match (self.pg(), user) {
            (Some(pg), Some(user)) => pg.list_as(user, filter),
            _ => self.list_notifications(filter),
        }
    }

    pub fn notification_as(&self, user: Option<&str>, id: &str) -> Result<Option<Notification>, StoreError> {
        match (self.pg(), user) {
            (Some(pg), Some(user)) => pg.notification_as(user, id),
            _ => self.notification(id),
        }
    }

    pub fn unread_summary_as(&self, user: Option<&str>, now: Millis) -> Result<UnreadSummary, StoreError> {
        match (self.pg(), user) {
            (Some(pg), Some(user)) => pg.unread_summary_as(user, now),
            _ => self.unread_summary_at(now),
        }
    }

    /// Acknowledges for `user` alone; returns how many were pending for them.
    pub fn ack_as(&mut self, user: Option<&str>, ids: &[String], now: Millis) -> Result<usize, StoreError> {
        match (self.pg(), user) {
            (Some(pg), Some(user)) => pg.ack_as(user, ids, now),
            _ => self.ack(ids, now),
        }
    }

    pub fn ack_all_as(&mut self, user: Option<&str>, now: Millis) -> Result<usize, StoreError> {
        match (self.pg(), user) {
            (Some(pg), Some(user)) => pg.ack_all_as(user, now),
            _ => self.ack_all(now),
        }
    }

    /// Acknowledges for `user` what they see up to seq `upto` (their follower's
    /// "acknowledge all", see [`Store::ack_upto`]).
    pub fn ack_upto_as(&mut self, user: Option<&str>, upto: i64, now: Millis) -> Result<usize, StoreError> {
        match (self.pg(), user) {
            (Some(pg), Some(user)) => pg.ack_upto_as(user, upto, now),
            _ => self.ack_upto(upto, now),
        }
    }
}
