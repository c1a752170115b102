//! Every HTTP request's access log line and metrics. Each request gets an id, sent back as
//! `X-Request-Id` and written as a field of its log line (see `LOG_FORMAT=json`).

use std::time::Instant;

use actix_web::{
    dev::ServiceResponse,
    http::header::{HeaderName, HeaderValue, USER_AGENT, X_FORWARDED_FOR},
};

use crate::{config::TrustedProxies, metrics::Metrics};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Logs and counts a finished request, and names its id in the answer. Only the path is logged,
/// never the query, where tokens may be.
pub fn record<B>(
    metrics: &Metrics,
    proxies: &TrustedProxies,
    request_id: &str,
    started: Instant,
    response: &mut ServiceResponse<B>,
) {
    let request = response.request();
    let method = method_label(request.method());
    let route = request.match_pattern().unwrap_or_else(|| "other".into());
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics
        .http_requests
        .with_label_values(&[method, &route, &status.to_string()])
        .inc();
    metrics
        .http_request_duration
        .with_label_values(&[method, &route])
        .observe(elapsed.as_secs_f64());
    let forwarded = request
        .headers()
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok());
    let client = proxies
        .client(request.peer_addr().map(|a| a.ip()), forwarded)
        .map_or_else(|| "-".into(), |ip| ip.to_string());
    let agent = request
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let path = request.path();
    let ms = elapsed.as_secs_f64() * 1000.0;
    log::info!(
        target: "access",
        request_id = request_id,
        client = client.as_str(),
        method = method,
        path = path,
        status = status,
        duration_ms = ms;
        "{client} \"{method} {path}\" {status} {ms:.1}ms \"{agent}\""
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
}

/// Methods as labels: the known ones, else `other`, so a client cannot add label values.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
