mod common;

use common::{request_event, response_event};
use meridian_functions::event::Field;
use meridian_functions::lambda::{LambdaConfig, LambdaRequest};
use meridian_functions::*;
use std::time::{Duration, Instant};

fn engine(src: &str, kind: Kind) -> Engine {
    let code = FunctionCode::compile("t", src, kind).expect("compile");
    let limits = Limits::for_kind(kind).with_cpu_budget(Duration::from_millis(100));
    Engine::new(&code, EngineOptions::for_kind(kind).with_limits(limits)).expect("engine")
}

fn request_of(i: Invocation<Outcome>) -> Request {
    match i.output {
        Outcome::Request(r) => r,
        Outcome::Response(r) => panic!("expected request, got response {r:?}"),
    }
}

#[test]
fn syntax_error_has_line_and_column() {
    // QuickJS reports a place in the offending statement for redefinitions...
    let src = "function handler(event) {\n  let a = 1;\n  let a = 2;\n  return event.request;\n}\n";
    match FunctionCode::compile("bad", src, Kind::ViewerRequest) {
        Err(CompileError::Syntax {
            line,
            column,
            message,
            ..
        }) => {
            assert_eq!(line, 3, "message: {message}");
            assert!((3..=12).contains(&column), "column {column}: {message}");
        }
        other => panic!("expected syntax error, got {other:?}"),
    }
    // ...and the bad token's own place otherwise.
    let src = "// comment\nfunction handler(event) {\n\n    return event.request + @;\n}\n";
    match FunctionCode::compile("bad", src, Kind::ViewerRequest) {
        Err(e @ CompileError::Syntax { line, column, .. }) => {
            assert_eq!(line, 4, "{e}");
            assert_eq!(column, 28, "{e}");
            assert!(e.to_string().contains("line 4"), "{e}");
        }
        other => panic!("expected syntax error, got {other:?}"),
    }
    // Code that ends too soon says so, not that an empty token was unexpected.
    let src = "function handler(event) {\n  return event.request\n";
    match FunctionCode::compile("bad", src, Kind::ViewerRequest) {
        Err(CompileError::Syntax { message, .. }) => {
            assert!(message.contains("the code ends here"), "{message}");
            assert!(!message.contains("''"), "{message}");
        }
        other => panic!("expected syntax error, got {other:?}"),
    }
}

#[test]
fn missing_handler_and_size_limit() {
    assert!(matches!(
        FunctionCode::compile("x", "var y = 1;", Kind::ViewerRequest),
        Err(CompileError::Init { .. })
    ));
    assert!(matches!(
        FunctionCode::compile("x", "exports.other = 1;", Kind::OriginRequest),
        Err(CompileError::Init { .. })
    ));
    let big = format!(
        "function handler(e) {{ return e.request; }}\n//{}",
        "x".repeat(10 * 1024)
    );
    let err = FunctionCode::compile("big", &big, Kind::ViewerRequest).expect_err("too large");
    assert!(
        matches!(err, CompileError::TooLarge { limit: 10240, .. }),
        "{err}"
    );
    assert!(FunctionCode::compile("big", &big, Kind::OriginRequest)
        .is_err_and(|e| !matches!(e, CompileError::TooLarge { .. })));
}

#[test]
fn rewrites_request_and_logs() {
    let mut e = engine(
        "function handler(event) {\n var r = event.request;\n r.headers['x-hello'] = {value: 'world'};\n r.uri = r.uri + 'index.html';\n console.log('uri', r.uri, {a: 1});\n return r;\n}",
        Kind::ViewerRequest,
    );
    let inv = e.viewer_request(&request_event("/docs/")).expect("run");
    assert_eq!(inv.logs, vec!["uri /docs/index.html {\"a\":1}".to_string()]);
    assert!(inv.compute_utilization <= 100);
    let r = request_of(inv);
    assert_eq!(r.uri, "/docs/index.html");
    assert_eq!(r.headers.get("x-hello"), Some(&Field::new("world")));
    assert_eq!(r.headers.get("host"), Some(&Field::new("www.example.com")));
}

#[test]
fn throw_is_execution_error_and_engine_recovers() {
    let mut e = engine(
        "function handler(event) { if (event.request.uri === '/boom') throw new TypeError('kaboom'); return event.request; }",
        Kind::ViewerRequest,
    );
    let err = e
        .viewer_request(&request_event("/boom"))
        .expect_err("throws");
    assert_eq!(err.kind, ErrorKind::Exception);
    assert_eq!(err.message, "TypeError: kaboom");
    assert_eq!(
        request_of(e.viewer_request(&request_event("/ok")).expect("recovers")).uri,
        "/ok"
    );
}

