//! A bounded load of realistic clients through nginx, with every answer
//! checked: each task is one client on one keep-alive connection that logs in,
//! calls the protected app (GET, with a POST or PUT now and then) and checks the
//! identity the app saw, refreshes, logs out (then checks its old token is
//! refused) and logs in again. It counts every answer by operation and status,
//! and every failure: a transport error, a timeout, an unexpected status or a
//! wrong identity.
//!
//! ```ignore
//! let load = Load::start(cluster.addr(), LoadOptions::default());
//! load.until_completed(300, Duration::from_secs(10)).await;
//! /* break something */
//! let report = load.stop().await;
//! assert_eq!(report.failures, 0, "{report}");
//! ```
//!
//! [`seedflow`] is the other load here: the original service's k6 scenario
//! (ping, login, authenticate, refresh, logout with the pre-refresh token;
//! virtual users ramped up, held, thinking between iterations), with latency
//! percentiles per step. `benches/seedflow.py` runs the full-size version.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// How answers are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every answer must be the success it should be (and a logged-out token
    /// must get 401). For replica faults: nginx must hide them completely.
    Strict,
    /// Redis may be down or may have lost every session: `503` is allowed
    /// anywhere (the client backs off 20 ms), `401` on the protected app and on
    /// refresh (the client logs in again). Still failures: transport errors,
    /// timeouts, other statuses, a wrong identity, and above all a `200` for a
    /// token the client logged out.
    FailClosed,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Concurrent clients, each with its own keep-alive connection.
    pub tasks: usize,
    /// Protected requests go to `{protected_path}<task>/<n>`.
    pub protected_path: String,
    /// A refresh after every Nth protected request (0 = never).
    pub refresh_every: u64,
    /// Logout + revoked-token check + new login after every Nth (0 = never).
    pub relogin_every: u64,
    /// A request slower than this is a failure.
    pub request_timeout: Duration,
    /// The load stops by itself after this long (a bound, not a target:
    /// tests stop it earlier).
    pub max_duration: Duration,
    pub mode: Mode,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            tasks: 6,
            protected_path: "/app/load/".to_owned(),
            refresh_every: 10,
            relogin_every: 40,
            request_timeout: Duration::from_secs(5),
            max_duration: Duration::from_secs(30),
            mode: Mode::Strict,
        }
    }
}

/// What a client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Login,
    /// A request to the protected app with the client's current token.
    Protected,
    Refresh,
    Logout,
    /// A request to the protected app with a token just logged out.
    Revoked,
}

/// Live counters, readable while the load runs.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    completed: AtomicU64,
    ok: AtomicU64,
    unavailable: AtomicU64,
    failures: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Answers received (or requests failed), all kinds.
    pub completed: u64,
    /// Answers that were the success expected (2xx, or 401 for a revoked token).
    pub ok: u64,
    /// `503` answers.
    pub unavailable: u64,
    pub failures: u64,
}

pub struct Load {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<TaskStats>>,
    started: Instant,
}

impl Load {
    /// Starts the clients on the current tokio runtime; they run until
    /// [`Load::stop`] or `max_duration`.
    pub fn start(addr: SocketAddr, options: LoadOptions) -> Self {
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let deadline = started + options.max_duration;
        let tasks = (0..options.tasks)
            .map(|id| {
                let client = Client {
                    id,
                    conn: Conn { addr, sender: None },
                    options: options.clone(),
                    shared: shared.clone(),
                    stats: TaskStats::default(),
                    started,
                    deadline,
                    logins: 0,
                };
                tokio::spawn(client.run())
            })
            .collect();
        Self {
            shared,
            tasks,
            started,
        }
    }

    pub fn progress(&self) -> Progress {
        Progress {
            completed: self.shared.completed.load(Ordering::Relaxed),
            ok: self.shared.ok.load(Ordering::Relaxed),
            unavailable: self.shared.unavailable.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
        }
    }

