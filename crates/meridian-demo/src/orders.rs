//! `POST /api/orders` and `GET /api/portfolio/{user}`: the stand-in's state, in
//! PostgreSQL. Orders go to the writer; portfolios come from the region's replica with
//! read-your-writes (the LSN of the reader's last write, from a header or a cookie).

use crate::app::App;
use crate::market;
use crate::store::{Holdings, Lsn, NewOrder, Side, StoreError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// The request header that carries the LSN of the reader's last write.
pub const MIN_LSN_HEADER: &str = "meridian-min-lsn";
/// The cookie an order answer sets with its commit's LSN, for browsers that send no header.
pub const MIN_LSN_COOKIE: &str = "meridian-min-lsn";
/// The response header that says where a portfolio was read: `replica` or `writer`.
pub const READ_FROM_HEADER: &str = "meridian-read-from";
/// The response header with the commit's LSN.
pub const COMMIT_LSN_HEADER: &str = "meridian-commit-lsn";
/// The largest quantity one order may carry.
pub const MAX_QUANTITY: i64 = 1_000_000;
const MAX_USER_LEN: usize = 64;

/// Why an order request was refused; the message is the 400's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOrder {
    #[error("the body is not JSON ({0}); send {{\"user\": \"alice\", \"symbol\": \"AAPL\", \"side\": \"buy\", \"quantity\": 10}}")]
    NotJson(String),
    #[error("the body must be a JSON object with user, symbol, side and quantity")]
    NotAnObject,
    #[error("`{0}` is missing; an order has user, symbol, side and quantity")]
    Missing(&'static str),
    #[error("unknown field `{0}`; an order has user, symbol, side and quantity")]
    UnknownField(String),
    #[error("user must be a string of 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadUser,
    #[error(
        "symbol must be a string of 1 to 10 letters, digits, '.' or '-', such as AAPL or BRK.B"
    )]
    BadSymbol,
    #[error("side must be \"buy\" or \"sell\"")]
    BadSide,
    #[error("quantity must be a whole number from 1 to 1000000")]
    BadQuantity,
}

/// Whether `user` is a name the demo accepts: short, and safe in a URL path and a log.
pub fn valid_user(user: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&user.len())
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Reads and checks an order body: `{"user", "symbol", "side", "quantity"}`.
pub fn parse_order(body: &[u8]) -> Result<NewOrder, InvalidOrder> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| InvalidOrder::NotJson(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(InvalidOrder::NotAnObject);
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "user" | "symbol" | "side" | "quantity"))
    {
        return Err(InvalidOrder::UnknownField(
            unknown.chars().take(40).collect(),
        ));
    }
    let field = |name: &'static str| fields.get(name).ok_or(InvalidOrder::Missing(name));
    let user = field("user")?
        .as_str()
        .filter(|u| valid_user(u))
        .ok_or(InvalidOrder::BadUser)?;
    let symbol = field("symbol")?
        .as_str()
        .filter(|s| market::valid_symbol(s))
        .ok_or(InvalidOrder::BadSymbol)?;
    let side = match field("side")?.as_str() {
        Some("buy") => Side::Buy,
        Some("sell") => Side::Sell,
        _ => return Err(InvalidOrder::BadSide),
    };
    let quantity = field("quantity")?
        .as_i64()
        .filter(|q| (1..=MAX_QUANTITY).contains(q))
        .ok_or(InvalidOrder::BadQuantity)?;
    Ok(NewOrder {
        user: user.to_owned(),
        symbol: symbol.to_ascii_uppercase(),
        side,
        quantity,
    })
}

/// The LSN a portfolio read must see: the header's (malformed: an error for the client),
/// else the cookie's (malformed: ignored, a browser cannot fix its cookie), else none.
pub fn min_lsn(headers: &HeaderMap) -> Result<Option<Lsn>, String> {
    if let Some(v) = headers.get(MIN_LSN_HEADER) {
        let text = v
            .to_str()
            .map_err(|_| format!("{MIN_LSN_HEADER} must be text such as 16/B374D848"))?;
        return text
            .parse()
            .map(Some)
            .map_err(|e| format!("{MIN_LSN_HEADER}: {e}"));
    }
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == MIN_LSN_COOKIE)
        .and_then(|(_, value)| value.trim_matches('"').parse().ok());
    Ok(from_cookie)
}

/// Where the edge's JWT authorizer puts the verified user (`forward_claims` in the
/// default config: `sub = "x-richesreach-user"`).
pub const VERIFIED_USER: &str = "x-richesreach-user";

/// A JSON error that no cache keeps.
fn problem(status: StatusCode, error: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "private, no-store")],
        Json(json!({ "error": error, "message": message.to_string() })),
    )
        .into_response()
}

fn count_order(app: &App, outcome: &'static str) {
    app.orders
        .get_or_create(&vec![("outcome", outcome.to_owned())])
        .inc();
}

fn no_database() -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_database",
        "this deployment has no [database]; orders and portfolios need one",
    )
}

