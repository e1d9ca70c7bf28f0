//! `viewer_request_changes` (the edge's hot path, reading a result as changes to the event)
//! must mean exactly what `viewer_request` (the whole request read back) means: the same
//! request once the changes are applied, the same errors, and nothing reported as changed
//! that the function left alone.

mod common;

use meridian_functions::event::{Field, MultiValue};
use meridian_functions::*;
use std::time::Duration;

fn engine(src: &str) -> Engine {
    let code = FunctionCode::compile("changes", src, Kind::ViewerRequest).expect("compile");
    // Debug builds run QuickJS unoptimised: a generous budget.
    let limits = Limits::for_kind(Kind::ViewerRequest).with_cpu_budget(Duration::from_secs(1));
    Engine::new(
        &code,
        EngineOptions::for_kind(Kind::ViewerRequest).with_limits(limits),
    )
    .expect("engine")
}

/// An event with a query string and cookies.
fn rich_event() -> Event {
    let mut ev = common::request_event("/a/b");
    let r = &mut ev.request;
    r.querystring.insert("q".into(), Field::new("1"));
    r.cookies.insert("session".into(), Field::new("abc"));
    ev
}

/// The same with a multi-valued header.
fn multi_event() -> Event {
    let mut ev = rich_event();
    ev.request.headers.insert(
        "x-multi".into(),
        Field {
            value: "one".into(),
            multi_value: Some(vec![
                MultiValue {
                    value: "one".into(),
                },
                MultiValue {
                    value: "two".into(),
                },
            ]),
        },
    );
    ev
}

/// Runs `body` (a handler body with `r` = event.request) both ways and checks they agree;
/// returns the changes.
fn both(body: &str, ev: &Event) -> RequestChanges {
    let src = format!("function handler(event) {{ var r = event.request; {body} }}");
    let mut e = engine(&src);
    let full = e.viewer_request(ev).expect("full read");
    let changes = e.viewer_request_changes(ev).expect("changes");
    let (Outcome::Request(full), Changes::Request(c)) = (full.output, changes.output) else {
        panic!("expected requests for {body}");
    };
    assert_eq!(c.apply_to(&ev.request), full, "for {body}: {c:?}");
    c
}

#[test]
fn an_untouched_request_has_no_changes() {
    assert_eq!(both("return r;", &rich_event()), RequestChanges::default());
    let ev = multi_event();
    // Copies of the maps and fields that keep the very same strings are not changes either.
    let copied = "var h = {}; for (var k in r.headers) h[k] = { value: r.headers[k].value, multiValue: r.headers[k].multiValue };\
         return { method: r.method, uri: r.uri, querystring: Object.assign({}, r.querystring), headers: h, cookies: r.cookies };";
    let c = both(copied, &ev);
    // The multi-valued header is always read whole; nothing else is reported.
    assert_eq!(c.uri, None);
    assert_eq!(c.querystring, None);
    assert_eq!(c.cookies, None);
    assert!(c.headers_removed.is_empty(), "{c:?}");
    let names: Vec<&str> = c.headers_set.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x-multi"]);
}

#[test]
fn only_what_the_function_changed_is_read_back() {
    let ev = rich_event();
    let c = both(
        "r.uri = r.uri.replace(/^\\/a\\//, '/static/'); r.headers['x-edge'] = { value: 'yes' }; return r;",
        &ev,
    );
    assert_eq!(c.uri.as_deref(), Some("/static/b"));
    assert_eq!(
        c.headers_set,
        vec![("x-edge".to_string(), Field::new("yes"))]
    );
    assert!(c.headers_removed.is_empty() && c.querystring.is_none() && c.cookies.is_none());

    let c = both("r.headers.accept.value = 'text/plain'; delete r.headers.host; r.headers['x-multi'] = undefined; return r;", &multi_event());
    assert_eq!(
        c.headers_set,
        vec![("accept".to_string(), Field::new("text/plain"))]
    );
    let mut removed = c.headers_removed.clone();
    removed.sort();
    assert_eq!(removed, ["host", "x-multi"]);

    // A value equal in content but made anew is read (and compares equal once applied).
    let c = both(
        "r.headers.accept = { value: 'text/' + 'html' }; return r;",
        &ev,
    );
    assert_eq!(
        c.headers_set,
        vec![("accept".to_string(), Field::new("text/html"))]
    );

    // Query string and cookies come back whole when any entry changed.
    let c = both(
        "r.querystring.page = { value: '2' }; delete r.cookies.session; return r;",
        &ev,
    );
    let q = c.querystring.expect("query string changed");
    assert_eq!(q.keys().collect::<Vec<_>>(), ["page", "q"]);
    assert_eq!(c.cookies.expect("cookies changed").len(), 0);

    // Headers deleted as a whole, or a field given a multiValue.
    let c = both("delete r.headers; return r;", &multi_event());
    assert_eq!(c.headers_removed.len(), 3);
    let c = both(
        "r.headers.host.multiValue = [{ value: 'a' }, { value: 'b' }]; return r;",
        &ev,
    );
    assert_eq!(c.headers_set.len(), 1);
    assert_eq!(
        c.headers_set[0].1.multi_value.as_ref().map(Vec::len),
        Some(2)
    );
}

