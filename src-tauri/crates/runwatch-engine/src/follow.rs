//! The follower: this instance follows the remotes in its store (`runwatch remotes`). A
//! supervisor thread starts, for each enabled remote, a thread that reads the remote's
//! change feed (`GET /api/v1/changes`, long-polled) from the cursor stored with the remote
//! and stores what it gets in the local inbox, cursor and all in one transaction; and a
//! thread that sends the local acknowledgements of its notifications to it. The supervisor
//! also says, once, when a remote has been unreachable for long, and when it is back.
//!
//! On a shared (PostgreSQL) store one daemon follows the remotes at a time: the supervisor
//! plays the store's [`Role::Follow`] and follows only while it holds it, so that no
//! remote's changes are fetched, nor its acknowledgements sent, by two daemons. Should the
//! role change hands while a page is on its way, storing it again is harmless: a page is
//! stored with its cursor in one transaction, the cursor never goes back, and a
//! notification already stored is not stored twice.
//!
//! A remote that cannot be reached is only that: its runs are never called stuck or
//! crashed here (they are not in this instance's runs at all; the remote's own detector
//! decides).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use runwatch_core::clock::SharedClock;
use runwatch_core::remotes::{Changes, RemoteAccess};
use runwatch_core::{Claim, DataDir, Inserted, Level, Location, NewNotification, Notification, Role, Settings, Store};
use runwatch_notify::dispatcher::DispatcherHandle;
use runwatch_remote::ssh::{SshTarget, Tunnel};
use runwatch_remote::{Client, ClientError, Target};
use serde_json::json;

use crate::EngineError;

/// How long one `GET /changes` waits on the remote for something to change. The request
/// timeout is longer, so an idle remote is one open request, not a stream of them.
const LONG_POLL_SECS: u64 = runwatch_http::follow::MAX_WAIT_SECS;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(LONG_POLL_SECS + 15);
/// The supervisor and the ack senders look at the store when the change feed says it
/// changed (a remote added, an acknowledgement made, by any process); and, in case a wake
/// was missed, after this long without one.
const IDLE_LOOK: Duration = Duration::from_secs(60);
/// How often a daemon that does not follow (another one of its store does) may ask for
/// the role on a change to the store.
const RECLAIM_MS: i64 = 1000;
/// The longest pause between attempts to reach an unreachable remote.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The file in the data dir that says where its daemon serves the API (for `runwatch
/// token --json`, which followers over ssh run to find it).
const API_URL_FILE: &str = "api-url";

/// Records where this engine serves the API; a follower over ssh reads it.
pub(crate) fn record_api_url(data_dir: &DataDir, url: &str) {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Readable by the user only, as everything in the data dir.
    let path = data_dir.path().join(API_URL_FILE);
    let written = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path).and_then(|mut f| {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(format!("{url}\n").as_bytes())
    });
    if let Err(e) = written {
        tracing::warn!("cannot record the API's address for followers over ssh: {e}");
    }
}

