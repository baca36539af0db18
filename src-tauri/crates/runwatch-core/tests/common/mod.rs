//! The two backends every backend-neutral store test runs against: a SQLite file in a
//! temporary data dir, and a fresh database in this test process's throwaway PostgreSQL
//! cluster (`runwatch_core::pg::fixture`).

#![allow(dead_code)]

use runwatch_core::pg::fixture::Cluster;
use runwatch_core::{DataDir, Location, Store};

/// Where a test's store lives; keeps its temporary directory alive.
pub struct Place {
    pub location: Location,
    _tmp: tempfile::TempDir,
}

impl Place {
    /// The SQLite store of a temporary data dir that holds `runwatch.db`.
    pub fn sqlite_file(tmp: tempfile::TempDir) -> Place {
        Place { location: Location::DataDir(DataDir::at(tmp.path())), _tmp: tmp }
    }

    pub fn open(&self) -> Store {
        Store::open_at(&self.location).unwrap()
    }

    /// A plain SQL count on either backend, for checking what the store's methods say.
    pub fn count(&self, sql: &str) -> i64 {
        match &self.location {
            Location::DataDir(dir) => {
                let conn = rusqlite::Connection::open(dir.store_path()).unwrap();
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Location::Postgres(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client.query_one(sql, &[]).unwrap().get(0)
            }
        }
    }

    /// Runs one statement with text parameters (`$1`, `$2` … on both backends).
    pub fn execute(&self, sql: &str, params: &[&str]) {
        match &self.location {
            Location::DataDir(dir) => {
                let conn = rusqlite::Connection::open(dir.store_path()).unwrap();
                conn.execute(sql, rusqlite::params_from_iter(params.iter())).unwrap();
            }
            Location::Postgres(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|s| s as &(dyn postgres::types::ToSql + Sync)).collect();
                client.execute(sql, &p).unwrap();
            }
        }
    }

    /// The text in the first column of the first row, if any.
    pub fn text(&self, sql: &str, params: &[&str]) -> Option<String> {
        match &self.location {
            Location::DataDir(dir) => {
                let conn = rusqlite::Connection::open(dir.store_path()).unwrap();
                conn.query_row(sql, rusqlite::params_from_iter(params.iter()), |r| r.get(0)).ok()
            }
            Location::Postgres(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let p: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|s| s as &(dyn postgres::types::ToSql + Sync)).collect();
                client.query_opt(sql, &p).unwrap().map(|r| r.get(0))
            }
        }
    }

    /// Rows of (i64, i64) from a plain SQL query on either backend.
    pub fn pairs(&self, sql: &str) -> Vec<(i64, i64)> {
        match &self.location {
            Location::DataDir(dir) => {
                let conn = rusqlite::Connection::open(dir.store_path()).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
            }
            Location::Postgres(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client.query(sql, &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn place(backend: Backend) -> Place {
    let tmp = tempfile::tempdir().unwrap();
    let location = match backend {
        Backend::Sqlite => Location::DataDir(DataDir::at(tmp.path())),
        Backend::Postgres => Location::Postgres(Cluster::shared().database().unwrap()),
    };
    Place { location, _tmp: tmp }
}

/// A new store on `backend` and the place it lives.
pub fn store(backend: Backend) -> (Place, Store) {
    let place = place(backend);
    let store = place.open();
    (place, store)
}

/// Runs a test body (a function taking a [`Backend`]) once per backend, as two tests.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::common::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name($crate::common::Backend::Postgres)
            }
        }
    )*};
}