#[test]
fn errors_are_the_full_reads_errors() {
    let ev = multi_event();
    for body in [
        "r.headers = null; return r;",
        "r.headers.accept = { value: 7 }; return r;",
        "r.headers['x-new'] = 'bare string'; return r;",
        "delete r.uri; return r;",
        "r.method = 1; return r;",
        "r.querystring.q = { value: null }; return r;",
        "r.cookies = []; return r;",
        "return 'nothing';",
    ] {
        let src = format!("function handler(event) {{ var r = event.request; {body} }}");
        let mut e = engine(&src);
        let full = e.viewer_request(&ev).expect_err("full read refuses");
        let changes = e.viewer_request_changes(&ev).expect_err("changes refuse");
        assert_eq!(
            (full.kind, &full.message),
            (changes.kind, &changes.message),
            "for {body}"
        );
        assert_eq!(full.kind, ErrorKind::InvalidOutput, "for {body}: {full}");
    }
}

#[test]
fn a_generated_response_is_read_whole() {
    let ev = rich_event();
    let mut e = engine(
        "function handler(event) { return { statusCode: 302, headers: { location: { value: '/x' } } }; }",
    );
    let inv = e.viewer_request_changes(&ev).expect("response");
    let Changes::Response(r) = inv.output else {
        panic!("expected a response");
    };
    assert_eq!(r.status_code, 302);
    assert_eq!(r.headers["location"].value, "/x");
}

/// One engine keeps the last request's header names (their atoms and shapes) for the next
/// request: requests whose header sets grow, shrink, get renamed or reorder must still see
/// exactly their own headers, in either read.
#[test]
fn one_engine_sees_each_requests_own_headers() {
    let src = "function handler(event) { var r = event.request; \
               r.headers['x-seen'] = { value: Object.keys(r.headers).join(',') }; return r; }";
    let mut e = engine(src);
    let sets: [&[&str]; 6] = [
        &["accept", "host"],
        &["accept", "host"],
        &["accept", "host", "user-agent"],
        &["host"],
        &["accept-encoding", "host"],
        &[],
    ];
    for names in sets {
        let mut ev = common::request_event("/a");
        ev.request.headers = names
            .iter()
            .map(|n| (n.to_string(), Field::new(format!("v-{n}"))))
            .collect();
        let full = e.viewer_request(&ev).expect("full read");
        let changes = e.viewer_request_changes(&ev).expect("changes");
        let (Outcome::Request(full), Changes::Request(c)) = (full.output, changes.output) else {
            panic!("expected requests");
        };
        assert_eq!(c.apply_to(&ev.request), full, "for {names:?}");
        assert_eq!(
            c.headers_set,
            vec![("x-seen".to_string(), Field::new(names.join(",")))],
            "for {names:?}"
        );
        assert!(c.headers_removed.is_empty(), "for {names:?}: {c:?}");
    }
}

/// An engine reuses the strings of values that repeat from one request to the next (the
/// host, the method, the distribution): each request must still see its own values, and a
/// value that repeats must not read as changed, nor a value that changed as unchanged.
#[test]
fn one_engine_sees_each_requests_own_values() {
    let src = "var last; function handler(event) { var r = event.request; \
               var now = [event.version, event.context.distributionId, event.viewer.ip, r.method, r.uri, r.headers.host.value].join(' '); \
               r.headers['x-seen'] = { value: now }; \
               if (last !== undefined) r.headers['x-before'] = { value: last }; last = now; return r; }";
    let mut e = engine(src);
    let cases = [
        ("GET", "/a", "a.example", "1.2.3.4"),
        ("GET", "/a", "a.example", "1.2.3.4"),
        ("POST", "/b", "a.example", "1.2.3.4"),
        ("GET", "/a", "b.example", "5.6.7.8"),
        ("GET", "/a", "b.example", "5.6.7.8"),
    ];
    let mut before: Option<String> = None;
    for (method, uri, host, ip) in cases {
        let mut ev = common::request_event(uri);
        ev.request.method = method.into();
        ev.viewer.ip = ip.into();
        ev.request.headers.insert("host".into(), Field::new(host));
        let inv = e.viewer_request_changes(&ev).expect("changes");
        let Changes::Request(c) = inv.output else {
            panic!("expected a request");
        };
        let seen = format!(
            "1.0 {} {ip} {method} {uri} {host}",
            ev.context.distribution_id
        );
        let mut want = vec![("x-seen".to_string(), Field::new(seen.clone()))];
        if let Some(b) = before.replace(seen) {
            want.push(("x-before".to_string(), Field::new(b)));
        }
        assert_eq!(c.headers_set, want, "for {method} {uri} {host} {ip}");
        assert!(c.headers_removed.is_empty(), "{c:?}");
        assert_eq!(c.uri, None, "the function left the URI alone");
    }
}

