//! The upgrade: origin policy, token from the query or header, then a session actor that owns the
//! socket. actix-http hands over every `Connection: Upgrade` request with its socket; from there
//! on the connection costs only what the session keeps, not an HTTP dispatcher's buffers.

use actix_codec::Framed;
use actix_http::{Request, h1, ws};
use actix_web::{http::header, web};
use tokio::{io::AsyncWriteExt, net::TcpStream};

use std::net::{IpAddr, Ipv6Addr};

use super::{
    session::{Peer, WsSession},
    writer,
};
use crate::{
    protocol::CloseCode, protocol::shapes::ErrorBody, router::messages::ConnId,
    wire::auth::bearer_token, wire::connection_limits::Refused, wire::http_connections::HttpConn,
    wire::state::AppState,
};

/// The paths a WebSocket may open on.
pub const PATHS: [&str; 2] = ["/ws", "/api/v1/ws"];

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Mobile apps send no Origin (or `null`) and identify as Dart/Flutter; they are always let in.
pub fn origin_allowed(allowed: Option<&[String]>, origin: &str, user_agent: &str) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    let is_mobile_app = origin.is_empty()
        || origin == "null"
        || user_agent.contains("Dart")
        || user_agent.contains("Flutter");
    is_mobile_app || allowed.iter().any(|o| o == origin)
}

fn header_text(req: &Request, name: header::HeaderName) -> String {
    req.head()
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The client's address, believing `X-Forwarded-For` only from `TRUSTED_PROXIES`.
fn client_addr(app: &AppState, req: &Request) -> IpAddr {
    let forwarded = header_text(req, header::X_FORWARDED_FOR);
    let peer = req.peer_addr().map(|a| a.ip());
    app.config
        .trusted_proxies
        .client(peer, Some(&forwarded))
        .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

/// Takes over an upgrade request and its socket.
pub async fn upgrade(
    app: web::Data<AppState>,
    (req, framed): (Request, Framed<HttpConn, h1::Codec>),
) -> Result<(), actix_http::Error> {
    if let Err(e) = take_over(app, req, framed).await {
        // The client left during the handshake; nothing is owed to it.
        log::debug!("WebSocket upgrade ended early: {e}");
    }
    Ok(())
}

async fn take_over(
    app: web::Data<AppState>,
    req: Request,
    framed: Framed<HttpConn, h1::Codec>,
) -> std::io::Result<()> {
    let parts = framed.into_parts();
    // From here on the WebSocket limits count it, not the plain HTTP cap.
    let (mut io, already_read) = (parts.io.into_inner(), parts.read_buf);
    let path = req.path().to_string();
    if !PATHS.contains(&path.as_str()) {
        return refuse(
            &mut io,
            "404 Not Found",
            "not_found",
            &format!("nothing at {path}"),
        )
        .await;
    }
    if let Err(e) = ws::verify_handshake(req.head()) {
        return refuse(&mut io, "400 Bad Request", "bad_request", &e.to_string()).await;
    }
    let addr = client_addr(&app, &req);
    let upgrade_auth = token(&req).map(|token| app.jwt.verify(&token));
    let authenticated = matches!(upgrade_auth, Some(Ok(_)));
    let admitted = match app.limits.admit(addr, authenticated) {
        Ok(admitted) => admitted,
        Err(Refused::OverCapacity) => {
            log::warn!(
                "WebSocket refused: {} connections open (MAX_CONNECTIONS); addr={addr}",
                app.config.max_connections
            );
            let message = "the server is at its connection limit; try again shortly";
            return refuse(&mut io, "503 Service Unavailable", "over_capacity", message).await;
        }
        Err(Refused::TooManyUnauthenticatedInAll) => {
            log::warn!(
                "WebSocket refused: {} connections have not authenticated (MAX_UNAUTHENTICATED); \
                 addr={addr}",
                app.config.max_unauthenticated
            );
            let message = "too many connections have not authenticated; bring the token with \
                           the upgrade (Authorization header), or try again shortly";
            return refuse(&mut io, "503 Service Unavailable", "over_capacity", message).await;
        }
        Err(Refused::TooManyUnauthenticated) => {
            log::warn!("WebSocket refused: too many unauthenticated connections from addr={addr}");
            let message = "too many connections from this address have not authenticated";
            return refuse(&mut io, "429 Too Many Requests", "rate_limited", message).await;
        }
    };
    let key = req
        .head()
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| ws::hash_key(k.as_bytes()))
        .expect("verified above");
    let accept = std::str::from_utf8(&key).expect("base64 is ASCII");
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {accept}\r\n\r\n"
    );
    io.write_all(response.as_bytes()).await?;

    let peer = Peer {
        path,
        addr: addr.to_string(),
        origin: header_text(&req, header::ORIGIN),
        user_agent: header_text(&req, header::USER_AGENT),
    };
    if !origin_allowed(
        app.config.allowed_origins.as_deref(),
        &peer.origin,
        &peer.user_agent,
    ) {
        log::warn!("WebSocket refused: origin not allowed; {peer}");
        // Upgraded first and then closed with 1008, so browsers and apps see why.
        let close = ws::Message::Close(Some(ws::CloseReason {
            code: writer::close_code(CloseCode::Policy),
            description: Some("origin not allowed".into()),
        }));
        io.write_all(&writer::encode(close)).await?;
        io.shutdown().await?;
        return Ok(());
    }
    let id: ConnId = rand::random();
    let conn_id = format!("{id:016x}");
    log::info!(conn_id = conn_id.as_str(); "WebSocket {conn_id} accepted; {peer}");
    WsSession::start(id, app, io, &already_read, peer, admitted, upgrade_auth);
    Ok(())
}

/// The token in `?token=` or, failing that, `Authorization: Bearer`.
fn token(req: &Request) -> Option<String> {
    let query = req.uri().query().unwrap_or("");
    web::Query::<TokenQuery>::from_query(query)
        .ok()
        .and_then(|q| q.into_inner().token)
        .filter(|t| !t.is_empty())
        .or_else(|| bearer_token(req.head().headers()).map(str::to_string))
}

/// Answers a request that cannot be upgraded, as the HTTP routes answer errors, and closes.
pub(crate) async fn refuse(
    io: &mut TcpStream,
    status: &str,
    code: &'static str,
    message: &str,
) -> std::io::Result<()> {
    let body = serde_json::to_string(&ErrorBody {
        code,
        message: message.to_string(),
    })
    .expect("an error body always serializes");
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    io.write_all(response.as_bytes()).await?;
    io.shutdown().await?;
    Ok(())
}