#[test]
fn endless_loop_is_interrupted_and_engine_recovers() {
    let code = FunctionCode::compile(
        "loop",
        "function handler(event) { if (event.request.uri === '/spin') { while (true) {} } return event.request; }",
        Kind::ViewerRequest,
    )
    .expect("compile");
    // Default viewer limits: 1 ms of CPU.
    let mut e = Engine::new(&code, EngineOptions::for_kind(Kind::ViewerRequest)).expect("engine");
    let t = Instant::now();
    let err = e
        .viewer_request(&request_event("/spin"))
        .expect_err("interrupted");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert_eq!(err.compute_utilization, 100);
    // The next invocation gets a rebuilt, working engine; give it room for a debug build.
    let mut ok = None;
    for _ in 0..20 {
        if let Ok(inv) = e.viewer_request(&request_event("/fine")) {
            ok = Some(inv);
            break;
        }
    }
    assert_eq!(request_of(ok.expect("recovered")).uri, "/fine");
}

#[test]
fn memory_overrun_is_error_and_engine_recovers() {
    let mut e = engine(
        "var keep = [];\nfunction handler(event) {\n if (event.request.uri === '/grow') { while (true) { keep.push('x'.repeat(1000) + keep.length); } }\n return event.request;\n}",
        Kind::ViewerRequest,
    );
    let before = e.rebuilds();
    let err = e.viewer_request(&request_event("/grow")).expect_err("oom");
    assert_eq!(err.kind, ErrorKind::Memory, "{err}");
    let r = request_of(
        e.viewer_request(&request_event("/after"))
            .expect("recovers"),
    );
    assert_eq!(r.uri, "/after");
    assert_eq!(e.rebuilds(), before + 1);
    assert!(e.memory_used() < 4 * 1024 * 1024);
}

#[test]
fn generated_response_is_outcome_response() {
    let mut e = engine(
        "function handler(event) { return { statusCode: 302, statusDescription: 'Found', headers: { location: { value: 'https://example.com/' } }, body: 'moved' }; }",
        Kind::ViewerRequest,
    );
    match e.viewer_request(&request_event("/")).expect("run").output {
        Outcome::Response(r) => {
            assert_eq!(r.status_code, 302);
            assert_eq!(r.headers["location"].value, "https://example.com/");
            assert_eq!(r.body.map(|b| b.data).as_deref(), Some("moved"));
        }
        other => panic!("expected response, got {other:?}"),
    }
}

