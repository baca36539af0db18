//! A fake HTTP server on loopback (for Slack, Workplace and webhooks) that records every
//! request and answers from a script: status codes, `Retry-After`, silence, rate limits.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// How to answer one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request and never answer (the client times out).
    Hang,
    /// Read the request and answer 200 once [`FakeServer::release`] is called: a send held
    /// in flight for as long as the test needs.
    Held,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::status(200, "ok")
    }

    pub fn status(code: u16, body: &str) -> Reply {
        Reply::Status { code, headers: vec![], body: body.into() }
    }

    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Status { code, mut headers, body } => {
                headers.push((name.into(), value.into()));
                Reply::Status { code, headers, body }
            }
            hang => hang,
        }
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    script: VecDeque<Reply>,
    /// Accept at most one request per this interval; answer 429 otherwise.
    rate_limit: Option<Duration>,
    last_accepted: Option<Instant>,
    /// Requests answered 429 by the rate limit (not recorded in `requests`).
    rejected: usize,
    /// [`Reply::Held`] requests may be answered.
    released: bool,
}

/// A running fake server; stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl FakeServer {
    pub fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        FakeServer { addr, state }
    }

    /// `http://127.0.0.1:PORT` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these replies, then 200 again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.0.lock().unwrap().script.extend(replies);
    }

    pub fn rate_limit(&self, every: Duration) {
        self.state.0.lock().unwrap().rate_limit = Some(every);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// Lets [`Reply::Held`] requests (those waiting and those to come) be answered.
    pub fn release(&self) {
        self.state.0.lock().unwrap().released = true;
        self.state.1.notify_all();
    }

    pub fn rejected(&self) -> usize {
        self.state.0.lock().unwrap().rejected
    }

    /// Waits until `n` requests were recorded, or panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut s = lock.lock().unwrap();
        while s.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "expected {n} requests within {timeout:?}, got {}: {:#?}", s.requests.len(), s.requests);
            s = cv.wait_timeout(s, left).unwrap().0;
        }
        s.requests.clone()
    }
}

fn serve(stream: TcpStream, shared: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                len = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return; // the client went away mid-request (killed): a real server drops it too
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target, None),
    };
    let request = Request { method, path, query, headers, body: String::from_utf8_lossy(&body).into(), at: Instant::now() };

    let (lock, cv) = shared;
    let reply = {
        let mut s = lock.lock().unwrap();
        let limited = match (s.rate_limit, s.last_accepted) {
            (Some(every), Some(last)) => request.at.duration_since(last) < every,
            _ => false,
        };
        if limited {
            s.rejected += 1;
            Reply::status(429, "rate limited").with_header("Retry-After", "1")
        } else {
            s.last_accepted = Some(request.at);
            s.requests.push(request);
            cv.notify_all();
            s.script.pop_front().unwrap_or_else(Reply::ok)
        }
    };
    let mut stream = stream;
    let reply = match reply {
        Reply::Held => {
            let mut s = lock.lock().unwrap();
            while !s.released {
                s = cv.wait(s).unwrap();
            }
            Reply::ok()
        }
        other => other,
    };
    match reply {
        Reply::Hang => {
            // Hold the connection open without answering until the client gives up.
            let mut sink = [0u8; 64];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = stream.read(&mut sink);
        }
        Reply::Held => unreachable!("answered above"),
        Reply::Status { code, headers, body } => {
            let mut head = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    }
}