/// Where the last engine on this data dir served the API, if one ever did.
pub fn recorded_api_url(data_dir: &DataDir) -> Option<String> {
    std::fs::read_to_string(data_dir.path().join(API_URL_FILE)).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Called with each notification stored for a remote that is pending (the app's popups).
pub(crate) type SharedHook = Arc<Mutex<Option<Box<dyn FnMut(&Notification) + Send>>>>;

/// A flag to stop on, and a sleep it cuts short.
#[derive(Clone, Default)]
struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    fn stop(&self) {
        *self.0 .0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.0 .1.notify_all();
    }

    fn stopped(&self) -> bool {
        *self.0 .0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `d` or until stopped; true if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let guard = self.0 .0.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self.0 .1.wait_timeout_while(guard, d, |stopped| !*stopped).unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// Rung on every commit to the store (by the change feed) and on every stop: what the
/// supervisor and the ack senders wait for.
#[derive(Clone, Default)]
pub(crate) struct Bell(Arc<(Mutex<u64>, Condvar)>);

impl Bell {
    pub(crate) fn ring(&self) {
        *self.0 .0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0 .1.notify_all();
    }

    /// Waits until rung after `seen` (what the last wait returned), or `timeout`.
    fn wait(&self, seen: &mut u64, timeout: Duration) {
        let guard = self.0 .0.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self.0 .1.wait_timeout_while(guard, timeout, |rung| *rung == *seen).unwrap_or_else(PoisonError::into_inner);
        *seen = *guard;
    }
}

/// The running follower: stopping it stops every thread it started. Threads waiting for a
/// remote's answer end when it comes (or times out); they are not joined, as nothing they
/// do is lost by ending the process (a page of changes is stored with its cursor, or not).
pub(crate) struct Follower {
    stop: Stop,
    links: Links,
    bell: Bell,
    /// The supervisor, which lets the follow role go as it ends.
    supervisor: JoinHandle<()>,
}

impl Follower {
    /// What the change feed rings.
    pub(crate) fn bell(&self) -> Bell {
        self.bell.clone()
    }

    /// Stops every thread, and ends the ssh port forwards now (they are processes: they
    /// would outlive this one).
    pub(crate) fn stop(&self) {
        self.stop.stop();
        self.bell.ring();
        for link in self.links.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            if let Some(link) = link.upgrade() {
                link.close();
            }
        }
    }

    /// Waits until the supervisor has ended (after [`Follower::stop`]), at most until
    /// `deadline`: on a shared store it lets the follow role go then, so that another
    /// daemon follows at once rather than when the lease runs out.
    pub(crate) fn wait(self, deadline: std::time::Instant) {
        while !self.supervisor.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.supervisor.is_finished() && self.supervisor.join().is_err() {
            tracing::warn!("the follower panicked");
        }
    }
}

/// The links of the running followers (to close at the end).
type Links = Arc<Mutex<Vec<std::sync::Weak<Link>>>>;

/// What a follower needs from the engine.
#[derive(Clone)]
struct Shared {
    location: Location,
    clock: SharedClock,
    hook: SharedHook,
    wake: DispatcherHandle,
    links: Links,
    bell: Bell,
}

impl Shared {
    fn stored(&self, new: &[Notification], any: bool) {
        if any {
            self.wake.wake();
        }
        if new.is_empty() {
            return;
        }
        if let Some(hook) = self.hook.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            for n in new {
                hook(n);
            }
        }
    }
}

pub(crate) fn start(location: &Location, clock: SharedClock, hook: SharedHook, wake: DispatcherHandle) -> Result<Follower, EngineError> {
    let store = Store::open_at(location)?;
    let stop = Stop::default();
    let (links, bell) = (Links::default(), Bell::default());
    let shared = Shared { location: location.clone(), clock, hook, wake, links: links.clone(), bell: bell.clone() };
    let s = stop.clone();
    let supervisor = spawn("follow", move || supervise(store, shared, s))?;
    Ok(Follower { stop, links, bell, supervisor })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, EngineError> {
    std::thread::Builder::new().name(name.into()).spawn(f).map_err(|source| EngineError::Spawn { what: "follower", source })
}

/// What a running follower of one remote was started with (a change restarts it).
#[derive(PartialEq, Eq)]
struct Started {
    url: String,
    token: String,
    ca_file: Option<String>,
    deliver: bool,
}

/// A remote being followed: what it was started with, its stop, its link (if it has one).
type Running = (Started, Stop, Option<Arc<Link>>);

fn supervise(mut store: Store, shared: Shared, stop: Stop) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut seen = 0;
    // The role, as last claimed (claimed again when `again_at` comes), and when. Held by
    // another daemon, it is claimed again on a change to the store too (that daemon may
    // have let it go), at most once per RECLAIM_MS: at `retry_at`.
    let mut claim: Option<Claim> = None;
    let (mut claimed_at, mut retry_at) = (i64::MIN, i64::MAX);
    loop {
        let now = shared.clock.now();
        let due = claim.is_none_or(|c| now >= c.again_at || (!c.held && now >= retry_at));
        if due {
            (claimed_at, retry_at) = (now, i64::MAX);
            claim = match store.claim_role(Role::Follow, now) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("following remotes: {e}");
                    None
                }
            };
        }
        let held = claim.is_some_and(|c| c.held);
        let next = if held {
            match supervise_once(&mut store, &shared, &stop, &mut running) {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!("following remotes: {e}");
                    Some(Duration::from_secs(1))
                }
            }
        } else {
            // Another daemon of the store follows them (or the store is away): not this one,
            // until the role's lease runs out.
            stop_all(&mut running, &shared);
            claim.is_none().then_some(Duration::from_secs(1))
        };
        let next = match claim.map(|c| c.again_at.min(retry_at)) {
            Some(at) if at != i64::MAX => {
                let until = Duration::from_millis(u64::try_from(at - now).unwrap_or(0).max(10));
                Some(next.map_or(until, |n| n.min(until)))
            }
            _ => next,
        };
        if stop.stopped() {
            break;
        }
        let before = seen;
        shared.bell.wait(&mut seen, next.unwrap_or(IDLE_LOOK).min(IDLE_LOOK));
        if stop.stopped() {
            break;
        }
        if seen != before && claim.is_some_and(|c| !c.held) {
            retry_at = retry_at.min(claimed_at.saturating_add(RECLAIM_MS));
        }
    }
    stop_all(&mut running, &shared);
    if claim.is_some_and(|c| c.held) {
        if let Err(e) = store.release_role(Role::Follow) {
            tracing::debug!("letting the follow role go: {e}");
        }
    }
}

