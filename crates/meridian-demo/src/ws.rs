//! `GET /ws/quotes`: live quotes over a WebSocket, the RichesReach streaming feed.
//!
//! Each frame names the instance that sent it, so a test through a PoP and a balancer can
//! see which instance a tunnel landed on and that a reconnect landed elsewhere.

use crate::app::App;
use crate::market::{self, fnv};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use meridian_http::TunnelHold;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Symbols streamed when the client names none.
const DEFAULT_SYMBOLS: &[&str] = &["AAPL", "MSFT", "NVDA"];
/// At most this many symbols per socket: a client cannot make one socket a firehose.
const MAX_SYMBOLS: usize = 20;
/// A client that takes no frame for this long is let go: its socket holds a place under
/// the server's connection cap (`TunnelHold`), which a stuck one must not keep.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
pub(crate) struct Params {
    symbols: Option<String>,
}

pub(crate) async fn quotes(
    State(app): State<Arc<App>>,
    Query(p): Query<Params>,
    hold: Option<Extension<TunnelHold>>,
    ws: WebSocketUpgrade,
) -> Response {
    let symbols: Vec<String> = match &p.symbols {
        Some(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_uppercase)
            .collect(),
        None => DEFAULT_SYMBOLS.iter().map(|s| s.to_string()).collect(),
    };
    if symbols.is_empty()
        || symbols.len() > MAX_SYMBOLS
        || symbols.iter().any(|s| market::quote(s, 0).is_none())
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("symbols: 1 to {MAX_SYMBOLS} comma-separated ticker symbols"),
        )
            .into_response();
    }
    // The socket keeps its connection's place (busy, under the server's cap) while it lives.
    let hold = hold.map(|Extension(h)| h);
    ws.on_upgrade(move |socket| stream(app, socket, symbols, hold))
}

/// Sends one frame per symbol every 100–250 ms until the client leaves, the instance
/// shuts down or the server needs the connection's place (then a close frame, 1001, so the
/// client reconnects elsewhere). Pings are answered by the WebSocket library as it reads.
async fn stream(
    app: Arc<App>,
    mut socket: WebSocket,
    symbols: Vec<String>,
    hold: Option<TunnelHold>,
) {
    let id = &app.opts.identity;
    let mut shutdown = app.shutdown.clone();
    let mut tick: u64 = 0;
    loop {
        // Jitter from a stable hash: no random source needed, still not in lockstep.
        let seed = fnv(format!("{}{tick}", id.instance).as_bytes());
        let wait = Duration::from_millis(100 + seed % 151);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            },
            _ = going_away(&mut shutdown, hold.as_ref()) => {
                // The place goes back at once, whether or not the client takes the close.
                drop(hold);
                let close = CloseFrame { code: 1001, reason: "going away".into() };
                let closing = socket.send(Message::Close(Some(close)));
                let _ = tokio::time::timeout(SEND_TIMEOUT, closing).await;
                return;
            }
        }
        tick += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for s in &symbols {
            let Some(q) = market::quote(s, now / 1000) else {
                continue;
            };
            let frame = json!({
                "symbol": q.symbol,
                "price": q.price,
                "region": id.region,
                "instance": id.instance,
                "time": now,
            });
            let sent = socket.send(Message::Text(frame.to_string().into()));
            if !matches!(tokio::time::timeout(SEND_TIMEOUT, sent).await, Ok(Ok(()))) {
                return;
            }
        }
    }
}

/// Resolves when the instance starts shutting down; never for a router served without
/// [`crate::serve`]'s shutdown (its sender is gone).
async fn stopping(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves when the instance starts shutting down or the server evicts the socket's
/// connection (never without a hold).
async fn going_away(rx: &mut tokio::sync::watch::Receiver<bool>, hold: Option<&TunnelHold>) {
    let evicted = async {
        match hold {
            Some(h) => h.evicted().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stopping(rx) => {}
        _ = evicted => {}
    }
}
