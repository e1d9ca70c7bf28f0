//! Events reach handlers and results come back without loss, through the direct conversion.

mod common;

use common::{request_event, response_event};
use meridian_functions::event::{Body, CookieValue, Field, MultiValue, ResponseCookie};
use meridian_functions::*;
use std::time::Duration;

fn engine(src: &str, kind: Kind) -> Engine {
    let code = FunctionCode::compile("t", src, kind).expect("compile");
    let limits = Limits::for_kind(kind).with_cpu_budget(Duration::from_millis(100));
    Engine::new(&code, EngineOptions::for_kind(kind).with_limits(limits)).expect("engine")
}

fn multi(values: &[&str]) -> Option<Vec<MultiValue>> {
    Some(
        values
            .iter()
            .map(|v| MultiValue { value: (*v).into() })
            .collect(),
    )
}

fn rich_request_event() -> Event {
    let mut ev = request_event("/a/b");
    let r = &mut ev.request;
    r.headers.insert(
        "accept".into(),
        Field {
            value: "text/html".into(),
            multi_value: multi(&["text/html", "*/*"]),
        },
    );
    r.querystring.insert(
        "q".into(),
        Field {
            value: "1".into(),
            multi_value: multi(&["1", "2"]),
        },
    );
    r.querystring
        .insert("é".into(), Field::new("\u{1F600} \"x\""));
    r.cookies.insert("id".into(), Field::new("42"));
    ev
}

#[test]
fn viewer_request_round_trips_every_field() {
    let mut e = engine(
        "function handler(event) { return event.request; }",
        Kind::ViewerRequest,
    );
    let ev = rich_request_event();
    match e.viewer_request(&ev).expect("run").output {
        Outcome::Request(r) => assert_eq!(r, ev.request),
        other => panic!("expected request, got {other:?}"),
    }
    // The event object has exactly the documented keys.
    let mut e = engine(
        "function handler(event) { var r = event.request; r.uri = JSON.stringify([Object.keys(event), Object.keys(event.context), Object.keys(r), Object.keys(r.headers.host), event.version, event.viewer.ip, event.context.eventType]); return r; }",
        Kind::ViewerRequest,
    );
    match e.viewer_request(&ev).expect("run").output {
        Outcome::Request(r) => assert_eq!(
            r.uri,
            r#"[["version","context","viewer","request"],["distributionDomainName","distributionId","eventType","requestId"],["method","uri","querystring","headers","cookies"],["value"],"1.0","198.51.100.11","viewer-request"]"#
        ),
        other => panic!("expected request, got {other:?}"),
    }
}

#[test]
fn viewer_response_round_trips_cookies_and_headers() {
    let mut ev = response_event("/");
    let resp = ev.response.as_mut().expect("response");
    resp.headers.insert(
        "x-multi".into(),
        Field {
            value: "a".into(),
            multi_value: multi(&["a", "b"]),
        },
    );
    resp.cookies.insert(
        "s".into(),
        ResponseCookie {
            value: "v".into(),
            attributes: Some("Path=/; Secure".into()),
            multi_value: Some(vec![
                CookieValue {
                    value: "v".into(),
                    attributes: Some("Path=/; Secure".into()),
                },
                CookieValue {
                    value: "w".into(),
                    attributes: None,
                },
            ]),
        },
    );
    resp.cookies.insert(
        "plain".into(),
        ResponseCookie {
            value: "p".into(),
            ..Default::default()
        },
    );
    let mut e = engine(
        "function handler(event) { return event.response; }",
        Kind::ViewerResponse,
    );
    let out = e.viewer_response(&ev).expect("run").output;
    assert_eq!(Some(out), ev.response);
}

#[test]
fn generated_bodies_string_or_object() {
    let mut e = engine(
        "function handler(event) {\n var u = event.request.uri;\n if (u === '/s') return {statusCode: 200, body: 'hi'};\n if (u === '/o') return {statusCode: 200, statusDescription: 'OK', body: {data: 'aGk=', encoding: 'base64'}};\n return {statusCode: 204, body: {data: 'x'}};\n}",
        Kind::ViewerRequest,
    );
    let mut body = |uri: &str| match e.viewer_request(&request_event(uri)).expect("run").output {
        Outcome::Response(r) => r.body,
        other => panic!("expected response, got {other:?}"),
    };
    assert_eq!(
        body("/s"),
        Some(Body {
            data: "hi".into(),
            encoding: "text".into()
        })
    );
    assert_eq!(
        body("/o"),
        Some(Body {
            data: "aGk=".into(),
            encoding: "base64".into()
        })
    );
    assert_eq!(
        body("/d"),
        Some(Body {
            data: "x".into(),
            encoding: "text".into()
        })
    );
}

#[test]
fn malformed_outputs_are_invalid_output() {
    let cases = [
        "{method: 'GET'}",
        "{method: 'GET', uri: 5}",
        "{method: 'GET', uri: '/', headers: {a: {value: 1}}}",
        "{method: 'GET', uri: '/', headers: {a: 'b'}}",
        "{method: 'GET', uri: '/', headers: null}",
        "{method: 'GET', uri: '/', querystring: {q: {value: 'a', multiValue: 'a'}}}",
        "{statusCode: '200'}",
        "{statusCode: 200.5}",
        "{statusCode: 70000}",
        "{statusCode: undefined}",
        "{statusCode: 200, body: 5}",
        "{statusCode: 200, body: {encoding: 'text'}}",
        "{statusCode: 200, cookies: {c: {value: 'v', attributes: false}}}",
        "['GET', '/']",
    ];
    for c in cases {
        let mut e = engine(
            &format!("function handler(event) {{ return {c}; }}"),
            Kind::ViewerRequest,
        );
        let err = e.viewer_request(&request_event("/")).expect_err(c);
        assert_eq!(err.kind, ErrorKind::InvalidOutput, "{c}: {err}");
    }
    let mut e = engine(
        "function handler(event) { return {method: 'GET', get uri() { throw new Error('boom'); }}; }",
        Kind::ViewerRequest,
    );
    let err = e
        .viewer_request(&request_event("/"))
        .expect_err("getter throws");
    assert_eq!(err.kind, ErrorKind::Exception);
    let mut e = engine(
        "function handler(event) { event.response.headers.x = {value: 1}; return event.response; }",
        Kind::ViewerResponse,
    );
    let err = e
        .viewer_response(&response_event("/"))
        .expect_err("bad header");
    assert_eq!(err.kind, ErrorKind::InvalidOutput);
    assert!(err.message.contains("headers.x.value"), "{err}");
}