/// Stops following every remote (this daemon no longer plays the role, or is stopping).
fn stop_all(running: &mut HashMap<String, Running>, shared: &Shared) {
    if running.is_empty() {
        return;
    }
    for (_, (_, s, link)) in running.drain() {
        s.stop();
        if let Some(l) = &link {
            l.close();
        }
    }
    shared.bell.ring();
}

fn supervise_once(
    store: &mut Store,
    shared: &Shared,
    stop: &Stop,
    running: &mut HashMap<String, Running>,
) -> Result<Option<Duration>, runwatch_core::StoreError> {
    let wanted = store.remotes_to_follow()?;
    running.retain(|name, (started, s, link)| {
        let keep = wanted.iter().any(|r| {
            &r.name == name
                && *started == Started { url: r.url.clone(), token: r.token.clone(), ca_file: r.ca_file.clone(), deliver: r.deliver }
        });
        if !keep {
            s.stop();
            shared.bell.ring();
            if let Some(l) = &link {
                l.close();
            }
        }
        keep
    });
    for remote in wanted {
        if running.contains_key(&remote.name) || stop.stopped() {
            continue;
        }
        let s = Stop::default();
        let started =
            Started { url: remote.url.clone(), token: remote.token.clone(), ca_file: remote.ca_file.clone(), deliver: remote.deliver };
        let name = remote.name.clone();
        match follow_remote(remote, shared.clone(), s.clone()) {
            Ok(link) => {
                running.insert(name, (started, s, link));
            }
            Err(e) => tracing::warn!("cannot follow '{name}': {e}"),
        }
    }

    // Unreachable for long: one warning; back: one note.
    let now = shared.clock.now();
    let warn_after = runwatch_core::clock::secs(Settings::load(store)?.unreachable_warn_secs);
    let mut new = Vec::new();
    for (name, since) in store.remotes_unreachable_since(now - warn_after)? {
        if store.set_remote_warned(&name, true)? {
            let minutes = (now - since) / 60_000;
            let text = format!(
                "The server '{name}' followed here has been unreachable for {}; its notifications will arrive when it is back.",
                if minutes >= 1 { format!("{minutes} min") } else { format!("{} s", (now - since) / 1000) }
            );
            new.extend(note(
                store,
                Level::Warning,
                &format!("Server '{name}' is unreachable"),
                &text,
                &format!("remote-unreachable:{name}:{since}"),
                now,
            )?);
        }
    }
    for name in store.remotes_back()? {
        if store.set_remote_warned(&name, false)? {
            let text = format!("The server '{name}' can be reached again.");
            new.extend(note(store, Level::Info, &format!("Server '{name}' is back"), &text, &format!("remote-back:{name}:{now}"), now)?);
        }
    }
    shared.stored(&new, !new.is_empty());
    // When the next remote becomes unreachable for long enough to say so.
    let next = store.remotes_unreachable_since(i64::MAX)?.into_iter().map(|(_, since)| since + warn_after).min();
    Ok(next.map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0).max(10))))
}

