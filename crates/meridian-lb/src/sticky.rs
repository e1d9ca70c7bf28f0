//! ALB's stickiness: a cookie names the target a client stays on.
//!
//! `lb_cookie` groups use the balancer's cookie `AWSALB` for their duration;
//! `app_cookie` groups stick while the application's own cookie is present, and carry the
//! target in `AWSALBAPP`, bound to that cookie's value. Values are
//! `<target>~<expiry unix s>~<HMAC-SHA256>`, the MAC over the group, target, expiry and
//! (app cookie) the application cookie's value, under a key made at process start: a
//! client can read which target it is on but cannot choose one, and a cookie forged,
//! expired, for another group or for another session is ignored (a new target is picked
//! and the cookie re-issued). A restart of the balancer forgets the key, so clients are
//! spread afresh, as after ALB's cookie expiry.

use crate::target::TargetGroup;
use http::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};
use meridian_config::Stickiness;
use ring::hmac;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The balancer's cookie for duration-based stickiness (ALB's name).
pub const LB_COOKIE: &str = "AWSALB";
/// The balancer's cookie for application-based stickiness (ALB's name).
pub const APP_COOKIE: &str = "AWSALBAPP";

fn key() -> &'static hmac::Key {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let bytes: [u8; 32] = rand::random();
        hmac::Key::new(hmac::HMAC_SHA256, &bytes)
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn message(group: &str, target: &str, expiry: u64, bound: &str) -> String {
    format!("{group}\0{target}\0{expiry}\0{bound}")
}

fn mac(group: &str, target: &str, expiry: u64, bound: &str) -> String {
    hmac::sign(key(), message(group, target, expiry, bound).as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A request cookie's value, the first of that name.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The value a response sets for cookie `name`, if it sets one.
fn set_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The cookie name and the value the MAC is bound to, for a request.
fn binding<'h>(s: &Stickiness, headers: &'h HeaderMap) -> Option<(&'static str, &'h str)> {
    match s {
        Stickiness::LbCookie { .. } => Some((LB_COOKIE, "")),
        Stickiness::AppCookie { cookie_name, .. } => {
            cookie(headers, cookie_name).map(|v| (APP_COOKIE, v))
        }
    }
}

/// The target a request's stickiness cookie names, if it is valid for this group.
pub(crate) fn sticky_target(group: &TargetGroup, headers: &HeaderMap) -> Option<usize> {
    let config = group.config();
    let s = config.stickiness.as_ref()?;
    let (name, bound) = binding(s, headers)?;
    let value = cookie(headers, name)?;
    let mut parts = value.splitn(3, '~');
    let (target, expiry, sig) = (parts.next()?, parts.next()?, parts.next()?);
    let expiry: u64 = expiry.parse().ok()?;
    if expiry < now() {
        return None;
    }
    let tag = unhex(sig)?;
    // ring compares in constant time, so the MAC cannot be guessed byte by byte.
    let msg = message(&group.name, target, expiry, bound);
    hmac::verify(key(), msg.as_bytes(), &tag).ok()?;
    group.index_of(target)
}

/// Adds the stickiness cookie for `target` to a response (ALB refreshes it on each one).
/// For `app_cookie`, only while the application's cookie is there: the one the response
/// sets, else the request's.
pub(crate) fn stick(
    group: &TargetGroup,
    target: &str,
    request: &HeaderMap,
    response: &mut HeaderMap,
) {
    let config = group.config();
    let Some(s) = config.stickiness.as_ref() else {
        return;
    };
    let (name, bound, duration): (&str, String, Duration) = match s {
        Stickiness::LbCookie { duration } => (LB_COOKIE, String::new(), *duration),
        Stickiness::AppCookie {
            cookie_name,
            duration,
        } => match set_cookie(response, cookie_name).or_else(|| binding(s, request).map(|b| b.1)) {
            Some(v) => (APP_COOKIE, v.to_owned(), *duration),
            None => return,
        },
    };
    let expiry = now() + duration.as_secs();
    let value = format!(
        "{name}={target}~{expiry}~{}; Max-Age={}; Path=/",
        mac(&group.name, target, expiry, &bound),
        duration.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.append(SET_COOKIE, v);
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
