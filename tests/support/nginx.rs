//! A real nginx in front of tokengate replicas on loopback: the shared
//! `nginx/tokengate.locations.conf` and `nginx/tokengate.protect.conf` included
//! from a generated native config (nginx/README.md), in a private prefix
//! directory, plus an echo app and a trivial-auth ceiling in the same nginx.
//!
//! What the generated config serves on `127.0.0.1:<front>`:
//!   * the public API (`/login /register /refresh /logout /ping /health
//!     /authenticate`, ...), from tokengate.locations.conf, proxied to
//!     `upstream tokengate`;
//!   * `/app/` — protected by tokengate.protect.conf, proxied to the echo app,
//!     which answers
//!     `{"app":"echo","method":..,"user_id":..,"session_id":..,"token_id":..,"scope":..}`
//!     with the `X-User-Id` / `X-Session-Id` / `X-Token-Id` / `X-Scope` it received
//!     ("" for a header it did not get); `/app/admin/` the same for the "admin" scope.
//!     It answers the `X-Request-Id` it received back, as an app should, and the
//!     conventional identity headers it received as [`ECHO_HEADERS`] (absent
//!     when it got none);
//!   * `/reports/` — the same app for the "reports:read" scope, as nginx/nginx.conf
//!     protects it for services' API tokens;
//!   * `/forwarding/` — the same app, for a location that opts in to pass the
//!     client's `Authorization` on (`$tokengate_app_authorization`); the app
//!     answers the `Authorization` it received as `X-Echo-Authorization`
//!     (everywhere else it receives none);
//!   * `/trivial/` — the same echo app behind `auth_request` to a location that
//!     only does `return 204`: the ceiling of any external auth service (for the
//!     benchmark's `nginx_trivial_auth` case);
//!   * everything else: JSON 404.
//!
//! And on `127.0.0.1:<grpc>`, HTTP/2 cleartext: the gRPC API from
//! tokengate.grpc.conf, proxied to `upstream tokengate_grpc` (the replicas'
//! `grpc.port`s). `listen ... http2`, the parameter Debian 12's nginx 1.22
//! knows (nginx/nginx.conf, for 1.28, has the newer `http2 on;`).
//!
//! `upstream tokengate` lists the replicas' TCP ports, or, with
//! [`NginxOptions::upstream_sockets`], their Unix sockets (`server unix:PATH;`,
//! the one-host setup of nginx/README.md).
//!
//! With [`NginxOptions::browser`], also the browser setup of `nginx/browser/`
//! (SPEC §15), its shared files included as `nginx/browser/nginx.conf` includes
//! them, on `127.0.0.1:<browser>` (a browser reaches it as
//! `http://localhost:<browser>`, a secure context, so `Secure` cookies work):
//!   * `/oauth2/...` and the internal cookie gate, from tokengate.browser.conf,
//!     and the Bearer API beside them (tokengate.locations.conf);
//!   * `/` — a static site ([`BROWSER_SITE`]), behind the cookie gate;
//!   * `/app/` — the echo app's `/whoami/`, behind the cookie gate, which answers
//!     what a browser app learns: `{"app":"whoami","path":..,"user_id":..,
//!     "session_id":..,"scope":..,"amr":..,"auth_request_user":..,
//!     "auth_request_email":..,"remote_user":..,"remote_email":..,
//!     "tokengate_cookie":"present"|"absent","probe_cookie":..}` (the last the
//!     value of a cookie named `probe`, to show other cookies pass);
//!     `/app/admin/` the same for sessions with the second factor
//!     (`$tokengate_require otp`);
//!   * `/api/` — the echo app behind the Bearer gate (tokengate.protect.conf), as
//!     a program would call it on the same server.
//!
//! And on `127.0.0.1:<elsewhere>`, another origin with no tokengate at all: a
//! blank page, `/blank.html`, for tests that play a hostile site
//! (`http://127.0.0.1:<elsewhere>` is cross-site to `http://localhost:<browser>`,
//! `http://localhost:<elsewhere>` same-site but cross-origin).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ports::free_port;
use super::procs;

/// The identity headers the echo app received (opt-in in tokengate:
/// `authenticate.identity_headers`), and the response header it answers each
/// back in: `(received, answered)`.
pub const ECHO_HEADERS: [(&str, &str); 4] = [
    ("x-auth-request-user", "x-echo-auth-request-user"),
    ("x-auth-request-email", "x-echo-auth-request-email"),
    ("remote-user", "x-echo-remote-user"),
    ("remote-email", "x-echo-remote-email"),
];

