//! One HTTP/1.1 request on a plain connection to one of tokengate's URLs:
//! the JWKS, `/auth/validate`, `/authenticate` and the revocation feed.
//!
//! No pool: the JWKS is fetched every few minutes at most, the feed is one
//! long-lived stream, and the per-request calls (`/auth/validate`,
//! `/authenticate`) are either cached or only made while the feed is down.
//! Plain `http://` only: the layer reaches tokengate on an internal network,
//! as nginx does; a [`JwksSource`](crate::JwksSource) of your own covers TLS
//! for the keys.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a URL cannot be used by the built-in client.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL: {0}")]
    Invalid(#[from] http::uri::InvalidUri),
    #[error(
        "only http:// URLs are used by the built-in client; plug in your own `JwksSource` for https keys"
    )]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
}

/// Where to connect and what to ask for.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    uri: Uri,
    authority: HeaderValue,
    host: String,
    port: u16,
}

impl Endpoint {
    /// `url` is e.g. `http://tokengate:8080/.well-known/jwks.json`.
    pub(crate) fn parse(url: &str) -> Result<Self, UrlError> {
        let uri: Uri = url.parse()?;
        if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
            return Err(UrlError::Scheme);
        }
        let authority = uri.authority().ok_or(UrlError::NoHost)?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        Ok(Self {
            // An authority that parsed as part of a URI is a valid header.
            authority: HeaderValue::from_str(authority.as_str()).map_err(|_| UrlError::NoHost)?,
            port: authority.port_u16().unwrap_or(80),
            host: host.to_owned(),
            uri,
        })
    }

    #[cfg(test)]
    pub(crate) fn host_port(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// A request for this endpoint's path, with `Host` set; the caller adds
    /// its method, headers and body.
    pub(crate) fn request(&self) -> http::request::Builder {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        Request::builder()
            .uri(path)
            .header(header::HOST, self.authority.clone())
    }

    /// Connects and sends `request`; the answer's body is read through the
    /// returned [`Exchange`], which keeps the connection alive until dropped.
    pub(crate) async fn send<B>(&self, request: Request<B>) -> Result<Exchange, BoxError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        // Driven beside the request, and aborted with the exchange (also when
        // a timeout drops it).
        let connection = AbortOnDrop(tokio::spawn(connection));
        let response = sender.send_request(request).await?;
        Ok(Exchange {
            response,
            _connection: connection,
        })
    }

    /// One whole request and its whole answer (at most `limit` bytes of
    /// body) within `timeout`.
    pub(crate) async fn call<B>(
        &self,
        request: Request<B>,
        limit: usize,
        timeout: Duration,
    ) -> Result<Response<Bytes>, BoxError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let exchange = async {
            let exchange = self.send(request).await?;
            let (parts, body) = exchange.response.into_parts();
            let body = Limited::new(body, limit).collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| BoxError::from(format!("no answer within {timeout:?}")))?
    }
}

/// An answer whose body is still to be read.
pub(crate) struct Exchange {
    pub(crate) response: Response<Incoming>,
    _connection: AbortOnDrop<Result<(), hyper::Error>>,
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host_are_taken() {
        let ok = Endpoint::parse("http://127.0.0.1:8080/.well-known/jwks.json").unwrap();
        assert_eq!(ok.host_port(), ("127.0.0.1", 8080));
        let v6 = Endpoint::parse("http://[::1]/jwks").unwrap();
        assert_eq!(v6.host_port(), ("::1", 80));
        assert!(matches!(
            Endpoint::parse("https://tokengate/jwks"),
            Err(UrlError::Scheme)
        ));
        assert!(Endpoint::parse("/.well-known/jwks.json").is_err());
        assert!(Endpoint::parse("not a url").is_err());
    }
}
