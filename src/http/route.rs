//! Which endpoint a request is for, and which listener serves it (SPEC §2,
//! §11): one table, consulted once per request before any handler runs.
//!
//! Two rules keep what nginx publishes and what tokengate answers the same:
//! - **One path, one route** ([`check_path`]). nginx decodes `%2F` and
//!   resolves dot segments before it matches a location, then passes the raw
//!   path on: `/admin/users/..%2F..%2Fsessions/sessions` is the public
//!   `/sessions/sessions` to nginx and an admin endpoint to a router that
//!   reads it literally. Such paths are refused, never routed.
//! - **Operators' endpoints on their own listener** ([`Route::listener`]).
//!   `/admin/*` and `/metrics` answer on `admin.listen` only, the API on the
//!   public port only: whatever a proxy in front publishes by mistake, the
//!   public port has no admin API behind it.

use http::Method;

/// The HTTP listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `server.port` (and `server.unix_socket`): what nginx publishes.
    Public,
    /// `admin.listen`: for operators, their scrapers and probes.
    Admin,
}

/// Why a path is refused before routing: it could mean another path to a
/// proxy that decodes and normalises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    #[error("the request path may not contain an encoded slash or backslash (%2F, %5C)")]
    EncodedSeparator,
    #[error("the request path may not contain a backslash")]
    Backslash,
    #[error("the request path may not contain a dot segment (. or .., also percent-encoded)")]
    DotSegment,
}

/// Refuses a path with an encoded `/` or `\`, a raw `\` or a dot segment
/// (`.`/`..`, `%2e` counting as a dot). One pass over the bytes and no
/// allocation: it runs before every request, `/authenticate` included.
pub(super) fn check_path(path: &str) -> Result<(), PathRefused> {
    let bytes = path.as_bytes();
    // How many dots the current segment holds so far; `None` once it holds
    // anything else.
    let mut dots: Option<u8> = Some(0);
    let mut i = 0;
    while i < bytes.len() {
        let mut step = 1;
        match bytes[i] {
            b'/' if matches!(dots, Some(1 | 2)) => return Err(PathRefused::DotSegment),
            b'/' => dots = Some(0),
            b'\\' => return Err(PathRefused::Backslash),
            b'.' => dots = dots.map(|n| n.saturating_add(1)),
            b'%' => match bytes.get(i + 1..i + 3) {
                Some([b'2', b'e' | b'E']) => {
                    dots = dots.map(|n| n.saturating_add(1));
                    step = 3;
                }
                Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C']) => {
                    return Err(PathRefused::EncodedSeparator);
                }
                _ => dots = None,
            },
            _ => dots = None,
        }
        i += step;
    }
    match dots {
        Some(1 | 2) => Err(PathRefused::DotSegment),
        _ => Ok(()),
    }
}

pub(super) const GET_HEAD: &str = "GET, HEAD";
const POST: &str = "POST";
const GET_HEAD_POST: &str = "GET, HEAD, POST";
const DELETE: &str = "DELETE";

/// The endpoints, one per path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Ping,
    Health,
    Metrics,
    Login,
    Register,
    Refresh,
    Logout,
    Authenticate,
    Token,
    Introspect,
    Revoke,
    Verify,
    Jwks,
    Metadata,
    /// `POST /auth/validate`: an API token, as JSON.
    Validate,
    /// `/admin/tokens`: list (GET) and create (POST).
    AdminTokens,
    /// `GET /admin/tokens/{id}`.
    AdminToken,
    /// `POST /admin/tokens/{id}/revoke`.
    AdminRevoke,
    /// `GET /sessions`: the caller's sessions.
    Sessions,
    /// `GET /events/sessions`: the revocation feed (Server-Sent Events).
    SessionEvents,
    /// `DELETE /sessions/{sid}`: end one of them.
    Session,
    /// `GET /admin/users/{sub}/sessions`.
    AdminUserSessions,
    /// `POST /admin/users/{sub}/logout`.
    AdminUserLogout,
    /// `GET /openapi.json`: the API's own description (SPEC §12).
    Openapi,
}

impl Route {
    /// Every route, so that tests can hold each one to what is said of it
    /// (its listener, the OpenAPI document).
    pub(super) const ALL: [Self; 24] = [
        Self::Ping,
        Self::Health,
        Self::Metrics,
        Self::Login,
        Self::Register,
        Self::Refresh,
        Self::Logout,
        Self::Authenticate,
        Self::Token,
        Self::Introspect,
        Self::Revoke,
        Self::Verify,
        Self::Jwks,
        Self::Metadata,
        Self::Validate,
        Self::AdminTokens,
        Self::AdminToken,
        Self::AdminRevoke,
        Self::Sessions,
        Self::Session,
        Self::AdminUserSessions,
        Self::AdminUserLogout,
        Self::SessionEvents,
        Self::Openapi,
    ];