/// The nginx to run: `$TOKENGATE_NGINX`, else Debian's `/usr/sbin/nginx` (not on
/// a normal user's PATH), else `nginx` on PATH.
pub fn find_nginx() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOKENGATE_NGINX") {
        return Some(PathBuf::from(path));
    }
    let debian = Path::new("/usr/sbin/nginx");
    if debian.is_file() {
        return Some(debian.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|path| path.is_file())
    })
}

/// Where the shared files are: `$TOKENGATE_NGINX_CONF_DIR` (to try a variant),
/// else the repository's `nginx/` directory, as compiled in.
pub fn shared_conf_dir() -> PathBuf {
    std::env::var_os("TOKENGATE_NGINX_CONF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx"))
}

/// How to generate the native config.
#[derive(Debug, Clone)]
pub struct NginxOptions {
    /// Where `tokengate.locations.conf` and `tokengate.protect.conf` are.
    pub conf_dir: PathBuf,
    /// `worker_processes`: `None` = `auto` (one per core).
    pub workers: Option<usize>,
    /// Write `<prefix>/access.log` (tab-separated, auth subrequests included,
    /// with nginx's request id; see [`AccessLine`]). Off for benchmarks.
    pub access_log: bool,
    /// The public port; `None` = a free one.
    pub front_port: Option<u16>,
    /// The gRPC port; `None` = a free one.
    pub grpc_port: Option<u16>,
    /// Reach the replicas' HTTP over these Unix sockets (`server.unix_socket`),
    /// `server unix:PATH;` in `upstream tokengate`, instead of their TCP ports;
    /// empty = TCP. The gRPC upstream stays on TCP (tokengate serves gRPC on
    /// TCP only). The replicas' sockets are 0660, so when nginx starts as root
    /// its workers run as root's user and group (`user root root;`) rather than
    /// nginx's default `nobody`, which could not connect: the "nginx in the
    /// socket's group" of nginx/README.md, on one host.
    pub upstream_sockets: Vec<PathBuf>,
    /// Also serve the browser setup of `nginx/browser/` and the "elsewhere"
    /// origin (see the module's doc).
    pub browser: bool,
}

/// The static site behind the cookie gate: `(path, content)`.
pub const BROWSER_SITE: [(&str, &str); 2] = [
    ("index.html", include_str!("../browser/site/index.html")),
    (
        "docs/page.html",
        include_str!("../browser/site/docs/page.html"),
    ),
];

/// The hostile origin's blank page.
const ELSEWHERE_PAGE: &str =
    "<!doctype html>\n<meta charset=\"utf-8\">\n<title>Elsewhere</title>\n<p>Another site.</p>\n";

impl Default for NginxOptions {
    fn default() -> Self {
        Self {
            conf_dir: shared_conf_dir(),
            workers: None,
            access_log: true,
            front_port: None,
            grpc_port: None,
            upstream_sockets: Vec::new(),
            browser: false,
        }
    }
}

/// A running nginx (master + workers, in their own process group).
pub struct Nginx {
    binary: PathBuf,
    prefix: PathBuf,
    front_port: u16,
    grpc_port: u16,
    app_port: u16,
    /// The browser site and the other origin (0 without `browser`).
    browser_port: u16,
    elsewhere_port: u16,
    child: Option<Child>,
}