/// The answer for a failed order (`writing`) or portfolio read.
fn store_failed(e: &StoreError, writing: bool) -> Response {
    let (status, error) = match e {
        StoreError::InsufficientShares { .. } => (StatusCode::CONFLICT, "insufficient_shares"),
        StoreError::CommitUnknown(_) => (StatusCode::SERVICE_UNAVAILABLE, "commit_outcome_unknown"),
        // The statement may have been sent and committed after the deadline.
        StoreError::Timeout { .. } if writing => {
            (StatusCode::SERVICE_UNAVAILABLE, "commit_outcome_unknown")
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
    };
    let mut res = problem(status, error, e);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// `POST /api/orders`: 201 with the order, the region that served it, how long the write
/// took and the commit's LSN (also as a header and a cookie, for read-your-writes).
pub async fn place(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let Some(store) = app.store.as_ref() else {
        return no_database();
    };
    let order = match parse_order(&body) {
        Ok(o) => o,
        Err(e) => {
            count_order(&app, "invalid");
            return problem(StatusCode::BAD_REQUEST, "invalid_order", e);
        }
    };
    // The price the order fills at: the market's now (valid symbol, so always there).
    let Some(quote) = market::quote(&order.symbol, market::now_secs()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_order",
            InvalidOrder::BadSymbol,
        );
    };
    let region = &app.opts.identity.region;
    let started = Instant::now();
    let placed = match store.place_order(&order, quote.price, region).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, user = %order.user, "order not placed");
            let outcome = match e {
                StoreError::InsufficientShares { .. } => "conflict",
                StoreError::CommitUnknown(_) | StoreError::Timeout { .. } => "unknown",
                _ => "unavailable",
            };
            count_order(&app, outcome);
            return store_failed(&e, true);
        }
    };
    count_order(&app, "created");
    app.order_write.observe(started.elapsed().as_secs_f64());
    let write_ms = started.elapsed().as_secs_f64() * 1000.0;
    let lsn = (placed.lsn.0 != 0).then(|| placed.lsn.to_string());
    let body = json!({
        "order": placed.order,
        "position": { "symbol": placed.order.symbol, "quantity": placed.position },
        "region": region,
        "instance": app.opts.identity.instance,
        "write_ms": (write_ms * 1000.0).round() / 1000.0,
        "commit_lsn": lsn,
    });
    let mut res = (
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "private, no-store")],
        Json(body),
    )
        .into_response();
    if let Some(lsn) = lsn {
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&lsn) {
            h.insert(COMMIT_LSN_HEADER, v);
        }
        let cookie = format!(
            "{MIN_LSN_COOKIE}={lsn}; Path=/api/portfolio; Max-Age=300; HttpOnly; SameSite=Lax"
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.insert(header::SET_COOKIE, v);
        }
    }
    res
}

/// `GET /api/portfolio/{user}`: the user's positions (valued at the market now) and recent
/// orders, from the replica when it has the user's last write, else from the writer.
pub async fn portfolio(
    State(app): State<Arc<App>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(store) = app.store.as_ref() else {
        return no_database();
    };
    if !valid_user(&user) {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_user",
            InvalidOrder::BadUser,
        );
    }
    // A signed-in user reads only their own portfolio: the edge verified the token and
    // sent its subject here (the default deployment's authorizer forwards `sub` as this
    // header, and drops one a viewer sent). Without the header (no authorizer in front)
    // the portfolio is as open as the balancer it is reached through.
    if let Some(verified) = headers.get(VERIFIED_USER).map(|v| v.as_bytes()) {
        if verified != user.as_bytes() {
            return problem(
                StatusCode::FORBIDDEN,
                "not_your_portfolio",
                format!(
                    "signed in as `{}`, who may read only their own portfolio",
                    String::from_utf8_lossy(verified)
                ),
            );
        }
    }
    let min_lsn = match min_lsn(&headers) {
        Ok(l) => l,
        Err(message) => return problem(StatusCode::BAD_REQUEST, "invalid_min_lsn", message),
    };
    let held = match store.holdings(&user, min_lsn).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, %user, "portfolio not read");
            return store_failed(&e, false);
        }
    };
    let mut res = (
        [(header::CACHE_CONTROL, "private, no-store")],
        Json(portfolio_body(&app, &user, &held)),
    )
        .into_response();
    res.headers_mut().insert(
        READ_FROM_HEADER,
        HeaderValue::from_static(held.read_from.as_str()),
    );
    app.portfolio_reads
        .get_or_create(&vec![("from", held.read_from.as_str().to_owned())])
        .inc();
    res
}

