//! `GET /openapi.json` (SPEC §12): an OpenAPI 3.1 document of every public
//! endpoint, generated from the handlers' own request and response types
//! (their `#[utoipa::path]`s and `ToSchema`s), so it cannot drift from
//! the code. Built once, at the first request.

use std::sync::OnceLock;

use bytes::Bytes;
use utoipa::OpenApi;

use super::login;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tokengate",
        description = "A horizontally scaled, stateless JWT session service for NGINX auth_request.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(login::handle),
    tags(
        (name = "sessions", description = "Log in, refresh, log out, a user's sessions"),
    )
)]
struct ApiDoc;

/// The document, as JSON.
pub fn document() -> Bytes {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            let mut doc = ApiDoc::openapi();
            doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
            // Our own types: serializing them cannot fail.
            Bytes::from(doc.to_json().unwrap_or_else(|_| "{}".to_owned()))
        })
        .clone()
}
