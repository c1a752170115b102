//! A real WebSocket client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use super::PATIENCE;

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl WsClient {
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> WsClient {
        match Self::try_connect(url, headers).await {
            Ok(client) => client,
            Err((status, body)) => panic!("websocket refused with {status}: {body}"),
        }
    }

    /// Connects, or answers the HTTP status and JSON body the upgrade was refused with.
    pub async fn try_connect(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, (u16, Value)> {
        let mut request = url.into_client_request().expect("ws url");
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        match connect_async(request).await {
            Ok((stream, _)) => Ok(WsClient { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                let body = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
                Err((response.status().as_u16(), body))
            }
            Err(e) => panic!("websocket connects: {e}"),
        }
    }

    /// Connects with a receive buffer of a few KiB, so that what the server sends while this
    /// client is not reading waits in the server's send queue, where a reset would discard it.
    pub async fn connect_with_small_window(url: &str) -> WsClient {
        let address = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(address).await.expect("tcp connects");
        let request = url.into_client_request().expect("ws url");
        let (stream, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
            .await
            .expect("websocket connects");
        WsClient { stream }
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    /// Writes messages back to back and flushes once, stopping at the first that cannot go
    /// (the server closed).
    pub async fn send_all_unflushed(&mut self, messages: &[Value]) {
        for message in messages {
            if self
                .stream
                .feed(Message::text(message.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = self.stream.flush().await;
    }

    /// Sends unless the server has closed the connection already; answers whether it went.
    pub async fn try_send(&mut self, message: Value) -> bool {
        self.stream
            .send(Message::text(message.to_string()))
            .await
            .is_ok()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("send");
    }

    /// The next JSON message; panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        self.recv_within(PATIENCE).await.expect("a message in time")
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(wait, self.stream.next()).await.ok()?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The next message, which must have this `type`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["type"], json!(kind), "unexpected message {message}");
        message
    }

    /// The next message of this `type`, passing over others.
    pub async fn recv_skipping_to(&mut self, kind: &str) -> Value {
        loop {
            let message = self.recv().await;
            if message["type"] == json!(kind) {
                return message;
            }
        }
    }

    /// The next `error`, which must carry this code.
    pub async fn recv_error(&mut self, code: &str) -> Value {
        let message = self.recv_type("error").await;
        assert_eq!(message["code"], json!(code), "{message}");
        assert!(
            message["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{message}"
        );
        message
    }

    /// Asserts that nothing arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(message) = self.recv_within(wait).await {
            panic!("expected no message, got {message}");
        }
    }

    /// Closes from the client's side: sends a close frame, then reads until the server has
    /// answered with its own and closed the TCP connection. Answers the server's close frame.
    pub async fn close_handshake(&mut self) -> Closed {
        self.stream.close(None).await.expect("close sent");
        let mut reply = None;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("the server closes the connection in time");
            match next {
                Some(Ok(Message::Close(frame))) => {
                    reply = Some(Closed {
                        code: frame.as_ref().map_or(1005, |f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    });
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => break,
            }
        }
        // The WebSocket layer is done; wait for the server to close the TCP connection too.
        if let MaybeTlsStream::Plain(tcp) = self.stream.get_mut() {
            use tokio::io::AsyncReadExt;
            let mut rest = [0u8; 64];
            while tokio::time::timeout_at(deadline, tcp.read(&mut rest))
                .await
                .expect("the server closes the TCP connection in time")
                .is_ok_and(|n| n > 0)
            {}
        }
        reply.expect("the server answered the close")
    }

    /// Reads until the server's close frame, skipping other messages.
    pub async fn closed(&mut self) -> Closed {
        self.closed_after(&mut Vec::new()).await
    }

    /// Like [`closed`], keeping the messages that came before the close.
    pub async fn closed_after(&mut self, before: &mut Vec<Value>) -> Closed {
        let deadline = tokio::time::Instant::now() + PATIENCE * 2;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("the server closes in time");
            match next {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Closed {
                        code: u16::from(frame.code),
                        reason: frame.reason.to_string(),
                    };
                }
                Some(Ok(Message::Text(text))) => before.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}