    /// The route of `path` as `listener` serves it; `None`: not found there.
    pub(super) fn find(path: &str, listener: Listener) -> Option<Self> {
        Self::from_path(path).filter(|route| route.listener().is_none_or(|l| l == listener))
    }

    /// Where the route is served (SPEC §11); `None`: on both listeners.
    /// Listed one by one, so a new route has to say where it belongs.
    pub(super) fn listener(self) -> Option<Listener> {
        match self {
            // Probes: a load balancer and an operator each ask their own port.
            Self::Ping | Self::Health => None,
            Self::Metrics
            | Self::AdminTokens
            | Self::AdminToken
            | Self::AdminRevoke
            | Self::AdminUserSessions
            | Self::AdminUserLogout
            | Self::SessionEvents => Some(Listener::Admin),
            Self::Login
            | Self::Register
            | Self::Refresh
            | Self::Logout
            | Self::Authenticate
            | Self::Token
            | Self::Introspect
            | Self::Revoke
            | Self::Verify
            | Self::Jwks
            | Self::Metadata
            | Self::Validate
            | Self::Sessions
            | Self::Session
            | Self::Openapi => Some(Listener::Public),
        }
    }

    fn from_path(path: &str) -> Option<Self> {
        Some(match path {
            "/ping" => Self::Ping,
            "/health" => Self::Health,
            "/metrics" => Self::Metrics,
            "/login" => Self::Login,
            "/register" => Self::Register,
            "/refresh" => Self::Refresh,
            "/logout" => Self::Logout,
            "/authenticate" => Self::Authenticate,
            "/oauth/token" | "/token" => Self::Token,
            "/oauth/introspect" => Self::Introspect,
            "/oauth/revoke" => Self::Revoke,
            "/oauth/verify" => Self::Verify,
            "/.well-known/jwks.json" => Self::Jwks,
            "/.well-known/oauth-authorization-server" => Self::Metadata,
            "/auth/validate" => Self::Validate,
            "/admin/tokens" => Self::AdminTokens,
            "/sessions" => Self::Sessions,
            "/events/sessions" => Self::SessionEvents,
            "/openapi.json" => Self::Openapi,
            _ => return Self::with_id(path),
        })
    }

    /// The paths with an id in them, any id (a bad one is `404` from the
    /// handler, like an unknown one).
    fn with_id(path: &str) -> Option<Self> {
        let (prefix, _, action) = split_id(path)?;
        Some(match (prefix, action) {
            ("/admin/tokens/", None) => Self::AdminToken,
            ("/admin/tokens/", Some("revoke")) => Self::AdminRevoke,
            ("/admin/users/", Some("sessions")) => Self::AdminUserSessions,
            ("/admin/users/", Some("logout")) => Self::AdminUserLogout,
            ("/sessions/", None) => Self::Session,
            _ => return None,
        })
    }

    /// The `{id}` of a path [`Route::with_id`] matched, percent-decoded.
    pub(super) fn id(path: &str) -> Option<String> {
        let (_, id, _) = split_id(path)?;
        percent_encoding::percent_decode_str(id)
            .decode_utf8()
            .ok()
            .map(|id| id.into_owned())
    }

    /// The path, `{…}` for an id: the label of its metrics and its name in
    /// the OpenAPI document.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Ping => "/ping",
            Self::Health => "/health",
            Self::Metrics => "/metrics",
            Self::Login => "/login",
            Self::Register => "/register",
            Self::Refresh => "/refresh",
            Self::Logout => "/logout",
            Self::Authenticate => "/authenticate",
            Self::Token => "/oauth/token",
            Self::Introspect => "/oauth/introspect",
            Self::Revoke => "/oauth/revoke",
            Self::Verify => "/oauth/verify",
            Self::Jwks => "/.well-known/jwks.json",
            Self::Metadata => "/.well-known/oauth-authorization-server",
            Self::Validate => "/auth/validate",
            Self::AdminTokens => "/admin/tokens",
            Self::AdminToken => "/admin/tokens/{id}",
            Self::AdminRevoke => "/admin/tokens/{id}/revoke",
            Self::Sessions => "/sessions",
            Self::Session => "/sessions/{sid}",
            Self::AdminUserSessions => "/admin/users/{sub}/sessions",
            Self::AdminUserLogout => "/admin/users/{sub}/logout",
            Self::SessionEvents => "/events/sessions",
            Self::Openapi => "/openapi.json",
        }
    }

    /// The methods answered, as the `Allow` header says them; `None`: all.
    pub(super) fn allow(self) -> Option<&'static str> {
        match self {
            Self::Authenticate => None, // nginx's auth_request forwards the client's method
            Self::Ping
            | Self::Health
            | Self::Metrics
            | Self::Jwks
            | Self::Metadata
            | Self::AdminToken
            | Self::Sessions
            | Self::AdminUserSessions
            | Self::SessionEvents
            | Self::Openapi => Some(GET_HEAD),
            Self::AdminTokens => Some(GET_HEAD_POST),
            Self::Session => Some(DELETE),
            _ => Some(POST),
        }
    }

    pub(super) fn allows(self, method: &Method) -> bool {
        let get = method == Method::GET || method == Method::HEAD;
        match self.allow() {
            None => true,
            Some(GET_HEAD) => get,
            Some(GET_HEAD_POST) => get || method == Method::POST,
            Some(DELETE) => method == Method::DELETE,
            Some(_) => method == Method::POST,
        }
    }
}