fn note(
    store: &mut Store,
    level: Level,
    title: &str,
    body: &str,
    key: &str,
    now: i64,
) -> Result<Option<Notification>, runwatch_core::StoreError> {
    let n = NewNotification {
        level: Some(level),
        title: title.into(),
        body: body.into(),
        source: "follower".into(),
        dedupe_key: Some(key.into()),
        ..NewNotification::default()
    };
    Ok(match store.insert_notification(&n, now)? {
        Inserted::New(n) => Some(*n),
        Inserted::Duplicate(_) => None,
    })
}

/// How a follower reaches its remote: a client for `https://`; for `ssh://`, a client
/// through an `ssh` port forward, started again when it stops working (ssh killed, the
/// connection dropped, the daemon there restarted on another port).
enum Link {
    Http(Client),
    Ssh { target: SshTarget, tunnel: Mutex<Option<(Tunnel, Client)>>, closed: std::sync::atomic::AtomicBool },
}

impl Link {
    fn new(remote: &RemoteAccess) -> Result<Link, ClientError> {
        if runwatch_remote::ssh::is_ssh(&remote.url) {
            return Ok(Link::Ssh {
                target: runwatch_remote::ssh::parse_ssh_url(&remote.url)?,
                tunnel: Mutex::new(None),
                closed: std::sync::atomic::AtomicBool::new(false),
            });
        }
        let target = Target::new(&remote.url, Some(&remote.token), None, remote.ca_file.as_deref().map(std::path::Path::new))?;
        Ok(Link::Http(Client::new(target, REQUEST_TIMEOUT)?))
    }

    /// A client to the remote, connecting ssh first if needed.
    fn client(&self) -> Result<Client, ClientError> {
        match self {
            Link::Http(client) => Ok(client.clone()),
            Link::Ssh { target, tunnel, closed } => {
                let mut tunnel = tunnel.lock().unwrap_or_else(PoisonError::into_inner);
                if closed.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(ClientError::Config("stopped following".into()));
                }
                if let Some((t, client)) = tunnel.as_mut() {
                    if t.alive() {
                        return Ok(client.clone());
                    }
                }
                *tunnel = None;
                let (token, addr) = target.server_token()?;
                let forward = target.forward(addr)?;
                let client =
                    Client::new(Target::new(&forward.url(), Some(&token), None, None)?, REQUEST_TIMEOUT)?.with_host(addr.to_string());
                *tunnel = Some((forward, client.clone()));
                Ok(client)
            }
        }
    }

    /// Ends the ssh port forward for good.
    fn close(&self) {
        if let Link::Ssh { tunnel, closed, .. } = self {
            let mut tunnel = tunnel.lock().unwrap_or_else(PoisonError::into_inner);
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
            *tunnel = None;
        }
    }

    /// A request through `client` failed: over ssh, connect afresh next time (unless the
    /// other thread did already).
    fn failed(&self, client: Option<&Client>) {
        let (Link::Ssh { tunnel, .. }, Some(failed)) = (self, client) else { return };
        let mut tunnel = tunnel.lock().unwrap_or_else(PoisonError::into_inner);
        if tunnel.as_ref().is_some_and(|(_, c)| c.target().server() == failed.target().server()) {
            *tunnel = None;
        }
    }
}

