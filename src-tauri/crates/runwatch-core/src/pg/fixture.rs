//! A throwaway PostgreSQL cluster for tests and benchmarks, from Debian's `postgresql`
//! package: initdb into a temporary directory, the server on a free loopback port with its
//! unix socket in that directory, everything removed afterwards.
//!
//! A small shell keeper owns the server: it reads commands (`stop`, `start`) on its
//! standard input, and when that closes — the test process ended, however it ended — it
//! stops the server and removes the directory. As root (CI) the keeper and the server run
//! as `nobody`, since PostgreSQL refuses to run as root.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The user the server runs as when the tests run as root.
const UNPRIVILEGED: &str = "nobody";

const KEEPER: &str = r#"
D="$1"; PORT="$2"; BIN="$3"
start() {
  "$BIN/pg_ctl" -D "$D/data" -l "$D/server.log" -w -t 60 \
    -o "-p $PORT -k $D -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c shared_buffers=128MB" \
    start >/dev/null
}
stop() { "$BIN/pg_ctl" -D "$D/data" -m immediate -w stop >/dev/null 2>&1; }
if ! "$BIN/initdb" -D "$D/data" -A trust -U runwatch --no-sync -E UTF8 --locale=C >"$D/initdb.log" 2>&1; then
  echo "initdb failed: $(tail -n 3 "$D/initdb.log")"; rm -rf "$D"; exit 1
fi
if ! start; then echo "the server did not start: $(tail -n 3 "$D/server.log")"; stop; rm -rf "$D"; exit 1; fi
echo ready
while read -r cmd; do
  case "$cmd" in
    stop) stop; echo done ;;
    start) start; echo done ;;
  esac
done
stop
rm -rf "$D"
"#;

/// A running throwaway cluster; dropping it stops the server and removes its directory.
pub struct Cluster {
    port: u16,
    dir: PathBuf,
    keeper: Mutex<Keeper>,
    databases: AtomicUsize,
}

struct Keeper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// Where Debian puts the server's programs: the newest `/usr/lib/postgresql/N/bin`, or
/// `RUNWATCH_PG_BIN`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("RUNWATCH_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL is not installed: install Debian's postgresql package (.ci/bootstrap does)".to_string())?
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| "no initdb under /usr/lib/postgresql: install Debian's postgresql package".to_string())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Cluster {
    /// Starts a new cluster (about two seconds: initdb).
    pub fn start() -> Result<Cluster, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = bin_dir()?;
        let dir = std::env::temp_dir().join(format!("runwatch-pg-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create '{}': {e}", dir.display()))?;
        let port = free_port().map_err(|e| format!("no free loopback port: {e}"))?;
        let mut cmd = if running_as_root() {
            let (uid, gid) = unprivileged_ids()?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand '{}' to {UNPRIVILEGED}: {e}", dir.display()))?;
            let mut c = Command::new("runuser");
            c.args(["-u", UNPRIVILEGED, "--", "sh"]);
            c
        } else {
            Command::new("sh")
        };
        cmd.arg("-c").arg(KEEPER).arg("sh").arg(&dir).arg(port.to_string()).arg(&bin);
        let mut child = cmd
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the PostgreSQL keeper: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no keeper output")?);
        let mut keeper = Keeper { child, stdin, stdout };
        let line = keeper.line();
        if line != "ready" {
            let _ = keeper.child.wait();
            return Err(format!("the test PostgreSQL cluster did not start: {line}"));
        }
        Ok(Cluster { port, dir, keeper: Mutex::new(keeper), databases: AtomicUsize::new(0) })
    }

    /// One cluster per test process, started on first use and stopped when the process ends.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("{e}")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the cluster (its unix socket is there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of a database in this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://runwatch@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database; returns its URL.
    pub fn database(&self) -> Result<String, String> {
        let name = format!("rw_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        let mut client = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).map_err(|e| super::describe(&e))?;
        client.batch_execute(&format!("CREATE DATABASE {name}")).map_err(|e| super::describe(&e))?;
        Ok(self.url(&name))
    }

    /// Stops the server as a crash would (immediate shutdown); [`Cluster::resume`] starts it again.
    pub fn stop(&self) -> Result<(), String> {
        self.command("stop")
    }

    pub fn resume(&self) -> Result<(), String> {
        self.command("start")
    }

    fn command(&self, cmd: &str) -> Result<(), String> {
        let mut keeper = self.keeper.lock().map_err(|_| "the keeper's lock is poisoned")?;
        let stdin = keeper.stdin.as_mut().ok_or("the cluster is stopped")?;
        writeln!(stdin, "{cmd}").and_then(|()| stdin.flush()).map_err(|e| format!("the keeper is gone: {e}"))?;
        match keeper.line().as_str() {
            "done" => Ok(()),
            other => Err(format!("'{cmd}' failed: {other}")),
        }
    }
}

impl Keeper {
    fn line(&mut self) -> String {
        let mut line = String::new();
        let _ = self.stdout.read_line(&mut line);
        line.trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(keeper) = self.keeper.get_mut() {
            keeper.stdin.take();
            let _ = keeper.child.wait();
        }
    }
}

fn unprivileged_ids() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&UNPRIVILEGED) && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| format!("no user '{UNPRIVILEGED}' to run PostgreSQL as"))
}
