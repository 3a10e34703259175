//! A minimal HTTP/1.1 client for tests: one connection per request, so each
//! request may land on whichever replica the test picks.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A string field of the JSON body; panics if it is missing.
    pub fn field(&self, name: &str) -> String {
        let json = self.json();
        json[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {json}"))
            .to_owned()
    }

    /// The `error` code of a SPEC error body.
    pub fn error(&self) -> String {
        let json = self.json();
        assert!(
            json["error_description"].is_string(),
            "error body without error_description: {json}"
        );
        json["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends one request and reads the whole reply; panics if the server does
/// not answer within 10 s.
pub async fn send<B>(addr: SocketAddr, request: Request<B>) -> Reply
where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    tokio::time::timeout(Duration::from_secs(10), try_send(addr, request))
        .await
        .expect("no reply within 10s")
        .expect("request failed")
}

pub async fn try_send<B>(addr: SocketAddr, request: Request<B>) -> Result<Reply, BoxError>
where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let stream = tokio::net::TcpStream::connect(addr).await?;
    exchange(stream, &addr.to_string(), request).await
}

/// [`send`] from the local address `from` (any of 127.0.0.0/8 reaches a
/// server on 127.0.0.1): the server sees another client address.
pub async fn send_from<B>(from: std::net::IpAddr, addr: SocketAddr, request: Request<B>) -> Reply
where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let exchanged = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        let stream = socket.connect(addr).await?;
        exchange(stream, &addr.to_string(), request).await
    };
    tokio::time::timeout(Duration::from_secs(10), exchanged)
        .await
        .expect("no reply within 10s")
        .expect("request failed")
}

/// [`send`] over a Unix socket.
pub async fn send_unix<B>(path: &std::path::Path, request: Request<B>) -> Reply
where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let exchanged = async {
        let stream = tokio::net::UnixStream::connect(path).await?;
        exchange(stream, "localhost", request).await
    };
    tokio::time::timeout(Duration::from_secs(10), exchanged)
        .await
        .expect("no reply within 10s")
        .expect("request failed")
}

/// One request and its whole reply on a fresh connection.
async fn exchange<S, B>(stream: S, host: &str, mut request: Request<B>) -> Result<Reply, BoxError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    if !request.headers().contains_key(http::header::HOST) {
        request
            .headers_mut()
            .insert(http::header::HOST, host.parse()?);
    }
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

/// A request builder with the usual defaults.
pub fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder().method(method).uri(path)
}

pub fn json_body(value: &Value) -> Full<Bytes> {
    Full::new(Bytes::from(serde_json::to_vec(value).unwrap()))
}

/// `GET path` at `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(
        addr,
        request(Method::GET, path).body(Full::default()).unwrap(),
    )
    .await
}

/// `POST path` with a JSON body.
pub async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    let request = request(Method::POST, path)
        .header("content-type", "application/json")
        .body(json_body(body))
        .unwrap();
    send(addr, request).await
}

/// `method path` with `Authorization: Bearer token` and no body.
pub async fn with_bearer(addr: SocketAddr, method: Method, path: &str, token: &str) -> Reply {
    let request = request(method, path)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    send(addr, request).await
}