fn portfolio_body(app: &App, user: &str, held: &Holdings) -> Value {
    let now = market::now_secs();
    let positions: Vec<Value> = held
        .positions
        .iter()
        .map(|(symbol, quantity)| {
            let price = market::quote(symbol, now).map(|q| q.price).unwrap_or(0.0);
            let value = (price * *quantity as f64 * 100.0).round() / 100.0;
            json!({ "symbol": symbol, "quantity": quantity, "price": price, "value": value })
        })
        .collect();
    // Folded from 0.0: `sum` of no floats is -0.0, which JSON shows as such.
    let total = positions
        .iter()
        .filter_map(|p| p["value"].as_f64())
        .fold(0.0, |a, v| a + v);
    json!({
        "user": user,
        "region": app.opts.identity.region,
        "read_from": held.read_from,
        "waited_ms": (held.waited.as_secs_f64() * 1e6).round() / 1000.0,
        "positions": positions,
        "total_value": (total * 100.0).round() / 100.0,
        "orders": held.orders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(body: &str) -> Result<NewOrder, InvalidOrder> {
        parse_order(body.as_bytes())
    }

    #[test]
    fn a_good_order_is_read_and_its_symbol_upper_cased() {
        let o = order(r#"{"user":"alice","symbol":"brk.b","side":"sell","quantity":3}"#).unwrap();
        assert_eq!(
            o,
            NewOrder {
                user: "alice".into(),
                symbol: "BRK.B".into(),
                side: Side::Sell,
                quantity: 3
            }
        );
    }

    #[test]
    fn bad_orders_say_what_is_wrong() {
        use InvalidOrder::*;
        let cases: &[(&str, InvalidOrder)] = &[
            (r#"{"user":"#, NotJson(String::new())),
            ("[1,2]", NotAnObject),
            (
                r#"{"symbol":"AAPL","side":"buy","quantity":1}"#,
                Missing("user"),
            ),
            (
                r#"{"user":"a","side":"buy","quantity":1}"#,
                Missing("symbol"),
            ),
            (
                r#"{"user":"a","symbol":"AAPL","quantity":1}"#,
                Missing("side"),
            ),
            (
                r#"{"user":"a","symbol":"AAPL","side":"buy"}"#,
                Missing("quantity"),
            ),
            (
                r#"{"user":"a","symbol":"AAPL","side":"buy","quantity":1,"price":2}"#,
                UnknownField("price".into()),
            ),
            (
                r#"{"user":"","symbol":"AAPL","side":"buy","quantity":1}"#,
                BadUser,
            ),
            (
                r#"{"user":"a b","symbol":"AAPL","side":"buy","quantity":1}"#,
                BadUser,
            ),
            (
                r#"{"user":7,"symbol":"AAPL","side":"buy","quantity":1}"#,
                BadUser,
            ),
            (
                r#"{"user":"a","symbol":"A/B","side":"buy","quantity":1}"#,
                BadSymbol,
            ),
            (
                r#"{"user":"a","symbol":"TOOLONGSYMBOL","side":"buy","quantity":1}"#,
                BadSymbol,
            ),
            (
                r#"{"user":"a","symbol":"AAPL","side":"BUY","quantity":1}"#,
                BadSide,
            ),
            (
                r#"{"user":"a","symbol":"AAPL","side":"hold","quantity":1}"#,
                BadSide,
            ),
            (
                r#"{"user":"a","symbol":"AAPL","side":"buy","quantity":0}"#,
                BadQuantity,
            ),
            (
                r#"{"user":"a","symbol":"AAPL","side":"buy","quantity":-5}"#,
                BadQuantity,
            ),
            (
                r#"{"user":"a","symbol":"AAPL","side":"buy","quantity":1.5}"#,
                BadQuantity,
            ),
            (
                r#"{"user":"a","symbol":"AAPL","side":"buy","quantity":"10"}"#,
                BadQuantity,
            ),
            (
                r#"{"user":"a","symbol":"AAPL","side":"buy","quantity":1000001}"#,
                BadQuantity,
            ),
        ];
        for (body, want) in cases {
            let got = order(body).expect_err(body);
            match (want, &got) {
                (NotJson(_), NotJson(_)) => {}
                _ => assert_eq!(&got, want, "{body}"),
            }
            assert!(!got.to_string().is_empty());
        }
        let long = format!(
            r#"{{"user":"{}","symbol":"AAPL","side":"buy","quantity":1}}"#,
            "u".repeat(65)
        );
        assert_eq!(order(&long), Err(BadUser));
    }

    #[test]
    fn the_min_lsn_comes_from_the_header_else_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(min_lsn(&h), Ok(None));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; meridian-min-lsn=0/1A"),
        );
        assert_eq!(min_lsn(&h), Ok(Some(Lsn(0x1a))));
        h.insert(MIN_LSN_HEADER, HeaderValue::from_static("1/0"));
        assert_eq!(min_lsn(&h), Ok(Some(Lsn(1 << 32))));
        h.insert(MIN_LSN_HEADER, HeaderValue::from_static("yesterday"));
        assert!(min_lsn(&h).unwrap_err().contains("16/B374D848"));
        // A damaged cookie is ignored: the read is merely not read-your-writes.
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("meridian-min-lsn=oops"),
        );
        assert_eq!(min_lsn(&h), Ok(None));
    }
}