impl Nginx {
    /// Writes `<prefix>/nginx.conf` for `upstreams` (the replica ports) and
    /// `grpc_upstreams` (their gRPC ports) and starts nginx; returns once it
    /// answers on the front port and the echo app answers. Retries on fresh
    /// ports if one was taken meanwhile.
    pub fn start(
        binary: &Path,
        prefix: &Path,
        upstreams: &[u16],
        grpc_upstreams: &[u16],
        options: &NginxOptions,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(prefix.join("tmp"))
            .map_err(|e| format!("create {}: {e}", prefix.display()))?;
        if options.browser {
            write_browser_files(prefix)?;
        }
        let mut last_error = String::new();
        for _ in 0..5 {
            let front_port = options.front_port.unwrap_or_else(free_port);
            let grpc_port = options.grpc_port.unwrap_or_else(free_port);
            let app_port = free_port();
            let (browser_port, elsewhere_port) = if options.browser {
                (free_port(), free_port())
            } else {
                (0, 0)
            };
            let ports = Ports {
                front: front_port,
                grpc: grpc_port,
                app: app_port,
                browser: browser_port,
                elsewhere: elsewhere_port,
            };
            let conf = render(prefix, upstreams, grpc_upstreams, ports, options);
            let conf_path = prefix.join("nginx.conf");
            std::fs::write(&conf_path, conf)
                .map_err(|e| format!("write {}: {e}", conf_path.display()))?;
            let mut nginx = Self {
                binary: binary.to_path_buf(),
                prefix: prefix.to_path_buf(),
                front_port,
                grpc_port,
                app_port,
                browser_port,
                elsewhere_port,
                child: None,
            };
            match nginx.spawn() {
                Ok(()) => return Ok(nginx),
                Err(e)
                    if options.front_port.is_none()
                        && options.grpc_port.is_none()
                        && e.contains("Address already in use") =>
                {
                    last_error = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let stderr = std::fs::File::create(self.prefix.join("stderr.log"))
            .map_err(|e| format!("create nginx stderr.log: {e}"))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("-p")
            .arg(format!("{}/", self.prefix.display()))
            .arg("-c")
            .arg(self.prefix.join("nginx.conf"))
            // Errors before the config is read (nginx >= 1.19.5).
            .arg("-e")
            .arg(self.prefix.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // Same process group as its starter: a Ctrl-C that kills `cargo test`
        // (no Drop runs then) stops nginx too.
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);

        let front = self.front_addr();
        let app = SocketAddr::from(([127, 0, 0, 1], self.app_port));
        let ready = procs::poll_until(Duration::from_secs(10), || {
            if self.exited() {
                return true;
            }
            procs::http_status(front, "/_cluster_ready", Duration::from_millis(500)).is_some()
                && procs::http_status(app, "/", Duration::from_millis(500)) == Some(200)
        });
        if self.exited() || !ready {
            let log = self.error_log();
            self.stop();
            return Err(format!("nginx did not start: {}", log.trim()));
        }
        Ok(())
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    pub fn front_port(&self) -> u16 {
        self.front_port
    }

    pub fn front_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.front_port))
    }

    /// The gRPC server's port (HTTP/2 cleartext).
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.grpc_port))
    }

    pub fn app_port(&self) -> u16 {
        self.app_port
    }

    /// The browser site's port (`NginxOptions::browser`); reach it as
    /// `http://localhost:<port>`.
    pub fn browser_port(&self) -> u16 {
        assert!(
            self.browser_port != 0,
            "nginx was started without `browser`"
        );
        self.browser_port
    }

    /// The other origin's port (`NginxOptions::browser`).
    pub fn elsewhere_port(&self) -> u16 {
        assert!(
            self.elsewhere_port != 0,
            "nginx was started without `browser`"
        );
        self.elsewhere_port
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What nginx wrote to its error log (and stderr) so far.
    pub fn error_log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.prefix.join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    /// The access log so far, parsed (empty if the access log is off).
    pub fn access_log(&self) -> Vec<AccessLine> {
        std::fs::read_to_string(self.prefix.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(AccessLine::parse)
            .collect()
    }

    /// Fast shutdown (SIGTERM: the master stops its workers and exits), bounded;
    /// SIGKILL to the workers and the master as a last resort.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            let _ = procs::signal(i64::from(pid), "TERM");
            if procs::wait_child(&mut child, Duration::from_secs(5)).is_none() {
                procs::kill_with_children(pid);
                let _ = child.wait();
            }
        }
    }

    /// Leaves nginx running (for `cluster up`); returns its pid.
    pub fn detach(mut self) -> Option<u32> {
        self.child.take().map(|child| child.id())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One line of the generated access log: a client request, or (with
/// `log_subrequest on`) an auth subrequest to `/_tokengate/authenticate`.
#[derive(Debug, Clone)]
pub struct AccessLine {
    /// Seconds since the epoch, with milliseconds.
    pub msec: f64,
    pub status: u16,
    pub method: String,
    pub uri: String,
    /// Every upstream nginx tried for this request, in order (`host:port`);
    /// more than one means nginx retried on another server.
    pub upstreams: Vec<String>,
    /// Their statuses, in the same order (`502` for a try that failed).
    pub upstream_statuses: Vec<String>,
    /// nginx's `$request_id`: the `X-Request-Id` tokengate and the app got (an
    /// auth subrequest has its client request's).
    pub request_id: String,
}

impl AccessLine {
    fn parse(line: &str) -> Option<Self> {
        let mut f = line.split('\t');
        let msec = f.next()?.parse().ok()?;
        let status = f.next()?.parse().ok()?;
        let method = f.next()?.to_owned();
        let uri = f.next()?.to_owned();
        // "a, b" for retries, "a : b" across internal redirects; "-" for none.
        let split = |s: &str| -> Vec<String> {
            s.replace(" : ", ", ")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "-")
                .map(str::to_owned)
                .collect()
        };
        let upstreams = split(f.next()?);
        let upstream_statuses = split(f.next()?);
        let request_id = f.next()?.to_owned();
        Some(Self {
            msec,
            status,
            method,
            uri,
            upstreams,
            upstream_statuses,
            request_id,
        })
    }

    /// The port of every upstream tried.
    pub fn upstream_ports(&self) -> Vec<u16> {
        self.upstreams
            .iter()
            .filter_map(|a| a.rsplit(':').next()?.parse().ok())
            .collect()
    }

    pub fn is_auth_check(&self) -> bool {
        self.uri == "/_tokengate/authenticate"
    }
}

/// The ports the generated config listens on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub front: u16,
    pub grpc: u16,
    pub app: u16,
    /// The browser site and the other origin; unused without `browser`.
    pub browser: u16,
    pub elsewhere: u16,
}

