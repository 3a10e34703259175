//! `GET /openapi.json` (SPEC §12): an OpenAPI 3.1 document of every public
//! endpoint, generated from the handlers' own request and response types
//! (their `#[utoipa::path]`s and `ToSchema`s), so it cannot drift from
//! the code. What every endpoint shares — `405` for another method, the
//! answers of [`super::body`] to a body it cannot read, `Retry-After` — is
//! added from the route table and the error mapping here, once. Built
//! once, at the first request.

use std::sync::OnceLock;

use bytes::Bytes;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{Schema, SchemaType};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder, Type};
use utoipa::openapi::{ObjectBuilder, Response as ResponseDoc};
use utoipa::{Modify, OpenApi};

use super::route::{Listener, Route};
use super::{
    ApiError, Response, authenticate, discovery, health, login, logout, oauth, public_json,
    refresh, register, sessions, validate,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tokengate",
        description = "A horizontally scaled, stateless JWT session service for NGINX auth_request. \
            Every error is `{\"error\", \"error_description\"}` (`ErrorBody`).",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        health::ping,
        health::handle,
        login::handle,
        register::handle,
        refresh::handle,
        logout::handle,
        sessions::list,
        sessions::end,
        authenticate::handle,
        validate::handle,
        oauth::token,
        oauth::introspect,
        oauth::revoke,
        oauth::verify,
        discovery::jwks,
        discovery::metadata,
        handle,
    ),
    modifiers(&Shared),
    tags(
        (name = "probes", description = "Liveness and readiness"),
        (name = "sessions", description = "Log in, refresh, log out, a user's own sessions"),
        (name = "users", description = "Accounts with an email and a password"),
        (name = "gate", description = "nginx `auth_request`: may a request pass?"),
        (name = "api tokens", description = "Long-lived tokens of services"),
        (name = "oauth", description = "OAuth 2.0 for machine clients (RFC 6749, 7662, 7009, 8414)"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// This document.
///
/// Every public endpoint, its requests and its answers.
#[utoipa::path(
    method(get, head),
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "An OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub fn handle() -> Response {
    public_json(document())
}

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

/// What the endpoints share, from the code that decides it.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, scheme) in security_schemes() {
            components.add_security_scheme(name, scheme);
        }
        for (error, name, description) in shared_errors() {
            let mut response = error_response(&format!("{description} (`{}`)", error.code()));
            if let ApiError::MethodNotAllowed(_) = error {
                let allow = header(Type::String, "The methods the path answers");
                response.headers.insert("Allow".to_owned(), allow.into());
            }
            components
                .responses
                .insert(name.to_owned(), response.into());
        }
        for route in Route::ALL {
            if route.listener() == Some(Listener::Admin) {
                continue;
            }
            if let Some(item) = doc.paths.paths.get_mut(route.name()) {
                complete(route, item);
            } // else the unit test says which
        }
    }
}

/// How callers authenticate, by the name operations require it under.
fn security_schemes() -> [(&'static str, SecurityScheme); 4] {
    let scheme = |scheme, format: Option<&str>, description: &str| {
        let mut http = HttpBuilder::new()
            .scheme(scheme)
            .description(Some(description));
        if let Some(format) = format {
            http = http.bearer_format(format);
        }
        SecurityScheme::Http(http.build())
    };
    [
        (
            "bearer",
            scheme(
                HttpAuthScheme::Bearer,
                Some("JWT"),
                "An access token of a live session (`access`, `access_token`)",
            ),
        ),
        (
            "api_token",
            scheme(
                HttpAuthScheme::Bearer,
                Some("tg_live_…"),
                "A service's API token",
            ),
        ),
        (
            "client_basic",
            scheme(
                HttpAuthScheme::Basic,
                None,
                "An OAuth client's form-encoded id and secret (RFC 6749 §2.3.1); \
                 or `client_id` + `client_secret` in the body",
            ),
        ),
        (
            "login_client",
            scheme(
                HttpAuthScheme::Basic,
                None,
                "A trusted login client (`login.clients`)",
            ),
        ),
    ]
}

/// Answers of [`ApiError`] that are not an endpoint's own: another method
/// than the path's, and those of [`super::body`] to a body it cannot read.
/// With their names among the components' responses.
fn shared_errors() -> [(ApiError, &'static str, &'static str); 4] {
    [
        (
            ApiError::MethodNotAllowed(""),
            "MethodNotAllowed",
            "Another method than the path's",
        ),
        (
            ApiError::RequestTimeout,
            "RequestTimeout",
            "The body did not arrive within `server.body_read_timeout`",
        ),
        (
            ApiError::PayloadTooLarge,
            "PayloadTooLarge",
            "A body larger than 16 KiB",
        ),
        (
            ApiError::UnsupportedMediaType,
            "UnsupportedMediaType",
            "A `Content-Type` the endpoint does not read",
        ),
    ]
}

/// Adds to each operation of `route` what it shares with others: an id of
/// its own, `405` if the route restricts methods, the answers to an
/// unreadable body if it reads one, `Retry-After` on `429` and `503`.
fn complete(route: Route, item: &mut PathItem) {
    let several = operations(item).count() > 1;
    for (method, operation) in operations(item) {
        // One operation for several methods: an id each (GET's unchanged).
        if let Some(id) = &mut operation.operation_id
            && several
            && method != "get"
        {
            id.push('_');
            id.push_str(method);
        }
        if let Some(RefOr::T(body)) = &mut operation.request_body {
            absent_is_not_null(body);
        }
        let reads_body = operation.request_body.is_some();
        let responses = &mut operation.responses.responses;
        for (error, name, _) in shared_errors() {
            let applies = match error {
                ApiError::MethodNotAllowed(_) => route.allow().is_some(),
                _ => reads_body,
            };
            if applies {
                let reference = Ref::new(format!("#/components/responses/{name}"));
                let status = error.status().as_str().to_owned();
                responses.entry(status).or_insert(reference.into());
            }
        }
        for (status, response) in responses.iter_mut() {
            if let ("429" | "503", RefOr::T(response)) = (status.as_str(), response) {
                let retry = header(Type::Integer, "Seconds to wait before trying again");
                let name = "Retry-After".to_owned();
                response.headers.entry(name).or_insert(retry.into());
            }
        }
    }
}

/// The operations of a path, with their method's name.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("head", &mut item.head),
        ("post", &mut item.post),
        ("put", &mut item.put),
        ("patch", &mut item.patch),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_mut()?)))
}