/// Starts the two threads of one remote.
fn follow_remote(remote: RemoteAccess, shared: Shared, stop: Stop) -> Result<Option<Arc<Link>>, EngineError> {
    let store = Store::open_at(&shared.location)?;
    let acks_store = Store::open_at(&shared.location)?;
    let link = match Link::new(&remote) {
        Ok(link) => Arc::new(link),
        Err(e) => {
            // Said in `remotes list`; tried again when the remote is changed.
            let mut store = store;
            store.remote_unreachable(&remote.name, &e.to_string(), shared.clock.now())?;
            return Ok(None);
        }
    };
    shared.links.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::downgrade(&link));
    let (name, l, sh, s) = (remote.name.clone(), link.clone(), shared.clone(), stop.clone());
    spawn(&format!("acks {name}"), move || send_acks(acks_store, &name, &l, &sh, &s))?;
    let l = link.clone();
    spawn(&format!("follow {}", remote.name), move || read_changes(store, remote, &l, &shared, &stop))?;
    Ok(Some(link))
}

/// Reads the remote's changes from the stored cursor, for ever: at once while there is
/// more, else one long poll at a time.
fn read_changes(mut store: Store, remote: RemoteAccess, link: &Link, shared: &Shared, stop: &Stop) {
    let mut cursor = remote.cursor.to_string();
    let mut wait = 0;
    let mut backoff = Duration::from_secs(1);
    while !stop.stopped() {
        let wait_s = wait.to_string();
        let client = link.client();
        let answer = client
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| c.get("changes", &[("after", cursor.as_str()), ("wait", wait_s.as_str())]))
            .and_then(|v| {
                serde_json::from_value::<Changes>(v).map_err(|e| ClientError::Unreachable {
                    server: remote.url.clone(),
                    reason: format!("its answer is not a change feed (is it an older Runwatch?): {e}"),
                })
            });
        if stop.stopped() {
            break;
        }
        let now = shared.clock.now();
        match answer {
            Ok(changes) => {
                backoff = Duration::from_secs(1);
                match store.apply_changes(&remote.name, remote.deliver, &changes, now) {
                    Ok(applied) => {
                        cursor = changes.cursor.clone();
                        shared.stored(&applied.new_pending, applied.stored > 0 || applied.acked > 0);
                        wait = if changes.more { 0 } else { LONG_POLL_SECS };
                    }
                    Err(e) => {
                        tracing::warn!("cannot store what '{}' sent: {e}", remote.name);
                        if stop.sleep(backoff) {
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!("'{}': {e}", remote.name);
                link.failed(client.as_ref().ok());
                if let Err(e) = store.remote_unreachable(&remote.name, &e.to_string(), now) {
                    tracing::warn!("{e}");
                }
                wait = 0;
                if stop.sleep(backoff) {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sends local acknowledgements of the remote's notifications to it, oldest first; what
/// cannot be sent stays queued and is sent when the remote answers again.
fn send_acks(mut store: Store, name: &str, link: &Link, shared: &Shared, stop: &Stop) {
    let mut backoff = Duration::from_secs(1);
    let mut seen = 0;
    loop {
        let queued = match store.queued_acks(name, 500) {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!("{e}");
                Vec::new()
            }
        };
        let Some(last) = queued.last().map(|q| q.seq) else {
            shared.bell.wait(&mut seen, IDLE_LOOK);
            if stop.stopped() {
                return;
            }
            continue;
        };
        let ids: Vec<&str> = queued.iter().filter_map(|q| q.remote_id.as_deref()).collect();
        let upto = queued.iter().filter_map(|q| q.upto).max();
        let client = link.client();
        let mut sent = client.as_ref().map(drop).map_err(Clone::clone);
        if let (Ok(client), false) = (&client, ids.is_empty()) {
            sent = client.post("notifications/ack", &json!({ "ids": ids })).map(drop);
        }
        if let (Ok(client), Ok(()), Some(upto)) = (&client, &sent, upto) {
            sent = client.post("notifications/ack", &json!({ "all": true, "upto": upto })).map(drop);
        }
        match sent {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                if let Err(e) = store.acks_sent(name, last) {
                    tracing::warn!("{e}");
                }
                continue;
            }
            Err(e) => {
                tracing::debug!("acknowledgements for '{name}' wait: {e}");
                link.failed(client.as_ref().ok());
                if !e.is_retryable() {
                    let _ = store.remote_unreachable(name, &e.to_string(), shared.clock.now());
                }
            }
        }
        if stop.sleep(backoff) {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