/// The native nginx.conf. Includes the shared files by absolute path.
pub fn render(
    prefix: &Path,
    upstreams: &[u16],
    grpc_upstreams: &[u16],
    ports: Ports,
    options: &NginxOptions,
) -> String {
    let Ports {
        front: front_port,
        grpc: grpc_port,
        app: app_port,
        ..
    } = ports;
    let p = prefix.display();
    let dir = options.conf_dir.display();
    let workers = options
        .workers
        .map_or_else(|| "auto".to_owned(), |n| n.to_string());
    let mut servers = String::new();
    for socket in &options.upstream_sockets {
        // The same failure handling as over TCP (below).
        let _ = writeln!(
            servers,
            "        server unix:{} max_fails=1 fail_timeout=2s;",
            socket.display()
        );
    }
    // A replica listens on its socket and on TCP; with sockets, TCP is for
    // everyone but nginx.
    let tcp_upstreams = if options.upstream_sockets.is_empty() {
        upstreams
    } else {
        &[]
    };
    for port in tcp_upstreams {
        // max_fails=1 fail_timeout=2s: one failed try takes a dead replica out of
        // rotation (per worker) for 2 s; then it is tried again, so a restarted
        // replica gets traffic within ~2 s. Every failed try is retried on
        // another replica (proxy_next_upstream in tokengate.locations.conf).
        let _ = writeln!(
            servers,
            "        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;"
        );
    }
    let mut grpc_servers = String::new();
    for port in grpc_upstreams {
        let _ = writeln!(
            grpc_servers,
            "        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;"
        );
    }
    // Workers of a root master run as `nobody` unless told otherwise; the
    // replicas' 0660 sockets are root's then (see `upstream_sockets`).
    let user = if !options.upstream_sockets.is_empty() && running_as_root() {
        "user root root;\n"
    } else {
        ""
    };
    let access_log = if options.access_log {
        format!(
            "log_format cluster '$msec\\t$status\\t$request_method\\t$uri\\t$upstream_addr\\t$upstream_status\\t$request_id';\n    \
             access_log {p}/access.log cluster;\n    \
             log_subrequest on;"
        )
    } else {
        "access_log off;".to_owned()
    };
    let (browser, browser_app) = if options.browser {
        (
            render_browser(prefix, ports, options),
            BROWSER_APP.to_owned(),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        r#"# Generated by tests/support/nginx.rs for a native tokengate cluster on loopback.
# The shared files come from {dir}; see nginx/README.md.
daemon off;
{user}worker_processes {workers};
worker_rlimit_nofile 16384;
pid {p}/nginx.pid;
error_log {p}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    server_tokens off;
    default_type application/json;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    {access_log}

    upstream tokengate {{
{servers}        # Under tokengate's 10 s idle limit, as in nginx/nginx.conf.
        keepalive 64;
        keepalive_timeout 5s;
    }}

    upstream app {{
        server 127.0.0.1:{app_port};
        keepalive 64;
        keepalive_timeout 5s;
    }}

    upstream tokengate_grpc {{
{grpc_servers}        keepalive 64;
        keepalive_timeout 5s;
    }}

    # The gRPC API (tokengate.grpc.conf). `listen ... http2` for Debian's 1.22.
    server {{
        listen 127.0.0.1:{grpc_port} http2 backlog=4096;
        keepalive_requests 100000;
        # A load generator multiplexes many calls on one connection.
        http2_max_concurrent_streams 1024;

        include {dir}/tokengate.grpc.conf;
    }}

    server {{
        listen 127.0.0.1:{front_port} backlog=4096;
        # Load generators keep their connections; don't make them reconnect.
        keepalive_requests 100000;

        include {dir}/tokengate.locations.conf;

        location /app/ {{
            include {dir}/tokengate.protect.conf;
            proxy_pass http://app;
        }}

        # The same app, for tokens with the "admin" scope only (SPEC §6).
        location /app/admin/ {{
            set $tokengate_scope "admin";
            include {dir}/tokengate.protect.conf;
            proxy_pass http://app;
        }}

        # For services' API tokens (SPEC §9), as in nginx/nginx.conf.
        location /reports/ {{
            set $tokengate_scope "reports:read";
            include {dir}/tokengate.protect.conf;
            proxy_pass http://app;
        }}

        # An app that needs the client's own Authorization: opted in (SPEC §11;
        # everywhere else it stops at the gate).
        location /forwarding/ {{
            set $tokengate_app_authorization $http_authorization;
            include {dir}/tokengate.protect.conf;
            proxy_pass http://app;
        }}

        # The ceiling of any external auth service: auth_request to a location
        # that says yes at once, then the same app.
        location /trivial/ {{
            auth_request /_trivial_auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }}
        location = /_trivial_auth {{
            internal;
            return 204;
        }}

        location / {{
            add_header X-Request-Id $request_id always;
            return 404 '{{"error":"not_found","error_description":"no such endpoint"}}\n';
        }}
    }}

    # The protected app: echoes what nginx told it. Only JSON-safe values are
    # echoed as they are.
    map $http_x_user_id $echo_user_id {{
        ""                        "";
        "~^[-A-Za-z0-9._@:+=/]+$" $http_x_user_id;
        default                   "(not shown: not JSON-safe)";
    }}
    map $http_x_session_id $echo_session_id {{
        ""                 "";
        "~^[-A-Za-z0-9]+$" $http_x_session_id;
        default            "(not shown: not JSON-safe)";
    }}
    map $http_x_token_id $echo_token_id {{
        ""                 "";
        "~^[-A-Za-z0-9]+$" $http_x_token_id;
        default            "(not shown: not JSON-safe)";
    }}
    map $http_x_scope $echo_scope {{
        ""                      "";
        "~^[-A-Za-z0-9._:/ ]+$" $http_x_scope;
        default                 "(not shown: not JSON-safe)";
    }}

    server {{
        listen 127.0.0.1:{app_port} backlog=4096;
        access_log off;
        keepalive_requests 100000;

        location / {{
            # As an app should: the request's id back. And the conventional
            # identity headers, as they came (add_header skips empty values).
            add_header X-Request-Id $http_x_request_id;
            add_header X-Echo-Auth-Request-User $http_x_auth_request_user;
            add_header X-Echo-Auth-Request-Email $http_x_auth_request_email;
            add_header X-Echo-Remote-User $http_remote_user;
            add_header X-Echo-Remote-Email $http_remote_email;
            add_header X-Echo-Authorization $http_authorization;
            return 200 '{{"app":"echo","method":"$request_method","user_id":"$echo_user_id","session_id":"$echo_session_id","token_id":"$echo_token_id","scope":"$echo_scope"}}\n';
        }}
{browser_app}    }}
{browser}}}
"#
    )
}

