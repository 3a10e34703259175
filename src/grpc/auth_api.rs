//! `AuthApi`'s four calls, each the gRPC face of an HTTP endpoint:
//! `Register` ↔ `POST /register`, `Login` ↔ `POST /login {"email",
//! "password"}`, `Refresh` ↔ `POST /refresh`, `Logout` ↔ `POST /logout
//! {"refresh"}`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::proto::auth_api_server::AuthApi;
use super::proto::{
    LoginRequest, LoginResponse, LogoutRequest, LogoutResponse, RefreshRequest, RefreshResponse,
    RegisterRequest, RegisterResponse,
};
use super::status::from_service_error;
use crate::service::{Attempt, Gate, Logout, Registration, ServiceError, TokenPair};

pub struct AuthService {
    gate: Arc<Gate>,
}

impl AuthService {
    pub fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }

    /// Counts and logs the call, and turns an error into its status.
    fn finish<T>(
        &self,
        method: &'static str,
        started: Instant,
        result: Result<T, ServiceError>,
    ) -> Result<Response<T>, Status> {
        let result = result.map(Response::new).map_err(|error| {
            error.log("POST", method);
            self.gate.count_failure(&error);
            from_service_error(&error)
        });
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.gate
            .metrics()
            .grpc_call(method, code, started.elapsed().as_secs_f64());
        result
    }

    /// The caller's address, for throttling: the peer, or `x-forwarded-for`
    /// when the peer is a trusted proxy (as over HTTP).
    fn caller<T>(&self, request: &Request<T>) -> Attempt {
        let peer = request
            .remote_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
        let forwarded = request.metadata().get_all("x-forwarded-for");
        self.gate
            .caller(peer, forwarded.iter().map(|v| v.as_bytes()))
    }
}

#[tonic::async_trait]
impl AuthApi for AuthService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let started = Instant::now();
        let caller = self.caller(&request);
        // Trusted login clients send HTTP Basic as `authorization` metadata.
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes().to_vec());
        let RegisterRequest { email, password } = request.into_inner();
        let account = || {
            Ok(Registration {
                email,
                password,
                email_verified: false,
            })
        };
        let result = self
            .gate
            .register(authorization.as_deref(), account, caller)
            .await
            .map(|user_id| RegisterResponse {
                user_id: user_id.to_string(),
            });
        self.finish("/realchat.auth.v1.AuthApi/Register", started, result)
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let started = Instant::now();
        let caller = self.caller(&request);
        let LoginRequest { email, password } = request.into_inner();
        let result = self
            .gate
            .password_login(&email, &password, caller)
            .await
            .map(LoginResponse::from);
        self.finish("/realchat.auth.v1.AuthApi/Login", started, result)
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        let started = Instant::now();
        let RefreshRequest { refresh_token } = request.into_inner();
        let result = self
            .gate
            .refresh(&refresh_token)
            .await
            .map(RefreshResponse::from);
        self.finish("/realchat.auth.v1.AuthApi/Refresh", started, result)
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let started = Instant::now();
        let LogoutRequest { refresh_token } = request.into_inner();
        let result = self
            .gate
            .logout(Logout::Refresh(&refresh_token), false)
            .await
            .map(|_| LogoutResponse {});
        self.finish("/realchat.auth.v1.AuthApi/Logout", started, result)
    }
}

/// `LoginResponse` and `RefreshResponse` carry the same pair.
macro_rules! from_token_pair {
    ($($message:ident),*) => {$(
        impl From<TokenPair> for $message {
            fn from(pair: TokenPair) -> Self {
                Self {
                    access_token: pair.access,
                    refresh_token: pair.refresh,
                    expires_in: pair.expires_in,
                    refresh_expires_in: pair.refresh_expires_in,
                    session_id: pair.session_id.to_string(),
                }
            }
        }
    )*};
}

from_token_pair!(LoginResponse, RefreshResponse);
