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
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    uri: Uri,
    authority: String,
    port: u16,
    host: String,
    timeout: Duration,
}

/// Why a JWKS URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL: {0}")]
    Invalid(#[from] http::uri::InvalidUri),
    #[error(
        "only http:// JWKS URLs are fetched by the built-in client; plug in your own `JwksSource` for https"
    )]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
}

impl HttpJwks {
    /// `url` is e.g. `http://tokengate:8080/.well-known/jwks.json`. Each
    /// fetch (connect, request, whole body) must finish within `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, UrlError> {
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
            authority: authority.as_str().to_owned(),
            port: authority.port_u16().unwrap_or(80),
            host: host.to_owned(),
            uri,
            timeout,
        })
    }

    async fn get(&self) -> Result<Bytes, BoxError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        // Driven beside the request, and aborted with it (also when the
        // timeout drops this future): with `Connection: close` there is
        // nothing more for it to do.
        let _connection = AbortOnDrop(tokio::spawn(connection));
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let request = Request::get(path)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        if response.status() != StatusCode::OK {
            return Err(format!("JWKS answered {}", response.status()).into());
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT)
            .collect()
            .await?;
        Ok(body.to_bytes())
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl JwksSource for HttpJwks {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.get())
                .await
                .map_err(|_| BoxError::from(format!("no JWKS within {:?}", self.timeout)))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host_are_taken() {
        let ok = HttpJwks::new(
            "http://127.0.0.1:8080/.well-known/jwks.json",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("127.0.0.1", 8080));
        let v6 = HttpJwks::new("http://[::1]/jwks", Duration::from_secs(1)).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 80));
        assert!(matches!(
            HttpJwks::new("https://tokengate/jwks", Duration::from_secs(1)),
            Err(UrlError::Scheme)
        ));
        assert!(HttpJwks::new("/.well-known/jwks.json", Duration::from_secs(1)).is_err());
        assert!(HttpJwks::new("not a url", Duration::from_secs(1)).is_err());
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
