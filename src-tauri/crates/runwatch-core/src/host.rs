//! Which host this process runs on: the name runs, roles and messages are labelled with.

/// The host a daemon says it runs on: whose Aim runs it judges on a shared store, and who
/// holds a role. `RUNWATCH_HOST` overrides the system's host name (several daemons on one
/// machine, containers whose host names change).
pub const HOST_ENV: &str = "RUNWATCH_HOST";

/// This daemon's host: [`HOST_ENV`], else the system's host name.
pub fn daemon_host() -> String {
    std::env::var(HOST_ENV).ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).unwrap_or_else(host_name)
}

/// The system's host name ("unknown" if the system will not say).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