/// The echo app's answer to a browser app's request (`/app/` of the browser
/// site arrives as `/whoami/...`): what nginx told it, JSON-safe values only.
const BROWSER_APP: &str = r#"
        location /whoami/ {
            add_header Cache-Control no-store;
            return 200 '{"app":"whoami","path":"$echo_path","user_id":"$echo_user_id","session_id":"$echo_session_id","scope":"$echo_scope","amr":"$echo_amr","auth_request_user":"$echo_ar_user","auth_request_email":"$echo_ar_email","remote_user":"$echo_remote_user","remote_email":"$echo_remote_email","tokengate_cookie":"$echo_tokengate_cookie","probe_cookie":"$echo_probe_cookie"}\n';
        }
"#;

/// The browser site (nginx/browser/, as its nginx.conf includes it), the echo
/// maps of its app, and the other origin; inside `http`.
fn render_browser(prefix: &Path, ports: Ports, options: &NginxOptions) -> String {
    let p = prefix.display();
    let dir = options.conf_dir.display();
    let Ports {
        browser: browser_port,
        elsewhere: elsewhere_port,
        ..
    } = ports;
    format!(
        r#"
    # The browser setup of nginx/browser/ (SPEC §15).
    include {dir}/browser/tokengate.browser.http.conf;

    server {{
        listen 127.0.0.1:{browser_port} backlog=4096;
        types {{
            text/html html;
        }}

        include {dir}/browser/tokengate.browser.conf;
        include {dir}/tokengate.locations.conf;

        location / {{
            auth_request /oauth2/auth;
            include {dir}/browser/tokengate.browser.protect.conf;
            root {p}/site;
            index index.html;
        }}

        location /app/ {{
            auth_request /oauth2/auth;
            include {dir}/browser/tokengate.browser.protect.conf;
            proxy_pass http://app/whoami/;
        }}

        location /app/admin/ {{
            set $tokengate_require otp;
            auth_request /oauth2/auth;
            include {dir}/browser/tokengate.browser.protect.conf;
            proxy_pass http://app/whoami/admin/;
        }}

        location /api/ {{
            include {dir}/tokengate.protect.conf;
            proxy_pass http://app/whoami/api/;
        }}
    }}

    # Another origin, no tokengate: what a hostile page is served from.
    server {{
        listen 127.0.0.1:{elsewhere_port};
        access_log off;
        types {{
            text/html html;
        }}
        root {p}/elsewhere;
    }}

    map $request_uri $echo_path {{
        "~^[-A-Za-z0-9._~/?=&%]+$" $request_uri;
        default                    "(not shown: not JSON-safe)";
    }}
    map $http_x_auth_request_amr $echo_amr {{
        ""               "";
        "~^[a-z ]+$"     $http_x_auth_request_amr;
        default          "(not shown: not JSON-safe)";
    }}
    map $http_x_auth_request_user $echo_ar_user {{
        ""                        "";
        "~^[-A-Za-z0-9._@:+=/]+$" $http_x_auth_request_user;
        default                   "(not shown: not JSON-safe)";
    }}
    map $http_x_auth_request_email $echo_ar_email {{
        ""                        "";
        "~^[-A-Za-z0-9._@+]+$"    $http_x_auth_request_email;
        default                   "(not shown: not JSON-safe)";
    }}
    map $http_remote_user $echo_remote_user {{
        ""                        "";
        "~^[-A-Za-z0-9._@:+=/]+$" $http_remote_user;
        default                   "(not shown: not JSON-safe)";
    }}
    map $http_remote_email $echo_remote_email {{
        ""                        "";
        "~^[-A-Za-z0-9._@+]+$"    $http_remote_email;
        default                   "(not shown: not JSON-safe)";
    }}
    map $http_cookie $echo_tokengate_cookie {{
        "~(?:^|;)\s*__Host-tokengate=" "present";
        default                        "absent";
    }}
    map $cookie_probe $echo_probe_cookie {{
        ""                  "";
        "~^[A-Za-z0-9]+$"   $cookie_probe;
        default             "(not shown: not JSON-safe)";
    }}
"#
    )
}

/// The static site and the other origin's page, into nginx's prefix (which its
/// workers, `nobody` under root, can read; a checkout may not be).
fn write_browser_files(prefix: &Path) -> Result<(), String> {
    let files = BROWSER_SITE
        .iter()
        .map(|(path, content)| (prefix.join("site").join(path), *content))
        .chain([
            (prefix.join("elsewhere/blank.html"), ELSEWHERE_PAGE),
            // Browsers ask for one on every site: found, not logged as missing.
            (prefix.join("site/favicon.ico"), ""),
            (prefix.join("elsewhere/favicon.ico"), ""),
        ]);
    for (path, content) in files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, content).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Whether this process runs as root (its `/proc/self` is root's).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
