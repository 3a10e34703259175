//! One pass over the gRPC API through whatever stands in front of it (nginx in
//! `nginx/test/smoke.py` and `scripts/check-deploy`), with tonic's generated
//! client, the way an application would call it. See USAGE.
//!
//! Prints `ok: <check>` or `FAIL: <check>: <why>` per check and exits 1 if any
//! failed, so a shell or Python caller needs no gRPC library of its own.

use std::process::ExitCode;
use std::time::Duration;

use tokengate::grpc::proto::auth_api_client::AuthApiClient;
use tokengate::grpc::proto::{LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const USAGE: &str = "\
usage: grpc_probe --url http://HOST:PORT [--throttle N]
       grpc_probe --url http://HOST:PORT --unavailable

  --url URL      the gRPC endpoint (cleartext HTTP/2), e.g. nginx's gRPC port
  --throttle N   also check that the caller's address reaching the replica is the
                 proxy's view of it, not a client-sent x-forwarded-for: N+1 failed
                 logins, each claiming another address, must be throttled
                 (RESOURCE_EXHAUSTED) once the replica's
                 throttle.max_failures_per_address = N is reached; the replica
                 must trust the proxy (server.trusted_proxies)
  --unavailable  instead, check that a proxy with no replica behind it answers
                 every call UNAVAILABLE (the status clients may retry)";

const PASSWORD: &str = "correct horse battery";

struct Probe {
    failed: usize,
}

impl Probe {
    fn check(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => println!("ok: {name}"),
            Err(why) => {
                self.failed += 1;
                println!("FAIL: {name}: {why}");
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut url, mut throttle, mut unavailable) = (None, None, false);
    while let Some(arg) = args.next() {
        if arg == "--unavailable" {
            unavailable = true;
            continue;
        }
        match (arg.as_str(), args.next()) {
            ("--url", Some(value)) => url = Some(value),
            ("--throttle", Some(value)) => match value.parse::<u32>() {
                Ok(n) if n > 0 => throttle = Some(n),
                _ => return usage(&format!("--throttle {value}: not a positive number")),
            },
            _ => return usage(&format!("unexpected argument {arg:?}")),
        }
    }
    let Some(url) = url else {
        return usage("--url is required");
    };
    let channel = match Endpoint::from_shared(url.clone()) {
        Ok(endpoint) => endpoint.timeout(Duration::from_secs(5)).connect().await,
        Err(e) => return usage(&format!("--url {url}: {e}")),
    };
    let channel = match channel {
        Ok(channel) => channel,
        Err(e) => {
            println!("FAIL: connect to {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut probe = Probe { failed: 0 };
    if unavailable {
        probe.check(
            "no replica reachable: Health/Check and Login are UNAVAILABLE",
            all_unavailable(channel).await,
        );
        return if probe.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    probe.check(
        "Health/Check reports SERVING",
        health(channel.clone()).await,
    );
    probe.check(
        "Register, Login, Refresh, Logout through the proxy",
        session(AuthApiClient::new(channel.clone())).await,
    );
    probe.check(
        "a method outside the public services is UNIMPLEMENTED",
        unknown_method(channel.clone()).await,
    );
    probe.check(
        "Health/Watch (a long-lived stream) is not published: UNIMPLEMENTED",
        health_watch(channel.clone()).await,
    );
    if let Some(n) = throttle {
        probe.check(
            "a client-sent x-forwarded-for is replaced: failed logins are throttled by the real address",
            forwarded_for(AuthApiClient::new(channel), n).await,
        );
    }
    if probe.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(error: &str) -> ExitCode {
    eprintln!("grpc_probe: {error}\n\n{USAGE}");
    ExitCode::from(2)
}

async fn health(channel: Channel) -> Result<(), String> {
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "realchat.auth.v1.AuthApi".into(),
        })
        .await
        .map_err(|s| format!("{:?} {}", s.code(), s.message()))?
        .into_inner();
    match reply.status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("status {other:?}")),
    }
}

async fn session(mut client: AuthApiClient<Channel>) -> Result<(), String> {
    let failed = |what: &'static str| {
        move |s: tonic::Status| format!("{what}: {:?} {}", s.code(), s.message())
    };
    let email = format!("probe-{}@example.com", uuid::Uuid::new_v4().simple());
    let user_id = client
        .register(RegisterRequest {
            email: email.clone(),
            password: PASSWORD.into(),
        })
        .await
        .map_err(failed("Register"))?
        .into_inner()
        .user_id;
    let login = client
        .login(LoginRequest {
            email,
            password: PASSWORD.into(),
        })
        .await
        .map_err(failed("Login"))?
        .into_inner();
    let next = client
        .refresh(RefreshRequest {
            refresh_token: login.refresh_token,
        })
        .await
        .map_err(failed("Refresh"))?
        .into_inner();
    if next.session_id != login.session_id || next.access_token == login.access_token {
        return Err("Refresh did not rotate within the session".into());
    }
    client
        .logout(LogoutRequest {
            refresh_token: next.refresh_token.clone(),
        })
        .await
        .map_err(failed("Logout"))?;
    match client
        .refresh(RefreshRequest {
            refresh_token: next.refresh_token,
        })
        .await
    {
        Err(s) if s.code() == Code::Unauthenticated => {
            println!("   user {user_id}: registered, logged in, refreshed, logged out");
            Ok(())
        }
        other => Err(format!(
            "Refresh after Logout: want UNAUTHENTICATED, got {:?}",
            other.map(|_| "OK").map_err(|s| s.code())
        )),
    }
}

async fn unknown_method(channel: Channel) -> Result<(), String> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let path = http::uri::PathAndQuery::from_static("/realchat.admin.v1.Admin/DeleteEverything");
    let reply: Result<tonic::Response<LogoutRequest>, _> = grpc
        .unary(
            Request::new(LogoutRequest::default()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await;
    match reply {
        Err(s) if s.code() == Code::Unimplemented => Ok(()),
        other => Err(format!(
            "want UNIMPLEMENTED, got {:?}",
            other.map(|_| "OK").map_err(|s| s.code())
        )),
    }
}

async fn health_watch(channel: Channel) -> Result<(), String> {
    let reply = HealthClient::new(channel)
        .watch(HealthCheckRequest::default())
        .await;
    match reply {
        Err(s) if s.code() == Code::Unimplemented => Ok(()),
        other => Err(format!(
            "want UNIMPLEMENTED, got {:?}",
            other.map(|_| "a watch stream").map_err(|s| s.code())
        )),
    }
}

async fn forwarded_for(mut client: AuthApiClient<Channel>, n: u32) -> Result<(), String> {
    for i in 0..=n {
        // Each attempt another account and another claimed address: only the
        // address the proxy saw can add them up.
        let mut request = Request::new(LoginRequest {
            email: format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple()),
            password: "wrong password".into(),
        });
        let claimed = format!("203.0.113.{}", i % 250 + 1);
        request.metadata_mut().insert(
            "x-forwarded-for",
            claimed.parse().map_err(|_| "metadata value".to_owned())?,
        );
        let code = match client.login(request).await {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        };
        match (i < n, code) {
            (true, Code::Unauthenticated) | (false, Code::ResourceExhausted) => {}
            (true, code) => {
                return Err(format!(
                    "failed login {}: want UNAUTHENTICATED, got {code:?}",
                    i + 1
                ));
            }
            (false, code) => {
                return Err(format!(
                    "failed login {} (over throttle.max_failures_per_address = {n}): want RESOURCE_EXHAUSTED, got {code:?}; \
                     the replica saw the client's own x-forwarded-for",
                    i + 1
                ));
            }
        }
    }
    Ok(())
}

async fn all_unavailable(channel: Channel) -> Result<(), String> {
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .map(|_| Code::Ok)
        .unwrap_or_else(|s| s.code());
    let login = AuthApiClient::new(channel)
        .login(LoginRequest::default())
        .await
        .map(|_| Code::Ok)
        .unwrap_or_else(|s| s.code());
    match (health, login) {
        (Code::Unavailable, Code::Unavailable) => Ok(()),
        other => Err(format!("want UNAVAILABLE twice, got {other:?}")),
    }
}
