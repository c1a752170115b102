//! A real HTTP receiver of webhooks, as an assignment service would run one: it checks each
//! POST's signature and processes each `eventId` once.

use std::{
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::ServerHandle, web};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

pub const WEBHOOK_SECRET: &str = "webhook-test-secret-0123456789abcdef";

#[derive(Debug, Default)]
pub struct Received {
    /// Each event once, in the order first taken.
    pub events: Vec<Value>,
    pub posts: usize,
    pub duplicates: usize,
    pub bad_signatures: usize,
    /// Events of this `assignmentId` are answered `refuse_with` (400 when unset)...
    pub refuse_assignment: Option<i64>,
    pub refuse_with: Option<u16>,
    /// ...this many times, or for ever.
    pub refuse_times: Option<usize>,
    pub refused: usize,
    /// The `eventId`s refused, in order.
    pub refused_ids: Vec<Value>,
    /// POSTs to `/moved`, which answers 308 to `/hooks`.
    pub redirected: usize,
}

pub struct WebhookReceiver {
    pub port: u16,
    pub received: Arc<Mutex<Received>>,
    running: Option<(ServerHandle, JoinHandle<()>)>,
}

/// Whether `header` is `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` with a recent `t`.
fn signed_correctly(header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = Some(value.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = chrono::Utc::now().timestamp();
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == v1
}

async fn take(
    req: HttpRequest,
    body: String,
    received: web::Data<Arc<Mutex<Received>>>,
) -> HttpResponse {
    let mut received = received.lock().unwrap();
    received.posts += 1;
    let header = req
        .headers()
        .get("X-Dispatcher-Signature")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !signed_correctly(header, &body) {
        received.bad_signatures += 1;
        return HttpResponse::Unauthorized().finish();
    }
    let event: Value = serde_json::from_str(&body).expect("a webhook body is JSON");
    if received.refuse_assignment.is_some()
        && event["assignmentId"].as_i64() == received.refuse_assignment
        && received
            .refuse_times
            .is_none_or(|times| received.refused < times)
    {
        received.refused += 1;
        received.refused_ids.push(event["eventId"].clone());
        let status = received.refuse_with.unwrap_or(400);
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .finish();
    }
    let id = event["eventId"].clone();
    if received.events.iter().any(|e| e["eventId"] == id) {
        received.duplicates += 1;
    } else {
        received.events.push(event);
    }
    HttpResponse::Ok().finish()
}

/// A receiver that moved: it answers with a permanent redirect to `/hooks`.
async fn moved(received: web::Data<Arc<Mutex<Received>>>) -> HttpResponse {
    received.lock().unwrap().redirected += 1;
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/hooks"))
        .finish()
}

impl WebhookReceiver {
    /// A receiver for `port` that is not listening yet.
    pub fn down(port: u16) -> WebhookReceiver {
        WebhookReceiver {
            port,
            received: Arc::default(),
            running: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    pub fn up(&mut self) {
        let (tx, rx) = std::sync::mpsc::channel();
        let received = self.received.clone();
        let port = self.port;
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(received.clone()))
                        .route("/hooks", web::post().to(take))
                        .route("/moved", web::post().to(moved))
                })
                .workers(1)
                .bind(("127.0.0.1", port))
                .expect("the receiver's port is free")
                .run();
                tx.send(server.handle()).unwrap();
                server.await.unwrap();
            })
        });
        let handle = rx.recv().unwrap();
        self.running = Some((handle, thread));
    }

    pub fn stop(&mut self) {
        if let Some((handle, thread)) = self.running.take() {
            // Its own thread: the caller may be inside a runtime already.
            std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(handle.stop(false));
                thread.join().unwrap();
            })
            .join()
            .unwrap();
        }
    }

    /// Waits until `done` holds of what was received, or panics with it after `within`.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&Received) -> bool) {
        let start = Instant::now();
        loop {
            if done(&self.received.lock().unwrap()) {
                return;
            }
            if start.elapsed() > within {
                panic!("waited {within:?}: {:#?}", self.received.lock().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}