/// A path with an id: `(prefix, id, what follows the id)`.
fn split_id(path: &str) -> Option<(&'static str, &str, Option<&str>)> {
    let (prefix, rest) = ["/admin/tokens/", "/admin/users/", "/sessions/"]
        .into_iter()
        .find_map(|prefix| Some((prefix, path.strip_prefix(prefix)?)))?;
    let (id, action) = match rest.split_once('/') {
        Some((id, action)) => (id, Some(action)),
        None => (rest, None),
    };
    (!id.is_empty()).then_some((prefix, id, action))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_a_proxy_could_read_differently_are_refused() {
        use PathRefused::{Backslash, DotSegment, EncodedSeparator};
        let table: &[(&str, Result<(), PathRefused>)] = &[
            ("/authenticate", Ok(())),
            ("/", Ok(())),
            ("/.well-known/jwks.json", Ok(())),
            ("/sessions/0f5bd7f4-93c5-4e4b-9f6b-0d1a52d1c1a8", Ok(())),
            ("/admin/users/user%40example.com/sessions", Ok(())),
            ("/admin/users/a.b/sessions", Ok(())),
            ("/admin/users/.../sessions", Ok(())),
            ("/admin/users/..a/sessions", Ok(())),
            ("/admin/users/%2ex/sessions", Ok(())),
            ("/admin/users/%2/sessions", Ok(())),
            ("/admin/users/%", Ok(())),
            ("/admin/users/%252F/sessions", Ok(())),
            (
                "/admin/users/..%2F..%2Fsessions/sessions",
                Err(EncodedSeparator),
            ),
            ("/admin%2ftokens", Err(EncodedSeparator)),
            ("/admin%5Ctokens", Err(EncodedSeparator)),
            ("/admin%5ctokens", Err(EncodedSeparator)),
            ("/admin\\tokens", Err(Backslash)),
            ("/sessions/%2e%2e/admin/tokens", Err(DotSegment)),
            ("/sessions/%2E%2e/admin/tokens", Err(DotSegment)),
            ("/sessions/.%2E/admin/tokens", Err(DotSegment)),
            ("/./ping", Err(DotSegment)),
            ("/a/../ping", Err(DotSegment)),
            ("/ping/.", Err(DotSegment)),
            ("/ping/..", Err(DotSegment)),
            ("/ping/%2e", Err(DotSegment)),
            ("/.", Err(DotSegment)),
        ];
        for (path, expected) in table {
            assert_eq!(check_path(path), *expected, "{path}");
        }
    }

    #[test]
    fn all_lists_each_route_once_under_its_own_path() {
        for (i, route) in Route::ALL.into_iter().enumerate() {
            assert!(!Route::ALL[..i].contains(&route), "{route:?} listed twice");
            let path = ["{id}", "{sub}", "{sid}"]
                .into_iter()
                .fold(route.name().to_owned(), |path, id| path.replace(id, "x"));
            assert_eq!(Route::from_path(&path), Some(route), "{path}");
        }
    }

    #[test]
    fn operators_endpoints_live_on_the_admin_listener_only() {
        let admin_only = [
            "/metrics",
            "/admin/tokens",
            "/admin/tokens/x",
            "/admin/tokens/x/revoke",
            "/admin/users/x/sessions",
            "/admin/users/x/logout",
        ];
        for path in admin_only {
            assert!(Route::find(path, Listener::Admin).is_some(), "{path}");
            assert_eq!(Route::find(path, Listener::Public), None, "{path}");
        }
        for path in ["/ping", "/health"] {
            assert!(Route::find(path, Listener::Admin).is_some(), "{path}");
            assert!(Route::find(path, Listener::Public).is_some(), "{path}");
        }
        for path in [
            "/login",
            "/authenticate",
            "/sessions",
            "/sessions/x",
            "/oauth/token",
        ] {
            assert!(Route::find(path, Listener::Public).is_some(), "{path}");
            assert_eq!(Route::find(path, Listener::Admin), None, "{path}");
        }
    }
}