/// utoipa writes an optional body's schema as `oneOf: [T, null]`; a body
/// that may be left out is not one that may be `null`.
fn absent_is_not_null(body: &mut RequestBody) {
    if body.required == Some(Required::True) {
        return;
    }
    let is_null = |schema: &RefOr<Schema>| {
        matches!(schema, RefOr::T(Schema::Object(object))
            if object.schema_type == SchemaType::Type(Type::Null))
    };
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        if let [a, b] = &one_of.items[..] {
            match (is_null(a), is_null(b)) {
                (true, false) => content.schema = Some(b.clone()),
                (false, true) => content.schema = Some(a.clone()),
                _ => {}
            }
        }
    }
}

fn error_response(description: &str) -> ResponseDoc {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn header(kind: Type, description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(kind)))
        .description(Some(description))
        .build()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_slice(&document()).expect("the document is JSON")
    }

    /// The methods a route answers, as the document names them.
    fn methods(route: Route) -> Vec<String> {
        // `None`: any method; GET, HEAD and POST are documented.
        let allow = route.allow().unwrap_or("GET, HEAD, POST");
        allow.split(", ").map(str::to_ascii_lowercase).collect()
    }

    #[test]
    fn every_public_route_is_documented_with_the_methods_it_answers() {
        let doc = doc();
        let paths = doc["paths"].as_object().expect("paths");
        for route in Route::ALL {
            let path = route.name();
            if route.listener() == Some(Listener::Admin) {
                assert!(!paths.contains_key(path), "{path} is the admin listener's");
                continue;
            }
            let item = paths[path]
                .as_object()
                .unwrap_or_else(|| panic!("{path} is not documented"));
            let documented: Vec<&String> = item.keys().collect();
            assert_eq!(
                documented,
                methods(route).iter().collect::<Vec<_>>(),
                "{path}"
            );
            for (method, operation) in item {
                let responses = operation["responses"].as_object().expect("responses");
                let ok = responses.keys().any(|status| status.starts_with('2'));
                assert!(ok, "{method} {path} documents no success");
                let wrong_method = responses.contains_key("405");
                assert_eq!(
                    wrong_method,
                    route.allow().is_some(),
                    "405 of {method} {path}"
                );
            }
        }
        // And nothing else: every documented path is a public route's.
        for path in paths.keys() {
            let route = Route::ALL.iter().find(|route| route.name() == path);
            let route = route.unwrap_or_else(|| panic!("{path} is no route"));
            assert_ne!(route.listener(), Some(Listener::Admin), "{path}");
        }
    }

    /// Every `$ref` under `value`, with where it was found.
    fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => out.push((at.clone(), target)),
                        _ => refs(value, format!("{at}/{key}"), out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    refs(value, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn it_is_openapi_3_1_and_every_reference_resolves() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut found = Vec::new();
        refs(&doc, String::new(), &mut found);
        assert!(found.len() > 50, "{} references", found.len());
        for (at, target) in found {
            let pointer = target
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{at}: {target}"));
            // A whole response (`…/responses/405`) is a shared one; else a schema.
            let steps: Vec<&str> = at.rsplit('/').take(2).collect();
            let kind = match steps[..] {
                [status, "responses"] if status.parse::<u16>().is_ok() => "/components/responses/",
                _ => "/components/schemas/",
            };
            assert!(pointer.starts_with(kind), "{at}: {target}");
            assert!(
                doc.pointer(pointer).is_some(),
                "{at}: {target} resolves to nothing"
            );
        }
    }

    #[test]
    fn operation_ids_are_unique_and_optional_bodies_are_not_null() {
        let doc = doc();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "{method} {path}: {id} again");
                let body = operation["requestBody"].to_string();
                assert!(!body.contains("\"null\""), "{method} {path}: {body}");
            }
        }
    }
}
