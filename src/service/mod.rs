//! The one door (STYLE "Phase 3"): every use case both transports need —
//! logins (password and trusted), registration, the gate (a JWT session or
//! an API token: the choice is made here), refresh, logout, a user's
//! sessions, the OAuth endpoints, API tokens, the operators' API, health.
//!
//! `crate::http` and `crate::grpc` extract input, call one method of
//! [`Gate`] and map its result; neither reaches past it into the session
//! store or the database, and its one error type, [`ServiceError`], says
//! *what* went wrong, which each transport maps once. The rules themselves
//! stay in the modules that own them (`session`, `users`, `clients`,
//! `api_tokens`, `admin`), each with its own error; this layer composes
//! them, reads the clock once per use case, and turns their errors into
//! [`ServiceError`]. kanidm's front ends over its identity layer are the
//! model.
//!
//! Built once at start-up by [`crate::app`]; nothing here is per-request.

mod admin;
mod api_tokens;
mod authenticate;
mod browser;
mod error;
mod health;
mod lifecycle;
mod login;
mod oauth;
mod session_feed;
mod sessions;
mod totp;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::admin::Admin;
use crate::api_tokens::ApiTokens;
use crate::clients::ClientSecrets;
use crate::config::{CookieSettings, EventSettings, GrpcSettings, ServerSettings};
use crate::db::Database;
use crate::events::RelayStatus;
use crate::metrics::Metrics;
use crate::oauth::OAuthClients;
use crate::proxies::TrustedProxies;
use crate::session::Sessions;
use crate::store::Store;
use crate::users::Users;

/// The types transports see in requests and answers, from the modules that
/// own them.
pub use crate::api_tokens::{ApiToken, CacheClear, NewApiToken, RevokedView, TokenView};
pub use crate::clients::{Attempt, ClientError, parse_basic};
pub use crate::config::IdentityHeader;
pub use crate::proxies::Peer;
pub use crate::session::TokenPair;
pub use crate::session::browser::{BrowserHandle, BrowserIdentity};
pub use crate::session_feed::PAGE as ENDED_PAGE;
pub use crate::store::{Cursor, EndedSession, LogStart};
pub use crate::tokens::api::is_api_token;
pub use crate::tokens::scope::parse_scope;
pub use crate::tokens::{AccessClaims, Rejection};
pub use admin::{CreatedToken, Operator};
pub use api_tokens::Validation;
pub use authenticate::Identity;
pub use error::{OAuthCode, ServiceError, without_strings};
pub use health::{Component, Health};
pub use lifecycle::StartError;
pub use login::Registration;
pub use oauth::{ClientCredentials, Grant, Introspected, Issued};
pub use session_feed::{WATCH_SCOPE, Watch};
pub use sessions::{Logout, SessionView};
pub use totp::TotpEnrolment;

/// The largest request either transport reads (SPEC §2: 16 KiB); no use
/// case needs more.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Every use case, and what they share. Cheap to share: one per process,
/// behind an `Arc`.
pub struct Gate {
    pub(crate) sessions: Sessions<Store>,
    pub(crate) login_clients: ClientSecrets<()>,
    /// `login.open` as configured, for [`Gate::load_clients`].
    pub(crate) open_login_setting: bool,
    /// `/login {"user_id"}` may start open: set at start-up when there is no
    /// login client (with `login.open`, or the embedded store). It stays
    /// open only until a login client first appears; removing clients
    /// closes `/login`, never opens it (SPEC §11).
    pub(crate) login_open: AtomicBool,
    pub(crate) oauth_clients: OAuthClients,
    /// How often the clients kept in the database are re-read.
    pub(crate) clients_refresh: Duration,
    /// Users, stored clients and the outbox (SPEC §7).
    pub(crate) database: Database,
    pub(crate) users: Users,
    /// TOTP as a second factor of password accounts (SPEC §15).
    pub(crate) totp: crate::users::totp::Totp,
    /// Wakes the background event relay when a request could not deliver
    /// its event itself.
    pub(crate) events_wake: Arc<Notify>,
    pub(crate) events: EventSettings,
    /// How the event relay is doing, for `/health`.
    pub(crate) relay: RelayStatus,
    /// Kafka and the webhook endpoints (SPEC §14).
    pub(crate) event_sinks: crate::events::Sinks,
    /// API tokens for services (SPEC §9).
    pub(crate) api_tokens: ApiTokens,
    /// The token of the management API.
    pub(crate) admin: Admin,
    /// The browser sessions' cookie (SPEC §15).
    pub(crate) cookie: CookieSettings,
    /// Extra headers of a valid `/authenticate` answer.
    pub(crate) identity_headers: Vec<IdentityHeader>,
    /// The public keys as served at `/.well-known/jwks.json`.
    pub(crate) jwks: Bytes,
    /// `auth.issuer`, for discovery metadata.
    pub(crate) issuer: String,
    /// `oauth.public_url`; empty = from the request.
    pub(crate) public_url: String,
    /// Whose `X-Forwarded-For` tells the client's address.
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) metrics: Metrics,
    /// Connection limits and timeouts, for [`crate::server::serve`].
    pub(crate) server: ServerSettings,
    /// The gRPC listener's limits and timeouts, and its health watches.
    pub(crate) grpc: GrpcSettings,
    pub(crate) session_feed: crate::session_feed::SessionFeed,
}

impl Gate {
    /// Who asks, from where, now: the connection's peer, or what a trusted
    /// proxy's `X-Forwarded-For` says of the client behind it.
    pub fn caller<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> Attempt {
        Attempt {
            addr: self.trusted_proxies.client(peer, forwarded_for),
            now: crate::time::now(),
        }
    }

    /// Counts a failed use case in the metrics (its reason, if it is an
    /// authentication failure; a store outage).
    pub fn count_failure(&self, error: &ServiceError) {
        if let Some(reason) = error.auth_failure() {
            self.metrics.auth_failure(reason);
        }
        if matches!(error, ServiceError::StoreUnavailable(_)) {
            self.metrics.store_error();
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The extra headers of a valid gate answer (`authenticate.identity_headers`).
    pub fn identity_headers(&self) -> &[IdentityHeader] {
        &self.identity_headers
    }

    pub fn server_settings(&self) -> &ServerSettings {
        &self.server
    }

    pub fn grpc_settings(&self) -> &GrpcSettings {
        &self.grpc
    }

    /// Which stores this replica runs on, for the start-up log line.
    pub fn describe_stores(&self) -> (&'static str, &'static str) {
        (self.sessions.store().kind(), self.database.kind())
    }
}
