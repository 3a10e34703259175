//! Where the published keys come from: tokengate's
//! `GET /.well-known/jwks.json`.
//!
//! [`JwksSource`] is the seam: [`HttpJwks`] fetches over plain HTTP/1.1 (the
//! layer usually reaches tokengate on an internal network, as nginx does); a
//! service that needs TLS or a proxy plugs in its own HTTP client, and tests
//! plug in a source that counts its calls.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::Empty;

use crate::endpoint::Endpoint;
pub use crate::endpoint::{BoxError, UrlError};

/// A future returned by a [`JwksSource`].
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Bytes, BoxError>> + Send + 'a>>;

/// Fetches the JWKS document (RFC 7517 JSON). Called at most once per
/// refresh interval, never concurrently with itself by one verifier.
pub trait JwksSource: Send + Sync + 'static {
    fn fetch(&self) -> FetchFuture<'_>;
}

/// A JWKS document is a few keys; anything bigger is not one.
const MAX_DOCUMENT: usize = 256 * 1024;

/// [`JwksSource`] over plain HTTP/1.1: one connection per fetch.
#[derive(Debug, Clone)]
pub struct HttpJwks {
    endpoint: Endpoint,
    timeout: Duration,
}

impl HttpJwks {
    /// `url` is e.g. `http://tokengate:8080/.well-known/jwks.json`. Each
    /// fetch (connect, request, whole body) must finish within `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, UrlError> {
        Ok(Self {
            endpoint: Endpoint::parse(url)?,
            timeout,
        })
    }
}

impl JwksSource for HttpJwks {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let request = self
                .endpoint
                .request()
                .header(header::ACCEPT, "application/json")
                .header(header::CONNECTION, "close")
                .body(Empty::<Bytes>::new())?;
            let response = self
                .endpoint
                .call(request, MAX_DOCUMENT, self.timeout)
                .await?;
            if response.status() != StatusCode::OK {
                return Err(format!("JWKS answered {}", response.status()).into());
            }
            Ok(response.into_body())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_taken() {
        assert!(HttpJwks::new("http://127.0.0.1:8080/jwks", Duration::from_secs(1)).is_ok());
        assert!(matches!(
            HttpJwks::new("https://tokengate/jwks", Duration::from_secs(1)),
            Err(UrlError::Scheme)
        ));
    }

    #[tokio::test]
    async fn a_fetch_reads_the_document_and_refuses_other_statuses() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = vec![0u8; 1024];
                let n = socket.read(&mut request).await.unwrap();
                assert!(String::from_utf8_lossy(&request[..n]).starts_with("GET /jwks HTTP/1.1"));
                let body = r#"{"keys":[]}"#;
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let source = HttpJwks::new(&format!("http://{addr}/jwks"), Duration::from_secs(5)).unwrap();
        assert_eq!(source.fetch().await.unwrap(), r#"{"keys":[]}"#);
        assert!(source.fetch().await.is_err());
    }
}