/// The hot path calls the global `handler` as the wrapper of the full path does: looked up
/// on every invocation, so a function that replaces it is followed, and one that is no
/// longer a function fails that request alone.
#[test]
fn the_handler_is_looked_up_on_every_invocation() {
    let src = "var n = 0; function handler(event) { var r = event.request; n++; \
               if (n === 1) { handler = function (e) { var q = e.request; q.uri = '/second'; return q; }; } \
               return r; }";
    let mut e = engine(src);
    let Changes::Request(c) = e
        .viewer_request_changes(&rich_event())
        .expect("first")
        .output
    else {
        panic!("expected a request");
    };
    assert_eq!(c.uri, None);
    let Changes::Request(c) = e
        .viewer_request_changes(&rich_event())
        .expect("second")
        .output
    else {
        panic!("expected a request");
    };
    assert_eq!(c.uri.as_deref(), Some("/second"));

    let mut e = engine("function handler(event) { handler = 5; return event.request; }");
    e.viewer_request_changes(&rich_event()).expect("first");
    let err = e
        .viewer_request_changes(&rich_event())
        .expect_err("not a function");
    assert_eq!(err.kind, ErrorKind::Exception, "{err}");
    assert!(err.message.contains("handler is not a function"), "{err}");
    let full = e
        .viewer_request(&rich_event())
        .expect_err("the full path agrees");
    assert!(full.message.contains("handler is not a function"), "{full}");

    // A top-level `const` or `let` handler is a binding, not a property of the global object.
    let mut e = engine(
        "const handler = (event) => { var r = event.request; r.uri = '/const'; return r; };",
    );
    for _ in 0..2 {
        let Changes::Request(c) = e
            .viewer_request_changes(&rich_event())
            .expect("const")
            .output
        else {
            panic!("expected a request");
        };
        assert_eq!(c.uri.as_deref(), Some("/const"));
    }
    let mut e = engine("let handler = function (event) { handler = function (e) { var q = e.request; q.uri = '/let-2'; return q; }; return event.request; };");
    let Changes::Request(c) = e.viewer_request_changes(&rich_event()).expect("let").output else {
        panic!("expected a request");
    };
    assert_eq!(c.uri, None);
    let Changes::Request(c) = e
        .viewer_request_changes(&rich_event())
        .expect("let, replaced")
        .output
    else {
        panic!("expected a request");
    };
    assert_eq!(c.uri.as_deref(), Some("/let-2"));
}

/// The event is plain data, as `JSON.parse` would make it: a setter a function puts on
/// `Object.prototype` is not called while the next event is built.
#[test]
fn building_the_event_calls_no_inherited_setter() {
    let src = "var calls = 0; \
               Object.defineProperty(Object.prototype, 'uri', { set: function (v) { calls++; }, configurable: true }); \
               function handler(event) { var r = event.request; \
               r.headers['x-calls'] = { value: String(calls) }; return r; }";
    let mut e = engine(src);
    for _ in 0..2 {
        let inv = e.viewer_request_changes(&rich_event()).expect("changes");
        let Changes::Request(c) = inv.output else {
            panic!("expected a request");
        };
        assert_eq!(
            c.headers_set,
            vec![("x-calls".to_string(), Field::new("0"))]
        );
        assert_eq!(c.uri, None);
        // The full path (also viewer-response's) builds the event the same way.
        let full = e.viewer_request(&rich_event()).expect("full read");
        let Outcome::Request(r) = full.output else {
            panic!("expected a request");
        };
        assert_eq!(
            r.headers.get("x-calls").map(|f| f.value.as_str()),
            Some("0")
        );
        assert_eq!(r.uri, rich_event().request.uri);
    }
}
