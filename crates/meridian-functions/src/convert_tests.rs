//! Differential tests: the direct conversion must agree with the JSON round trip it replaced.

use super::*;
use crate::event::Context as EvContext;
use rquickjs::{Context, Runtime};

fn with_ctx(f: impl for<'js> FnOnce(Ctx<'js>)) {
    let rt = Runtime::new().expect("runtime");
    let ctx = Context::full(&rt).expect("context");
    ctx.with(f);
}

fn rich_event(response: bool) -> Event {
    let mut headers = BTreeMap::new();
    headers.insert("host".to_string(), Field::new("example.com"));
    headers.insert(
        "accept".to_string(),
        Field {
            value: "text/html".into(),
            multi_value: Some(vec![
                MultiValue {
                    value: "text/html".into(),
                },
                MultiValue {
                    value: "*/*".into(),
                },
            ]),
        },
    );
    let mut qs = BTreeMap::new();
    qs.insert(
        "a".to_string(),
        Field {
            value: "1".into(),
            multi_value: Some(vec![
                MultiValue { value: "1".into() },
                MultiValue { value: "2".into() },
            ]),
        },
    );
    qs.insert("ünï".to_string(), Field::new("crème \u{1F600} \"q\" \\"));
    let mut cookies = BTreeMap::new();
    cookies.insert("id".to_string(), Field::new("42"));
    let request = Request {
        method: "GET".into(),
        uri: "/a/b".into(),
        querystring: qs,
        headers,
        cookies,
    };
    let ctx = EvContext {
        distribution_domain_name: "d.example.net".into(),
        distribution_id: "E1".into(),
        request_id: "r-1".into(),
        ..EvContext::default()
    };
    if !response {
        return Event::viewer_request(ctx, "192.0.2.1", request);
    }
    let mut rc = BTreeMap::new();
    rc.insert(
        "s".to_string(),
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
    rc.insert(
        "plain".to_string(),
        ResponseCookie {
            value: "p".into(),
            ..Default::default()
        },
    );
    let mut rh = BTreeMap::new();
    rh.insert("content-type".to_string(), Field::new("text/html"));
    let resp = Response {
        status_code: 404,
        status_description: Some("Not Found".into()),
        headers: rh,
        cookies: rc,
        body: Some(Body {
            data: "aGk=".into(),
            encoding: "base64".into(),
        }),
    };
    Event::viewer_response(ctx, "2001:db8::1", request, resp)
}

#[test]
fn event_matches_its_json_serialisation_exactly() {
    for ev in [rich_event(false), rich_event(true), Event::default()] {
        with_ctx(|ctx| {
            let v = event_to_js(&ctx, &ev).expect("build");
            let js = ctx.json_stringify(v).expect("stringify").expect("some");
            let js = js.to_string().expect("utf-8");
            assert_eq!(js, serde_json::to_string(&ev).expect("serde"));
        });
    }
}

#[test]
fn reading_back_the_event_round_trips_every_field() {
    let ev = rich_event(true);
    with_ctx(|ctx| {
        let v = event_to_js(&ctx, &ev).expect("build");
        let o = v.as_object().expect("object");
        let req: Object = o.get("request").expect("request");
        assert_eq!(request_from_js(&req).expect("request"), ev.request);
        let resp: Object = o.get("response").expect("response");
        assert_eq!(
            Some(response_from_js(&resp).expect("response")),
            ev.response
        );
    });
}

/// What the JSON path made of `src` (Ok value, or Err for any failure).
fn via_json<T: serde::de::DeserializeOwned>(ctx: &Ctx<'_>, src: &str) -> Option<T> {
    let v: Value = ctx.eval(format!("({src})")).expect("eval");
    let s = ctx.json_stringify(v).ok()??.to_string().ok()?;
    serde_json::from_str(&s).ok()
}

fn direct<T>(ctx: &Ctx<'_>, src: &str, f: impl Fn(&Object<'_>) -> ReadResult<T>) -> Option<T> {
    let v: Value = ctx.eval(format!("({src})")).expect("eval");
    f(v.as_object().expect("object")).ok()
}

