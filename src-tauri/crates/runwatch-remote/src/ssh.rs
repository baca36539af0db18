//! Following a server through the system `ssh` (`ssh://[user@]host[:port]`), so that
//! `~/.ssh/config`, agents, ProxyJump and ControlMaster work as they do for the user: one
//! `ssh` reads the server's API token and address (`runwatch token --json` there), and one
//! keeps a local port forwarded to the server daemon's loopback port. Always in BatchMode:
//! a background process never asks for a password; a refused host key or login is an
//! error, said in one line.
//!
//! `RUNWATCH_SSH_COMMAND` replaces `ssh` (words split on spaces, like `GIT_SSH_COMMAND`),
//! e.g. `ssh -F ~/lab/ssh_config`.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use url::Url;

use crate::ClientError;

/// The environment variable that replaces the `ssh` command.
pub const SSH_COMMAND_ENV: &str = "RUNWATCH_SSH_COMMAND";

/// How long `ssh` may take to connect (and the forward to come up).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where to reach a server over ssh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// Whether `url` is an `ssh://` URL (else it is an http(s) one).
pub fn is_ssh(url: &str) -> bool {
    url.trim().to_ascii_lowercase().starts_with("ssh://")
}

/// Checks an `ssh://[user@]host[:port]` URL.
pub fn parse_ssh_url(url: &str) -> Result<SshTarget, ClientError> {
    let bad = |why: &str| ClientError::Config(format!("bad server '{url}': {why} (e.g. ssh://me@gpu-server or ssh://gpu-server:2222)"));
    let parsed = Url::parse(url.trim()).map_err(|e| bad(&e.to_string()))?;
    if parsed.scheme() != "ssh" {
        return Err(bad("not an ssh:// URL"));
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
    if parsed.password().is_some() {
        return Err(bad("no password in the URL: ssh runs in batch mode, with keys or an agent"));
    }
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("nothing after the host and port"));
    }
    // Names ssh would read as options are not hosts.
    if host.starts_with('-') || parsed.username().starts_with('-') {
        return Err(bad("a host or user cannot start with '-'"));
    }
    Ok(SshTarget {
        user: Some(parsed.username().to_string()).filter(|u| !u.is_empty()),
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        port: parsed.port(),
    })
}

impl SshTarget {
    /// `ssh` with batch mode and the target's options, up to the destination.
    fn command(&self) -> Command {
        let configured = std::env::var(SSH_COMMAND_ENV).ok().filter(|c| !c.trim().is_empty());
        let words: Vec<String> = configured.as_deref().unwrap_or("ssh").split_whitespace().map(String::from).collect();
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]);
        cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=2"]);
        if let Some(port) = self.port {
            cmd.arg("-p").arg(port.to_string());
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    fn destination(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// Reads the server's token and API address with `runwatch token --json` over ssh.
    pub fn server_token(&self) -> Result<(String, SocketAddr), ClientError> {
        let mut cmd = self.command();
        cmd.arg("--").arg(self.destination()).args(["runwatch", "--notifications", "hidden", "--json", "token"]);
        let out = cmd.output().map_err(|e| ClientError::Config(format!("cannot run ssh: {e}")))?;
        if !out.status.success() {
            return Err(ssh_failure(&self.destination(), &String::from_utf8_lossy(&out.stderr)));
        }
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| ClientError::Unreachable {
            server: self.destination(),
            reason: "'runwatch token --json' there did not answer JSON (is Runwatch on its PATH, and new enough?)".into(),
        })?;
        let token = answer["token"].as_str().unwrap_or_default().to_string();
        let api = answer["api_url"].as_str().unwrap_or("http://127.0.0.1:8747");
        let addr = Url::parse(api)
            .ok()
            .filter(|u| u.scheme() == "http")
            .and_then(|u| Some(SocketAddr::new(u.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()?, u.port()?)))
            .ok_or_else(|| {
                ClientError::Refused(format!(
                    "the daemon on {} serves {api}: over ssh, it must serve plain HTTP on loopback",
                    self.destination()
                ))
            })?;
        if token.is_empty() {
            return Err(ClientError::Refused(format!("'runwatch token' on {} printed no token", self.destination())));
        }
        Ok((token, addr))
    }

    /// Forwards a free local loopback port to `remote` (the daemon's address on the server)
    /// and waits until it accepts connections.
    pub fn forward(&self, remote: SocketAddr) -> Result<Tunnel, ClientError> {
        let local = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| ClientError::Config(format!("no free local port: {e}")))?;
        let mut cmd = self.command();
        cmd.args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
            .arg(format!("127.0.0.1:{}:{}:{}", local.port(), remote.ip(), remote.port()))
            .arg("--")
            .arg(self.destination())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The forward ends with the follower, even one killed with -9 (which cannot clean up):
        // the kernel sends ssh SIGTERM when the thread that started it is gone.
        // SAFETY: prctl is async-signal-safe, as a pre_exec hook must be.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| ClientError::Config(format!("cannot run ssh: {e}")))?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                return Err(ssh_failure(&self.destination(), &stderr));
            }
            if TcpStream::connect_timeout(&local, Duration::from_millis(200)).is_ok() {
                return Ok(Tunnel { child, local });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ClientError::Unreachable {
                    server: self.destination(),
                    reason: "the ssh port forward did not come up in time".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(50)); // another process's doing: ssh connecting
        }
    }
}

/// One line from what ssh said: its last non-empty line (the error), e.g. "Host key
/// verification failed." or "Permission denied (publickey).".
fn ssh_failure(destination: &str, stderr: &str) -> ClientError {
    let line = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("ssh failed without saying why");
    let refused = ["Host key verification failed", "Permission denied", "REMOTE HOST IDENTIFICATION HAS CHANGED", "command not found"];
    let reason = format!("ssh: {line}");
    if refused.iter().any(|r| stderr.contains(r)) {
        ClientError::Refused(format!("cannot follow {destination} over ssh: {reason}"))
    } else {
        ClientError::Unreachable { server: destination.to_string(), reason }
    }
}

/// A running `ssh -L`: the local end of the forward. Dropping it ends ssh.
pub struct Tunnel {
    child: Child,
    local: SocketAddr,
}

impl Tunnel {
    /// `http://127.0.0.1:PORT`: the server's API through the forward.
    pub fn url(&self) -> String {
        format!("http://{}", self.local)
    }

    /// Whether ssh still runs (a killed ssh, a dropped connection: start another).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_name_a_user_host_and_port_only() {
        assert_eq!(parse_ssh_url("ssh://gpu-17").unwrap(), SshTarget { user: None, host: "gpu-17".into(), port: None });
        assert_eq!(
            parse_ssh_url("ssh://me@gpu-17:2222").unwrap(),
            SshTarget { user: Some("me".into()), host: "gpu-17".into(), port: Some(2222) }
        );
        for bad in ["ssh://", "ssh://me:pw@h", "ssh://h/path", "ssh://-oProxyCommand=x", "https://h", "ssh://h?x=1"] {
            assert!(matches!(parse_ssh_url(bad), Err(ClientError::Config(_))), "{bad}");
        }
        assert!(is_ssh("SSH://h") && !is_ssh("https://h"));
    }
}