#[test]
fn async_handler_and_kvs_updates_are_seen() {
    let kvs =
        KeyValueStore::from_import_json("flags", r#"{"data":[{"key":"color","value":"blue"}]}"#)
            .expect("kvs");
    let code = FunctionCode::compile(
        "kvs",
        "import cf from 'cloudfront';\nconst store = cf.kvs();\nasync function handler(event) {\n  const c = await store.get('color');\n  const has = await store.exists('nope');\n  const n = await store.get('n', {format: 'json'}).catch(() => null);\n  event.request.headers['x-color'] = {value: c + ':' + has + ':' + JSON.stringify(n)};\n  return event.request;\n}",
        Kind::ViewerRequest,
    )
    .expect("compile");
    let limits = Limits::for_kind(Kind::ViewerRequest).with_cpu_budget(Duration::from_millis(100));
    let mut e = Engine::new(
        &code,
        EngineOptions::for_kind(Kind::ViewerRequest)
            .with_kvs(kvs.clone())
            .with_limits(limits),
    )
    .expect("engine");
    let first = request_of(e.viewer_request(&request_event("/")).expect("run"));
    assert_eq!(first.headers["x-color"].value, "blue:false:null");
    kvs.put("color", "red").expect("put");
    kvs.put("n", "{\"a\":[1,2]}").expect("put");
    let second = request_of(e.viewer_request(&request_event("/")).expect("run"));
    assert_eq!(second.headers["x-color"].value, "red:false:{\"a\":[1,2]}");
}

#[test]
fn viewer_response_and_origin_change() {
    let mut e = engine(
        "function handler(event) { var r = event.response; r.headers['x-frame-options'] = {value: 'DENY'}; r.cookies['sid'] = {value: 'a', attributes: 'Secure'}; return r; }",
        Kind::ViewerResponse,
    );
    let r = e.viewer_response(&response_event("/")).expect("run").output;
    assert_eq!(r.headers["x-frame-options"].value, "DENY");
    assert_eq!(r.cookies["sid"].attributes.as_deref(), Some("Secure"));
    assert!(
        e.viewer_request(&request_event("/")).is_err(),
        "wrong stage is refused"
    );

    let mut e = engine(
        "import cf from 'cloudfront';\nfunction handler(event) { cf.updateRequestOrigin({domainName: 'eu.example.com', originPath: '/v2'}); return event.request; }",
        Kind::ViewerRequest,
    );
    let inv = e.viewer_request(&request_event("/")).expect("run");
    assert_eq!(
        inv.origin_change,
        Some(OriginChange::Update(
            serde_json::json!({"domainName": "eu.example.com", "originPath": "/v2"})
        ))
    );
    let inv = e.viewer_request(&request_event("/")).expect("run again");
    assert!(inv.origin_change.is_some(), "recorded per invocation");
}

#[test]
fn lambda_origin_request_and_response() {
    let mut e = engine(
        "exports.handler = async (event) => {\n const req = event.Records[0].cf.request;\n if (req.uri === '/gen') return { status: 200, statusDescription: 'OK', headers: {'content-type': [{key: 'Content-Type', value: 'text/plain'}]}, body: 'hi' };\n req.headers['x-origin'] = [{key: 'X-Origin', value: event.Records[0].cf.config.eventType}];\n return req;\n};",
        Kind::OriginRequest,
    );
    let cfg = LambdaConfig {
        event_type: "origin-request".into(),
        ..LambdaConfig::default()
    };
    let req = LambdaRequest {
        method: "GET".into(),
        uri: "/a".into(),
        client_ip: "203.0.113.1".into(),
        ..LambdaRequest::default()
    };
    let ev = LambdaEvent::new(cfg.clone(), req.clone(), None);
    match e.origin(&ev).expect("run").output {
        OriginOutcome::Request(r) => assert_eq!(r.headers["x-origin"][0].value, "origin-request"),
        other => panic!("{other:?}"),
    }
    let ev = LambdaEvent::new(
        cfg,
        LambdaRequest {
            uri: "/gen".into(),
            ..req
        },
        None,
    );
    match e.origin(&ev).expect("run").output {
        OriginOutcome::Response(r) => {
            assert_eq!(r.status, "200");
            assert_eq!(r.body.as_deref(), Some("hi"));
        }
        other => panic!("{other:?}"),
    }
    // Callback style.
    let mut e = engine(
        "exports.handler = function (event, context, callback) { callback(null, event.Records[0].cf.request); };",
        Kind::OriginRequest,
    );
    let ev = LambdaEvent::new(
        LambdaConfig::default(),
        LambdaRequest {
            method: "GET".into(),
            uri: "/cb".into(),
            ..LambdaRequest::default()
        },
        None,
    );
    assert!(
        matches!(e.origin(&ev).expect("run").output, OriginOutcome::Request(r) if r.uri == "/cb")
    );
}

#[test]
fn engine_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Engine>();
    assert_send::<FunctionCode>();
}

#[test]
fn never_settling_promise_and_oversized_body_are_errors() {
    let mut e = engine(
        "function handler(event) {\n if (event.request.uri === '/hang') return new Promise(() => {});\n if (event.request.uri === '/big') return { statusCode: 200, body: 'x'.repeat(41 * 1024) };\n if (event.request.uri === '/num') return 42;\n return event.request;\n}",
        Kind::ViewerRequest,
    );
    let err = e
        .viewer_request(&request_event("/hang"))
        .expect_err("hangs");
    assert_eq!(err.kind, ErrorKind::Exception);
    assert!(err.message.contains("never settled"), "{err}");
    let err = e
        .viewer_request(&request_event("/big"))
        .expect_err("too big");
    assert_eq!(err.kind, ErrorKind::InvalidOutput);
    assert!(err.message.contains("40960"), "{err}");
    assert_eq!(
        e.viewer_request(&request_event("/num"))
            .expect_err("not an object")
            .kind,
        ErrorKind::InvalidOutput
    );
    assert_eq!(
        request_of(e.viewer_request(&request_event("/ok")).expect("fine")).uri,
        "/ok"
    );
}