    /// Polls until `check(progress)` holds or `within` has passed.
    pub async fn until(&self, within: Duration, check: impl Fn(Progress) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if check(self.progress()) {
                return true;
            }
            if Instant::now() >= deadline || self.tasks.iter().all(JoinHandle::is_finished) {
                return check(self.progress());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Until at least `n` more answers than now have come back.
    pub async fn until_more(&self, n: u64, within: Duration) -> bool {
        let target = self.progress().completed + n;
        self.until(within, |p| p.completed >= target).await
    }

    /// Stops the clients (each finishes its current request) and reports.
    pub async fn stop(mut self) -> LoadReport {
        self.shared.stop.store(true, Ordering::Relaxed);
        let tasks = std::mem::take(&mut self.tasks);
        let mut report = LoadReport {
            elapsed: Duration::ZERO,
            tasks: tasks.len(),
            requests: 0,
            counts: BTreeMap::new(),
            failures: 0,
            failure_samples: Vec::new(),
            unavailable: 0,
            max_latency: Duration::ZERO,
            first_unavailable: None,
            last_unavailable: None,
        };
        for task in tasks {
            let stats = match task.await {
                Ok(stats) => stats,
                Err(e) => {
                    report.failures += 1;
                    report
                        .failure_samples
                        .push(format!("client task died: {e}"));
                    continue;
                }
            };
            report.requests += stats.requests;
            for (key, n) in stats.counts {
                *report.counts.entry(key).or_default() += n;
            }
            report.failures += stats.failures;
            report.unavailable += stats.unavailable;
            for sample in stats.failure_samples {
                if report.failure_samples.len() < 20 {
                    report.failure_samples.push(sample);
                }
            }
            report.max_latency = report.max_latency.max(stats.max_latency);
            report.first_unavailable = min_opt(report.first_unavailable, stats.first_unavailable);
            report.last_unavailable = report.last_unavailable.max(stats.last_unavailable);
        }
        report.elapsed = self.started.elapsed();
        report
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Everything the clients saw.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub elapsed: Duration,
    pub tasks: usize,
    pub requests: u64,
    /// Answers by operation and status; status 0 = no answer (transport error
    /// or timeout).
    pub counts: BTreeMap<(Op, u16), u64>,
    /// Must be 0 in a passing test.
    pub failures: u64,
    /// The first 20 failures, described.
    pub failure_samples: Vec<String>,
    /// `503` answers (failures in [`Mode::Strict`]).
    pub unavailable: u64,
    pub max_latency: Duration,
    /// When the first and the last `503` came, since the start.
    pub first_unavailable: Option<Duration>,
    pub last_unavailable: Option<Duration>,
}

impl LoadReport {
    pub fn count(&self, op: Op, status: u16) -> u64 {
        self.counts.get(&(op, status)).copied().unwrap_or(0)
    }

    /// Answers to `op`, any status.
    pub fn total(&self, op: Op) -> u64 {
        self.counts
            .iter()
            .filter(|((o, _), _)| *o == op)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests by {} clients in {:.2?} ({:.0}/s), {} failures, {} unavailable, max latency {:.2?}; by op/status:",
            self.requests,
            self.tasks,
            self.elapsed,
            self.per_second(),
            self.failures,
            self.unavailable,
            self.max_latency
        )?;
        for ((op, status), n) in &self.counts {
            write!(f, " {op:?}/{status}={n}")?;
        }
        for sample in &self.failure_samples {
            write!(f, "\n  failure: {sample}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct TaskStats {
    requests: u64,
    counts: BTreeMap<(Op, u16), u64>,
    failures: u64,
    failure_samples: Vec<String>,
    unavailable: u64,
    max_latency: Duration,
    first_unavailable: Option<Duration>,
    last_unavailable: Option<Duration>,
}

/// A token pair and who it belongs to.
struct Session {
    user: String,
    access: String,
    refresh: String,
    session_id: String,
}

/// One answer: status (0 = none), body.
struct Answer {
    status: u16,
    body: Bytes,
    /// Why there was no answer.
    error: Option<String>,
}

impl Answer {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn describe(&self) -> String {
        match &self.error {
            Some(e) => e.clone(),
            None => format!(
                "{} {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)]).trim()
            ),
        }
    }
}

struct Client {
    id: usize,
    conn: Conn,
    options: LoadOptions,
    shared: Arc<Shared>,
    stats: TaskStats,
    started: Instant,
    deadline: Instant,
    logins: u64,
}

/// What the client makes of an answer.
enum Verdict {
    Ok,
    Unavailable,
    /// Allowed in [`Mode::FailClosed`]: the session is gone, log in again.
    SessionGone,
    Failure(String),
}

impl Client {
    fn running(&self) -> bool {
        !self.shared.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    async fn run(mut self) -> TaskStats {
        let mut session: Option<Session> = None;
        let mut n: u64 = 0;
        while self.running() {
            let Some(current) = session.take() else {
                session = self.login().await;
                continue;
            };
            n += 1;
            let method = match n % 8 {
                3 => Method::POST,
                7 => Method::PUT,
                _ => Method::GET,
            };
            match self.protected(Op::Protected, method, &current).await {
                Outcome::Passed => {}
                Outcome::Retry => {
                    session = Some(current);
                    continue;
                }
                Outcome::Gone => continue, // log in again
            }
            let current =
                if self.options.refresh_every > 0 && n.is_multiple_of(self.options.refresh_every) {
                    match self.refresh(&current).await {
                        Refreshed::New(next) => next,
                        Refreshed::Same => current,
                        Refreshed::Gone => continue,
                    }
                } else {
                    current
                };
            if self.options.relogin_every > 0 && n.is_multiple_of(self.options.relogin_every) {
                self.logout_and_check(&current).await;
                continue; // next round logs in as a new user
            }
            session = Some(current);
        }
        self.stats
    }

    async fn login(&mut self) -> Option<Session> {
        self.logins += 1;
        let user = format!("load-{}-{}", self.id, self.logins);
        let answer = self
            .send(
                Method::POST,
                "/login",
                None,
                Some(json!({ "user_id": user })),
            )
            .await;
        let verdict = match answer.status {
            200 => match answer.json() {
                Some(pair) => match (
                    pair["access"].as_str(),
                    pair["refresh"].as_str(),
                    pair["session_id"].as_str(),
                ) {
                    (Some(access), Some(refresh), Some(sid)) => {
                        self.record(Op::Login, &answer, Verdict::Ok);
                        return Some(Session {
                            user,
                            access: access.to_owned(),
                            refresh: refresh.to_owned(),
                            session_id: sid.to_owned(),
                        });
                    }
                    _ => Verdict::Failure(format!("login: no token pair in {pair}")),
                },
                None => Verdict::Failure(format!("login: not JSON: {}", answer.describe())),
            },
            503 => Verdict::Unavailable,
            _ => Verdict::Failure(format!("login: {}", answer.describe())),
        };
        self.record(Op::Login, &answer, verdict);
        None
    }

    /// A protected request; `Passed` if it passed with the right identity.
    async fn protected(&mut self, op: Op, method: Method, session: &Session) -> Outcome {
        let path = format!(
            "{}{}/{}",
            self.options.protected_path, self.id, self.stats.requests
        );
        let body = (method != Method::GET).then(|| json!({ "n": self.stats.requests }));
        let answer = self
            .send(method.clone(), &path, Some(&session.access), body)
            .await;
        let verdict = match (op, answer.status) {
            (Op::Protected, 200) => match answer.json() {
                Some(echo)
                    if echo["user_id"] == session.user.as_str()
                        && echo["session_id"] == session.session_id.as_str()
                        && echo["method"] == method.as_str() =>
                {
                    Verdict::Ok
                }
                _ => Verdict::Failure(format!(
                    "{method} {path} as {} ({}): the app saw {}",
                    session.user,
                    session.session_id,
                    answer.describe()
                )),
            },
            (Op::Revoked, 401) => Verdict::Ok,
            (Op::Revoked, 200) => Verdict::Failure(format!(
                "FAIL OPEN: a logged-out token of {} passed: {}",
                session.user,
                answer.describe()
            )),
            (_, 503) => Verdict::Unavailable,
            (Op::Protected, 401) if self.options.mode == Mode::FailClosed => Verdict::SessionGone,
            _ => Verdict::Failure(format!(
                "{op:?} {method} {path} as {}: {}",
                session.user,
                answer.describe()
            )),
        };
        let outcome = match verdict {
            Verdict::Ok => Outcome::Passed,
            Verdict::Unavailable => Outcome::Retry,
            Verdict::SessionGone | Verdict::Failure(_) => Outcome::Gone,
        };
        self.record(op, &answer, verdict);
        outcome
    }

    async fn refresh(&mut self, session: &Session) -> Refreshed {
        let answer = self
            .send(
                Method::POST,
                "/refresh",
                None,
                Some(json!({ "refresh": session.refresh })),
            )
            .await;
        let (verdict, result) = match answer.status {
            200 => match answer.json() {
                Some(pair)
                    if pair["session_id"] == session.session_id.as_str()
                        && pair["access"].is_string()
                        && pair["refresh"].is_string() =>
                {
                    let next = Session {
                        user: session.user.clone(),
                        access: pair["access"].as_str().unwrap_or_default().to_owned(),
                        refresh: pair["refresh"].as_str().unwrap_or_default().to_owned(),
                        session_id: session.session_id.clone(),
                    };
                    (Verdict::Ok, Refreshed::New(next))
                }
                _ => (
                    Verdict::Failure(format!("refresh: {}", answer.describe())),
                    Refreshed::Gone,
                ),
            },
            503 => (Verdict::Unavailable, Refreshed::Same),
            401 if self.options.mode == Mode::FailClosed => (Verdict::SessionGone, Refreshed::Gone),
            _ => (
                Verdict::Failure(format!(
                    "refresh as {}: {}",
                    session.user,
                    answer.describe()
                )),
                Refreshed::Gone,
            ),
        };
        self.record(Op::Refresh, &answer, verdict);
        result
    }

    async fn logout_and_check(&mut self, session: &Session) {
        let answer = self
            .send(Method::POST, "/logout", Some(&session.access), None)
            .await;
        let verdict = match answer.status {
            200 => Verdict::Ok,
            503 => Verdict::Unavailable,
            _ => Verdict::Failure(format!("logout as {}: {}", session.user, answer.describe())),
        };
        let logged_out = matches!(verdict, Verdict::Ok);
        self.record(Op::Logout, &answer, verdict);
        if logged_out {
            // Whichever replica answers, the token must be dead now.
            self.protected(Op::Revoked, Method::GET, session).await;
        }
    }

    fn record(&mut self, op: Op, answer: &Answer, verdict: Verdict) {
        self.shared.completed.fetch_add(1, Ordering::Relaxed);
        *self.stats.counts.entry((op, answer.status)).or_default() += 1;
        match verdict {
            Verdict::Ok => {
                self.shared.ok.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::SessionGone => {}
            Verdict::Unavailable => {
                self.shared.unavailable.fetch_add(1, Ordering::Relaxed);
                self.stats.unavailable += 1;
                let at = self.started.elapsed();
                self.stats.first_unavailable.get_or_insert(at);
                self.stats.last_unavailable = Some(at);
                if self.options.mode == Mode::Strict {
                    self.fail(format!("{op:?}: {}", answer.describe()));
                }
            }
            Verdict::Failure(what) => self.fail(what),
        }
    }

    fn fail(&mut self, what: String) {
        self.shared.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.failures += 1;
        if self.stats.failure_samples.len() < 20 {
            let at = self.started.elapsed();
            self.stats
                .failure_samples
                .push(format!("[client {} at {at:.3?}] {what}", self.id));
        }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.stats.requests += 1;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.conn.addr.to_string());
        if let Some(token) = bearer {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(value) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(value.to_string()))
            }
            None => Full::default(),
        };
        let started = Instant::now();
        let answer = match request.body(body) {
            Ok(request) => {
                match tokio::time::timeout(self.options.request_timeout, self.conn.send(request))
                    .await
                {
                    Ok(Ok((status, body))) => Answer {
                        status: status.as_u16(),
                        body,
                        error: None,
                    },
                    Ok(Err(e)) => {
                        self.conn.sender = None;
                        Answer {
                            status: 0,
                            body: Bytes::new(),
                            error: Some(format!("transport error: {e}")),
                        }
                    }
                    Err(_) => {
                        self.conn.sender = None;
                        Answer {
                            status: 0,
                            body: Bytes::new(),
                            error: Some(format!(
                                "no answer within {:?}",
                                self.options.request_timeout
                            )),
                        }
                    }
                }
            }
            Err(e) => Answer {
                status: 0,
                body: Bytes::new(),
                error: Some(format!("bad request: {e}")),
            },
        };
        self.stats.max_latency = self.stats.max_latency.max(started.elapsed());
        if answer.status == 503 && self.options.mode == Mode::FailClosed {
            // Like a client honouring Retry-After, only quicker.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answer
    }
}

enum Outcome {
    Passed,
    /// Unavailable: try again with the same session.
    Retry,
    /// Refused or wrong: log in again.
    Gone,
}

enum Refreshed {
    New(Session),
    /// Not refreshed (unavailable): keep using the current pair.
    Same,
    /// The session is gone (or the answer was wrong): log in again.
    Gone,
}

/// One keep-alive HTTP/1.1 connection, reopened when the server closed it.
struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Conn {
    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), BoxError> {
        // A connection the server closed after its last answer (keepalive
        // limit) is replaced before sending, not counted as a failure.
        if let Some(sender) = self.sender.as_mut()
            && sender.ready().await.is_err()
        {
            self.sender = None;
        }
        let sender = match self.sender.as_mut() {
            Some(sender) => sender,
            None => {
                let stream = tokio::net::TcpStream::connect(self.addr).await?;
                let _ = stream.set_nodelay(true);
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                self.sender.insert(sender)
            }
        };
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((parts.status, body))
    }
}

// --- the original service's load test ----------------------------------------

/// The steps of one iteration of the original service's k6 scenario, in order:
/// `GET /ping`, `POST /login {"user_id": <vu>}`, `GET /authenticate` with the
/// access token, `POST /refresh`, and `POST /logout` with the access token
/// from *before* the refresh (SPEC §2: any correctly signed, unexpired access
/// token of the session logs it out, even a superseded one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Ping,
    Login,
    Authenticate,
    Refresh,
    Logout,
}

impl Step {
    pub const ALL: [Self; 5] = [
        Self::Ping,
        Self::Login,
        Self::Authenticate,
        Self::Refresh,
        Self::Logout,
    ];
}

/// The k6 options, scaled: `vus` virtual users started evenly over `ramp`
/// (0 → vus linearly), all of them for `hold`, then no new iteration starts;
/// each one thinks a uniform 0–`think_max` after every iteration. The
/// original: 1,000 VUs, ramp 20 s, hold 10 s, think 0–5 s
/// (`scripts/bench --seedflow`).
#[derive(Debug, Clone)]
pub struct SeedflowOptions {
    pub vus: usize,
    pub ramp: Duration,
    pub hold: Duration,
    pub think_max: Duration,
    /// A request slower than this fails (and the iteration stops there).
    pub request_timeout: Duration,
}

impl Default for SeedflowOptions {
    /// The shortened run of the e2e tests.
    fn default() -> Self {
        Self {
            vus: 50,
            ramp: Duration::from_secs(2),
            hold: Duration::from_secs(2),
            think_max: Duration::from_millis(200),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// What one step got: every request counted, its latency kept.
#[derive(Debug, Clone, Default)]
pub struct StepReport {
    pub count: u64,
    /// Answers other than `200`, transport errors and timeouts.
    pub failed: u64,
    /// Microseconds, of every request (failed ones too); sorted by [`seedflow`].
    latencies_us: Vec<u64>,
}

impl StepReport {
    /// The `p`-th percentile (0–100) of the latencies, nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies_us, p)
    }
}

fn percentile(sorted_us: &[u64], p: f64) -> Duration {
    if sorted_us.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    Duration::from_micros(sorted_us[rank.clamp(1, sorted_us.len()) - 1])
}

#[derive(Debug, Clone)]
pub struct SeedflowReport {
    pub options: SeedflowOptions,
    /// From the start to the last in-flight iteration's end.
    pub elapsed: Duration,
    /// Iterations whose five steps all succeeded.
    pub iterations: u64,
    pub steps: BTreeMap<Step, StepReport>,
    /// The first 20 failures, described.
    pub failure_samples: Vec<String>,
}

impl SeedflowReport {
    pub fn requests(&self) -> u64 {
        self.steps.values().map(|s| s.count).sum()
    }

    pub fn failed(&self) -> u64 {
        self.steps.values().map(|s| s.failed).sum()
    }

    pub fn step(&self, step: Step) -> StepReport {
        self.steps.get(&step).cloned().unwrap_or_default()
    }

    /// The `p`-th percentile over every request of every step.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut all: Vec<u64> = self
            .steps
            .values()
            .flat_map(|s| s.latencies_us.iter().copied())
            .collect();
        all.sort_unstable();
        percentile(&all, p)
    }
}

impl fmt::Display for SeedflowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        write!(
            f,
            "{} VUs (ramp {:?}, hold {:?}, think 0-{:?}): {} iterations, {} requests in {:.2?}, {} failed; \
             p50 {:.2?} p95 {:.2?} p99 {:.2?}",
            o.vus,
            o.ramp,
            o.hold,
            o.think_max,
            self.iterations,
            self.requests(),
            self.elapsed,
            self.failed(),
            self.percentile(50.0),
            self.percentile(95.0),
            self.percentile(99.0),
        )?;
        for (step, s) in &self.steps {
            write!(
                f,
                "\n  {step:?}: {} requests, {} failed, p50 {:.2?} p95 {:.2?} p99 {:.2?}",
                s.count,
                s.failed,
                s.percentile(50.0),
                s.percentile(95.0),
                s.percentile(99.0)
            )?;
        }
        for sample in &self.failure_samples {
            write!(f, "\n  failure: {sample}")?;
        }
        Ok(())
    }
}

/// Runs the scenario against `addr` (nginx's public port) on the current
/// tokio runtime, each VU a task with its own keep-alive connection, as k6's
/// are. When the hold ends no iteration starts and thinking stops; the
/// iterations in flight finish (k6's graceful stop), and their requests are
/// counted. Bounded: the ramp, the hold and at most five request timeouts.
pub async fn seedflow(addr: SocketAddr, options: SeedflowOptions) -> SeedflowReport {
    let started = Instant::now();
    let stop_at = started + options.ramp + options.hold;
    let vus = options.vus.max(1);
    let tasks: Vec<JoinHandle<VuStats>> = (0..vus)
        .map(|index| {
            // VU n (1-based, k6's __VU) starts at (n-1)/vus of the ramp.
            let start_at = started + options.ramp.mul_f64(index as f64 / vus as f64);
            let vu = Vu {
                id: index as u64 + 1,
                conn: Conn { addr, sender: None },
                timeout: options.request_timeout,
                stats: VuStats::default(),
            };
            tokio::spawn(vu.run(start_at, stop_at, options.think_max))
        })
        .collect();
    let mut report = SeedflowReport {
        options,
        elapsed: Duration::ZERO,
        iterations: 0,
        steps: Step::ALL
            .iter()
            .map(|s| (*s, StepReport::default()))
            .collect(),
        failure_samples: Vec::new(),
    };
    for task in tasks {
        match task.await {
            Ok(stats) => {
                report.iterations += stats.iterations;
                for (step, s) in stats.steps {
                    let into = report.steps.entry(step).or_default();
                    into.count += s.count;
                    into.failed += s.failed;
                    into.latencies_us.extend(s.latencies_us);
                }
                for sample in stats.failure_samples {
                    if report.failure_samples.len() < 20 {
                        report.failure_samples.push(sample);
                    }
                }
            }
            Err(e) => report.failure_samples.push(format!("VU task died: {e}")),
        }
    }
    for s in report.steps.values_mut() {
        s.latencies_us.sort_unstable();
    }
    report.elapsed = started.elapsed();
    report
}

#[derive(Debug, Default)]
struct VuStats {
    iterations: u64,
    steps: BTreeMap<Step, StepReport>,
    failure_samples: Vec<String>,
}

struct Vu {
    id: u64,
    conn: Conn,
    timeout: Duration,
    stats: VuStats,
}

impl Vu {
    async fn run(mut self, start_at: Instant, stop_at: Instant, think_max: Duration) -> VuStats {
        tokio::time::sleep_until(start_at.into()).await;
        while Instant::now() < stop_at {
            if self.iteration().await {
                self.stats.iterations += 1;
            }
            let think = think_max.mul_f64(rand::random::<f64>());
            let wake = (Instant::now() + think).min(stop_at);
            tokio::time::sleep_until(wake.into()).await;
        }
        self.stats
    }

    /// One pass of the five steps; false at the first that failed (the
    /// later ones need its answer).
    async fn iteration(&mut self) -> bool {
        if self
            .step(Step::Ping, Method::GET, "/ping", None, None)
            .await
            .is_none()
        {
            return false;
        }
        let login = json!({ "user_id": self.id });
        let Some(pair) = self
            .step(Step::Login, Method::POST, "/login", None, Some(login))
            .await
        else {
            return false;
        };
        let Some((access, refresh)) = self.pair(Step::Login, &pair) else {
            return false;
        };
        if self
            .step(
                Step::Authenticate,
                Method::GET,
                "/authenticate",
                Some(&access),
                None,
            )
            .await
            .is_none()
        {
            return false;
        }
        let body = json!({ "refresh": refresh });
        let Some(next) = self
            .step(Step::Refresh, Method::POST, "/refresh", None, Some(body))
            .await
        else {
            return false;
        };
        if self.pair(Step::Refresh, &next).is_none() {
            return false;
        }
        // The access token from before the refresh: superseded, still good
        // for logging the session out.
        self.step(Step::Logout, Method::POST, "/logout", Some(&access), None)
            .await
            .is_some()
    }

    /// The token pair of a `200` answer, or a failure of `step`.
    fn pair(&mut self, step: Step, body: &Bytes) -> Option<(String, String)> {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let pair = json.as_ref().and_then(|v| {
            Some((
                v["access"].as_str()?.to_owned(),
                v["refresh"].as_str()?.to_owned(),
            ))
        });
        if pair.is_none() {
            let entry = self.stats.steps.entry(step).or_default();
            entry.failed += 1;
            self.fail(format!(
                "{step:?}: 200 without a token pair: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        pair
    }

    /// One request; its body if it was answered `200`, else `None` (counted
    /// as failed).
    async fn step(
        &mut self,
        step: Step,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Option<Bytes> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.conn.addr.to_string());
        if let Some(token) = bearer {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(value) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(value.to_string()))
            }
            None => Full::default(),
        };
        let request = request.body(body).expect("a well-formed request");
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.conn.send(request)).await;
        let latency = started.elapsed();
        let entry = self.stats.steps.entry(step).or_default();
        entry.count += 1;
        entry.latencies_us.push(latency.as_micros() as u64);
        let (problem, connection_lost) = match result {
            Ok(Ok((StatusCode::OK, body))) => return Some(body),
            Ok(Ok((status, body))) => (
                format!(
                    "{status} {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
                ),
                false,
            ),
            Ok(Err(e)) => (format!("transport error: {e}"), true),
            Err(_) => (format!("no answer within {:?}", self.timeout), true),
        };
        entry.failed += 1;
        if connection_lost {
            self.conn.sender = None;
        }
        self.fail(format!("{step:?}: {problem}"));
        None
    }

    fn fail(&mut self, what: String) {
        if self.stats.failure_samples.len() < 20 {
            self.stats
                .failure_samples
                .push(format!("[VU {}] {what}", self.id));
        }
    }
}
