//! An OpenSSH server of a test's (or benchmark's) own, on a loopback port: a throwaway host
//! key, one authorized key, and sessions that get the environment given (a data dir, the
//! build's `runwatch` on the PATH). Debian's `openssh-server` (.ci/bootstrap installs it).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{wait_until, Running};

/// Where Debian puts the server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; dropping it stops it.
pub struct Sshd {
    _process: Running,
    pub port: u16,
    /// Its host key (`ssh-ed25519 AAAA… comment`), for a known_hosts file.
    pub host_key_pub: String,
}

/// Makes an ed25519 key pair at `path` (and `path.pub`); returns the public key.
pub fn keygen(path: &Path) -> String {
    let ok = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "runwatch-test", "-f"]).arg(path).status().unwrap();
    assert!(ok.success(), "ssh-keygen failed");
    std::fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_string()
}

/// This user's name (sshd lets the authorized key in as this user).
pub fn user() -> String {
    String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string()
}

fn is_root() -> bool {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap().trim() == "0"
}

impl Sshd {
    /// Starts sshd with its files in `dir`, letting `authorized` (a public key) in, and
    /// giving sessions `RUNWATCH_HOME=runwatch_home` and `bin_dir` first on the PATH.
    pub fn start(dir: &Path, authorized: &str, runwatch_home: &Path, bin_dir: &Path) -> Sshd {
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: install Debian's openssh-server (.ci/bootstrap does)");
        std::fs::create_dir_all(dir).unwrap();
        let host_key = dir.join("host_key");
        let host_key_pub = keygen(&host_key);
        std::fs::write(dir.join("authorized_keys"), format!("{authorized}\n")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\nPermitRootLogin prohibit-password\n\
             SetEnv RUNWATCH_HOME={} PATH={}:/usr/local/bin:/usr/bin:/bin\n",
            host_key.display(),
            dir.join("authorized_keys").display(),
            runwatch_home.display(),
            bin_dir.display()
        );
        let config_file = dir.join("sshd_config");
        std::fs::write(&config_file, config).unwrap();
        // As root, sshd wants its privilege separation directory (Debian makes it at boot).
        if is_root() {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let process = Running::spawn(Command::new(SSHD).arg("-D").arg("-e").arg("-f").arg(&config_file));
        wait_until("sshd listening", || TcpStream::connect(("127.0.0.1", port)).ok());
        Sshd { _process: process, port, host_key_pub }
    }

    /// An ssh client config entry: `alias` to this server with `identity`, trusting the
    /// host keys in `known_hosts` only.
    pub fn host_entry(&self, alias: &str, identity: &Path, known_hosts: &Path) -> String {
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n  IdentityAgent none\n",
            self.port,
            user(),
            identity.display(),
            known_hosts.display()
        )
    }

    /// A known_hosts file at `path` that trusts this server's host key.
    pub fn known_hosts(&self, path: &Path) -> PathBuf {
        std::fs::write(path, format!("[127.0.0.1]:{} {}\n", self.port, self.host_key_pub)).unwrap();
        path.to_path_buf()
    }
}