#[test]
fn async_endless_loop_after_await_is_interrupted() {
    let code = FunctionCode::compile(
        "aloop",
        "async function handler(event) { await Promise.resolve(1); for (;;) {} }",
        Kind::ViewerRequest,
    )
    .expect("compile");
    let mut e = Engine::new(&code, EngineOptions::for_kind(Kind::ViewerRequest)).expect("engine");
    let t = Instant::now();
    assert_eq!(
        e.viewer_request(&request_event("/"))
            .expect_err("interrupted")
            .kind,
        ErrorKind::Timeout
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn origin_helpers_refused_outside_viewer_request() {
    let mut e = engine(
        "const cf = require('cloudfront');\nfunction handler(event) { cf.selectRequestOriginById('x'); return event.response; }",
        Kind::ViewerResponse,
    );
    let err = e
        .viewer_response(&response_event("/"))
        .expect_err("refused");
    assert!(err.message.contains("viewer-request"), "{err}");
}

#[test]
fn memory_limit_patterns_and_configurable_limit() {
    let patterns = [
        "return 'x'.repeat(3 * 1024 * 1024);",
        "return new Array(1000000).fill(0).map((x, i) => ({i}));",
        "var o = {}; for (var i = 0; ; i++) o['k' + i] = i;",
        "var s = 'a'; for (;;) s = s + s + 'b';",
        "var a = []; for (;;) a.push(new Uint8Array(65536));",
        "try { var a = []; for (;;) a.push('y'.repeat(4096) + a.length); } catch (e) { var b = []; for (;;) b.push({e}); }",
    ];
    for p in patterns {
        let src = format!("function handler(event) {{ if (event.request.uri === '/grow') {{ {p} }} return event.request; }}");
        let mut e = engine(&src, Kind::ViewerRequest);
        let err = e.viewer_request(&request_event("/grow")).expect_err(p);
        assert_eq!(err.kind, ErrorKind::Memory, "{p}: {err}");
        assert_eq!(
            request_of(e.viewer_request(&request_event("/ok")).expect(p)).uri,
            "/ok",
            "{p}"
        );
    }
    // 3 MB of string fits when the function is given 8 MB.
    let src = "function handler(event) { var s = 'x'.repeat(3 * 1024 * 1024); event.request.headers['x-len'] = {value: String(s.length)}; return event.request; }";
    let code = FunctionCode::compile("m", src, Kind::ViewerRequest).expect("compile");
    let limits = Limits::for_kind(Kind::ViewerRequest)
        .with_cpu_budget(Duration::from_millis(500))
        .with_memory(8 * 1024 * 1024);
    let mut e = Engine::new(
        &code,
        EngineOptions::for_kind(Kind::ViewerRequest).with_limits(limits),
    )
    .expect("engine");
    assert_eq!(
        request_of(e.viewer_request(&request_event("/")).expect("fits")).headers["x-len"].value,
        "3145728"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_from_tokio_tasks() {
    let code = FunctionCode::compile(
        "tk",
        "function handler(e) { e.request.uri = '/t' + e.request.uri; return e.request; }",
        Kind::ViewerRequest,
    )
    .expect("compile");
    let opts = EngineOptions::for_kind(Kind::ViewerRequest).with_limits(
        Limits::for_kind(Kind::ViewerRequest).with_cpu_budget(Duration::from_millis(100)),
    );
    let pool = std::sync::Arc::new(EnginePool::new(code, opts, 8).expect("pool"));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            tokio::task::yield_now().await;
            // Borrow, invoke synchronously, return: never hold an engine across an await.
            let mut e = pool.get().expect("engine");
            request_of(
                e.viewer_request(&request_event(&format!("/{i}")))
                    .expect("run"),
            )
            .uri
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.expect("task"), format!("/t/{i}"));
    }
    assert!(pool.idle() >= 1);
}

/// Only QuickJS's own overruns count as memory errors (they rebuild the engine); a function
/// throwing an error that merely says so is an ordinary exception.
#[test]
fn a_thrown_message_is_not_a_memory_overrun() {
    for thrown in [
        "new Error('value string too long')",
        "new InternalError('string too long, says the function')",
    ] {
        let src = format!("function handler(event) {{ throw {thrown}; }}");
        let mut e = engine(&src, Kind::ViewerRequest);
        let err = e.viewer_request(&request_event("/")).expect_err(thrown);
        assert_eq!(err.kind, ErrorKind::Exception, "{thrown}: {err}");
        assert_eq!(e.rebuilds(), 0, "{thrown}: the engine is kept");
    }
}
