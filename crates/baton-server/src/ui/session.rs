//! Who is signed in to the UI. An API token signs in: the login form puts its secret in a cookie
//! (HttpOnly, so no script reads it; SameSite=Strict, so no other site's page sends it), and every
//! request checks it as the API checks a bearer token, so a revoked token signs out at once. Every
//! form carries a value derived from the secret (CSRF): a page elsewhere cannot know it, and a
//! request whose `Origin` is not this server's is refused before anything runs.

use std::sync::OnceLock;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use baton_core::{Scope, TokenHash};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::pages::Failure;
use crate::{Access, Api};

/// The cookie that holds the signed-in token's secret.
pub(crate) const COOKIE: &str = "baton_session";

/// The signed-in caller, as the pages and forms see it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token's name; none on an open server.
    pub name: Option<String>,
    pub scope: Scope,
    /// What each form must send back.
    pub csrf: String,
}

impl Session {
    /// Refuses the caller unless its scope covers `needed`.
    pub fn may(&self, needed: Scope) -> Result<(), Failure> {
        if self.scope.covers(needed) {
            return Ok(());
        }
        Err(Failure::new(StatusCode::FORBIDDEN, format!("your token has scope {}; this needs {needed}", self.scope)))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The CSRF value of a session whose secret is `secret`.
fn csrf_of(secret: &[u8]) -> String {
    let digest = Sha256::new().chain_update(b"baton ui csrf\0").chain_update(secret).finalize();
    digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

/// On an open server there is no secret: the forms' value comes from one drawn when it started.
fn open_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0; 32];
        // Without entropy the value is still unknown to other sites' pages, which cannot read ours.
        let _ = getrandom::fill(&mut secret);
        secret
    })
}

/// The session a request's cookie opens, if any.
pub(crate) async fn of(api: &Api, headers: &HeaderMap) -> Result<Option<Session>, Failure> {
    match api.access {
        Access::Open => Ok(Some(Session { name: None, scope: Scope::Admin, csrf: csrf_of(open_secret()) })),
        Access::Tokens => {
            let Some(secret) = cookie(headers, COOKIE) else { return Ok(None) };
            let token = api.store.token(&TokenHash::of(secret)).await.map_err(Failure::store)?;
            Ok(token.map(|token| Session {
                name: Some(token.name),
                scope: token.scope,
                csrf: csrf_of(secret.as_bytes()),
            }))
        }
    }
}

/// Whether a request that changes something comes from a page of this server: its `Origin`, when
/// the browser sends one, names the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) else { return true };
    let Some(host) = headers.get(header::HOST).and_then(|value| value.to_str().ok()) else { return false };
    origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
}

/// Lets a request through with its session, or sends the browser to the login page.
pub(crate) async fn require(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/login" || path.starts_with("/assets/") {
        return next.run(request).await;
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes && !same_origin(request.headers()) {
        return Failure::new(StatusCode::FORBIDDEN, "this form was sent from another site".into()).into_response();
    }
    let session = match of(&api, request.headers()).await {
        Ok(Some(session)) => session,
        Ok(None) if changes => {
            return Failure::new(StatusCode::UNAUTHORIZED, "sign in first".into()).into_response();
        }
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(failure) => return failure.into_response(),
    };
    if api.limits.take(session.name.as_deref().unwrap_or(""), std::time::Instant::now()).is_err() {
        return Failure::new(StatusCode::TOO_MANY_REQUESTS, "too many requests; wait a moment".into()).into_response();
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// A form sent by a signed-in caller with its CSRF value: the session and the fields as `T`.
pub(crate) struct Submitted<T>(pub Session, pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Submitted<T> {
    type Rejection = Failure;

    async fn from_request(request: Request, state: &S) -> Result<Submitted<T>, Failure> {
        let session = request
            .extensions()
            .get::<Session>()
            .cloned()
            .ok_or_else(|| Failure::new(StatusCode::UNAUTHORIZED, "sign in first".into()))?;
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| Failure::new(rejection.status(), rejection.body_text()))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|error| Failure::new(StatusCode::BAD_REQUEST, format!("the form does not parse: {error}")))?;
        let sent = fields.iter().find(|(name, _)| name == "csrf").map(|(_, value)| value.as_str());
        if sent != Some(session.csrf.as_str()) {
            let message = "the form is stale or was not sent from this server's page; reload and try again";
            return Err(Failure::new(StatusCode::FORBIDDEN, message.into()));
        }
        let form = serde_urlencoded::from_bytes(&body).map_err(|error| {
            Failure::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the form is not right: {error}"))
        })?;
        Ok(Submitted(session, form))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookies_are_read_by_name_and_origins_compared_with_the_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; baton_session=baton_x; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE), Some("baton_x"));
        assert_eq!(cookie(&headers, "c"), None);
        headers.insert(header::HOST, "127.0.0.1:8420".parse().unwrap());
        assert!(same_origin(&headers), "no Origin: a same-site form or a tool");
        headers.insert(header::ORIGIN, "http://127.0.0.1:8420".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        assert_ne!(csrf_of(b"one"), csrf_of(b"two"));
    }
}
