//! Who may make a request. Every request but the health check carries `Authorization: Bearer
//! <secret>` of an active token whose scope covers it: reading needs `read`, changing a task
//! `write`, moving money `admin`. Each caller (a token, or everyone when the server is open) has a
//! bucket of requests that refills at a steady rate; an empty bucket answers 429.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_core::{Scope, TokenHash};

use crate::{Api, ApiError};

/// Whether requests need a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every request but the health check needs an active token with the scope it asks for.
    Tokens,
    /// Anyone who reaches the address may do anything: served on loopback only.
    Open,
}

/// Who made a request: the name of its token (none on an open server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Option<String>);

/// What lets a request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Nothing: the health check, which anyone may ask.
    Nothing,
    /// A hook's signature, which the hook checks. No token, so the deliveries of every hook share
    /// one rate limit: whoever can reach the server cannot fill the delivery log faster.
    Signature,
    /// A token with this scope.
    Token(Scope),
}

/// The caller whose bucket every hook delivery takes from.
const DELIVERIES: &str = "hook deliveries";

fn needed(method: &Method, path: &str) -> Needs {
    if path == "/api/v1/healthz" {
        return Needs::Nothing;
    }
    if method == Method::POST && path.strip_prefix("/api/v1/hooks/").is_some_and(|name| !name.contains('/')) {
        return Needs::Signature;
    }
    let reads = method == Method::GET || method == Method::HEAD;
    Needs::Token(match () {
        () if reads => Scope::Read,
        () if path.starts_with("/api/v1/account") => Scope::Admin,
        () => Scope::Write,
    })
}

/// The secret of `Authorization: Bearer <secret>`, if the header is there and well formed; for a
/// read, the web UI's session cookie also serves (its pages follow the API's event streams), never
/// for a change, which a page of another site could otherwise make with it.
fn bearer(request: &Request) -> Option<&str> {
    let header = request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    if let Some((kind, secret)) = header.and_then(|value| value.split_once(' ')) {
        return kind.eq_ignore_ascii_case("bearer").then(|| secret.trim());
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    reads.then(|| crate::ui::cookie(request.headers(), crate::ui::COOKIE)).flatten()
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned()).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

pub(crate) async fn authorize(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let scope = match needed(request.method(), request.uri().path()) {
        Needs::Nothing => return next.run(request).await,
        Needs::Signature => None,
        Needs::Token(scope) => Some(scope),
    };
    let caller = match (scope, api.access) {
        (None, _) => DELIVERIES.to_owned(),
        (Some(_), Access::Open) => String::new(),
        (Some(scope), Access::Tokens) => {
            let Some(secret) = bearer(&request) else {
                return unauthorized("send `Authorization: Bearer <token>` (make one with `baton token create`)");
            };
            let token = match api.store.token(&TokenHash::of(secret)).await {
                Ok(Some(token)) => token,
                Ok(None) => return unauthorized("the token is unknown or revoked"),
                Err(error) => return ApiError::from(error).into_response(),
            };
            if !token.scope.covers(scope) {
                let message = format!("token {} has scope {}; this needs {scope}", token.name, token.scope);
                return ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response();
            }
            token.name
        }
    };
    if let Err(wait) = api.limits.take(&caller, Instant::now()) {
        let message = format!("more than {} requests a second; retry in {} s", api.limits.per_second, wait.as_secs());
        let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(wait.as_secs()));
        return response;
    }
    let named = !caller.is_empty() && scope.is_some();
    request.extensions_mut().insert(Caller(named.then_some(caller)));
    next.run(request).await
}

/// A token bucket per caller: `per_second` requests a second, bursts of ten times as many.
#[derive(Debug)]
pub struct Limits {
    per_second: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    left: f64,
    at: Instant,
}

impl Limits {
    pub fn new(per_second: u32) -> Limits {
        Limits { per_second: per_second.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    fn burst(&self) -> f64 {
        f64::from(self.per_second) * 10.0
    }

    /// Takes one request from `caller`'s bucket, or says how long until one is there (whole
    /// seconds, at least one, as Retry-After wants).
    pub(crate) fn take(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket { left: self.burst(), at: now });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * f64::from(self.per_second);
        bucket.left = (bucket.left + refill).min(self.burst());
        bucket.at = now;
        if bucket.left >= 1.0 {
            bucket.left -= 1.0;
            return Ok(());
        }
        let missing = (1.0 - bucket.left) / f64::from(self.per_second);
        Err(Duration::from_secs(missing.ceil().max(1.0) as u64))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reading_needs_read_steering_write_and_money_admin() {
        assert_eq!(needed(&Method::GET, "/api/v1/healthz"), Needs::Nothing);
        assert_eq!(needed(&Method::GET, "/api/v1/tasks"), Needs::Token(Scope::Read));
        assert_eq!(needed(&Method::GET, "/metrics"), Needs::Token(Scope::Read));
        assert_eq!(needed(&Method::GET, "/api/v1/account"), Needs::Token(Scope::Read));
        assert_eq!(needed(&Method::POST, "/api/v1/tasks"), Needs::Token(Scope::Write));
        assert_eq!(needed(&Method::PATCH, "/api/v1/tasks/x/budget"), Needs::Token(Scope::Write));
        assert_eq!(needed(&Method::POST, "/api/v1/account/topup"), Needs::Token(Scope::Admin));
        assert_eq!(needed(&Method::PUT, "/api/v1/account/policy"), Needs::Token(Scope::Admin));
        // An unknown method is no read.
        assert_eq!(needed(&Method::OPTIONS, "/api/v1/tasks"), Needs::Token(Scope::Write));
        // A hook's delivery is signed, not tokened; reading its log is not a delivery.
        assert_eq!(needed(&Method::POST, "/api/v1/hooks/gh"), Needs::Signature);
        assert_eq!(needed(&Method::GET, "/api/v1/hooks/gh/deliveries"), Needs::Token(Scope::Read));
        assert_eq!(needed(&Method::POST, "/api/v1/hooks/gh/deliveries"), Needs::Token(Scope::Write));
        assert_eq!(needed(&Method::GET, "/api/v1/hooks"), Needs::Token(Scope::Read));
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limits = Limits::new(2);
        let start = Instant::now();
        for _ in 0..20 {
            limits.take("a", start).unwrap();
        }
        assert_eq!(limits.take("a", start), Err(Duration::from_secs(1)));
        // Callers do not share a bucket.
        limits.take("b", start).unwrap();
        let later = start + Duration::from_millis(500);
        limits.take("a", later).unwrap();
        assert!(limits.take("a", later).is_err());
    }
}