const REQUESTS: &[&str] = &[
    "{method: 'GET', uri: '/x'}",
    "{method: 'GET', uri: '/x', extra: 1, headers: {a: {value: 'b', extra: true}}}",
    "{method: 'GET', uri: '/x', headers: {a: {value: 'b'}, gone: undefined, f: function () {}}}",
    "{method: 'GET', uri: '/x', headers: {a: {value: 'b', multiValue: null}}}",
    "{method: 'GET', uri: '/x', headers: {a: {value: 'b', multiValue: undefined}}}",
    "{method: 'GET', uri: '/x', querystring: {q: {value: '1', multiValue: [{value: '1'}, {value: '2'}]}}}",
    "{method: 'GET', uri: '/x', cookies: {c: {value: 'v'}}, headers: undefined}",
    "{method: 'GET', uri: '/x', statusDescription: 5}",
    "{method: 'GET'}",
    "{uri: '/x'}",
    "{method: 'GET', uri: 7}",
    "{method: 'GET', uri: null}",
    "{method: 'GET', uri: undefined}",
    "{method: 'GET', uri: '/x', headers: null}",
    "{method: 'GET', uri: '/x', headers: 'h'}",
    "{method: 'GET', uri: '/x', headers: {a: {value: 1}}}",
    "{method: 'GET', uri: '/x', headers: {a: {value: null}}}",
    "{method: 'GET', uri: '/x', headers: {a: {}}}",
    "{method: 'GET', uri: '/x', headers: {a: 'b'}}",
    "{method: 'GET', uri: '/x', headers: {a: null}}",
    "{method: 'GET', uri: '/x', headers: {a: {value: 'b', multiValue: {value: 'c'}}}}",
    "{method: 'GET', uri: '/x', headers: {a: {value: 'b', multiValue: [undefined]}}}",
    "{method: 'GET', uri: '/x', headers: {a: {value: 'b', multiValue: ['c']}}}",
    "{method: 'GET', uri: '/x', headers: {a: {value: 'b', multiValue: [{value: 3}]}}}",
];

#[test]
fn requests_read_like_the_json_path() {
    with_ctx(|ctx| {
        for src in REQUESTS {
            let a: Option<Request> = via_json(&ctx, src);
            let b = direct(&ctx, src, request_from_js);
            assert_eq!(a, b, "{src}");
        }
    });
}

const RESPONSES: &[&str] = &[
    "{statusCode: 200}",
    "{statusCode: 302, statusDescription: 'Found', headers: {location: {value: '/y'}}}",
    "{statusCode: 200, statusDescription: null, body: null}",
    "{statusCode: 200, body: 'hello'}",
    "{statusCode: 200, body: {data: 'aGk=', encoding: 'base64'}}",
    "{statusCode: 200, body: {data: 'x'}}",
    "{statusCode: 200, body: {data: 'x', encoding: null}}",
    "{statusCode: 200, body: {encoding: 'text'}}",
    "{statusCode: 200, body: 5}",
    "{statusCode: 200, cookies: {s: {value: 'v', attributes: 'Secure', multiValue: [{value: 'v', attributes: 'Secure'}, {value: 'w'}]}}}",
    "{statusCode: 200, cookies: {s: {value: 'v', attributes: 1}}}",
    "{statusCode: 200, cookies: {s: {attributes: 'Secure'}}}",
    "{statusCode: 200.0}",
    "{statusCode: 20 * 10}",
    "{statusCode: Math.floor(200.7)}",
    "{statusCode: -0}",
    "{statusCode: 0}",
    "{statusCode: 65535}",
    "{statusCode: 65536}",
    "{statusCode: -1}",
    "{statusCode: 200.5}",
    "{statusCode: NaN}",
    "{statusCode: Infinity}",
    "{statusCode: '200'}",
    "{statusCode: null}",
    "{statusCode: undefined}",
    "{statusCode: true}",
];

#[test]
fn responses_read_like_the_json_path() {
    with_ctx(|ctx| {
        for src in RESPONSES {
            let a: Option<Response> = via_json(&ctx, src);
            let b = direct(&ctx, src, response_from_js);
            assert_eq!(a, b, "{src}");
        }
    });
}

#[test]
fn errors_say_where() {
    with_ctx(|ctx| {
        let v: Value = ctx
            .eval("({method: 'GET', uri: '/', headers: {host: {value: 5}}})")
            .expect("eval");
        let e = request_from_js(v.as_object().expect("object")).expect_err("bad");
        assert_eq!(
            e.message().as_deref(),
            Some("invalid output: headers.host.value: expected a string, got number")
        );
        let v: Value = ctx.eval("[ 'GET', '/' ]").expect("eval");
        assert!(
            request_from_js(v.as_object().expect("object")).is_err(),
            "arrays are not requests"
        );
    });
}
