mod common;

use meridian_functions::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Run `body` (a function body returning a JSON-able value) inside a viewer-request handler.
fn eval(prelude: &str, body: &str) -> Value {
    let src = format!(
        "{prelude}\nfunction handler(event) {{\n  var out = (function () {{ {body} }})();\n  return {{ statusCode: 200, body: JSON.stringify(out) }};\n}}"
    );
    let code = FunctionCode::compile("b", &src, Kind::ViewerRequest).expect("compile");
    let limits = Limits::for_kind(Kind::ViewerRequest).with_cpu_budget(Duration::from_millis(200));
    let mut e = Engine::new(
        &code,
        EngineOptions::for_kind(Kind::ViewerRequest).with_limits(limits),
    )
    .expect("engine");
    match e
        .viewer_request(&common::request_event("/"))
        .expect("run")
        .output
    {
        Outcome::Response(r) => serde_json::from_str(&r.body.expect("body").data).expect("json"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hash_test_vectors() {
    let v = eval(
        "const crypto = require('crypto');",
        "return [
          crypto.createHash('md5').update('').digest('hex'),
          crypto.createHash('sha1').update('abc').digest('hex'),
          crypto.createHash('sha256').update('a').update('bc').digest('hex'),
          crypto.createHash('sha256').update('abc').digest('base64'),
          crypto.createHash('sha256').update('abc').digest('base64url'),
          crypto.createHash('md5').update('The quick brown fox jumps over the lazy dog').digest().length,
        ];",
    );
    assert_eq!(
        v,
        json!([
            "d41d8cd98f00b204e9800998ecf8427e",
            "a9993e364706816aba3e25717850c26c9cd0d89d",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
            16
        ])
    );
}

#[test]
fn hmac_test_vectors() {
    // RFC 2104 / RFC 2202 / RFC 4231: key "Jefe", data "what do ya want for nothing?".
    let v = eval(
        "import crypto from 'crypto';",
        "var d = 'what do ya want for nothing?';
         return [
          crypto.createHmac('md5', 'Jefe').update(d).digest('hex'),
          crypto.createHmac('sha1', 'Jefe').update(d).digest('hex'),
          crypto.createHmac('sha256', Buffer.from('Jefe')).update(d).digest('hex'),
         ];",
    );
    assert_eq!(
        v,
        json!([
            "750c783e6ab0b503eaa86e310a5db738",
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ])
    );
}

#[test]
fn unsupported_digest_throws() {
    let v = eval(
        "const crypto = require('crypto');",
        "try { crypto.createHash('sha3'); return 'no'; } catch (e) { return e.message; }",
    );
    assert_eq!(v, json!("Digest method not supported: sha3"));
}

#[test]
fn buffer_text_and_base64() {
    let v = eval(
        "",
        "return [
          Buffer.from('h\u{e9}llo').toString('hex'),
          Buffer.from('68c3a96c6c6f', 'hex').toString(),
          Buffer.from('aGVsbG8', 'base64').toString('utf8'),
          Buffer.from('hi?').toString('base64url'),
          Buffer.concat([Buffer.from('ab'), Buffer.from('cd')]).toString(),
          Buffer.from('abc').equals(Buffer.from('abc')),
          Buffer.isBuffer(Buffer.alloc(2)),
          btoa('hello'),
          atob('aGVsbG8='),
          new TextEncoder().encode('\u{e9}').length,
          new TextDecoder().decode(new Uint8Array([0xe2, 0x82, 0xac])),
          Buffer.from('abc').slice(1).toString(),
        ];",
    );
    assert_eq!(
        v,
        json!([
            "68c3a96c6c6f",
            "h\u{e9}llo",
            "hello",
            "aGk_",
            "abcd",
            true,
            true,
            "aGVsbG8=",
            "hello",
            2,
            "\u{20ac}",
            "bc"
        ])
    );
}

#[test]
fn querystring_module() {
    let v = eval(
        "import qs from 'querystring';",
        "return [
          qs.parse('a=1&b=2&a=3&c=%20x+y&d'),
          qs.stringify({ a: ['1', '3'], b: 'x y', c: 5 }),
          qs.escape('a b&c'),
          qs.unescape('a%20b%26c'),
        ];",
    );
    assert_eq!(
        v,
        json!([{ "a": ["1", "3"], "b": "2", "c": " x y", "d": "" }, "a=1&a=3&b=x%20y&c=5", "a%20b%26c", "a b&c"])
    );
}

#[test]
fn require_unknown_module_fails_at_compile() {
    let err = FunctionCode::compile(
        "m",
        "const fs = require('fs');\nfunction handler(e) { return e.request; }",
        Kind::ViewerRequest,
    )
    .expect_err("no fs");
    assert!(err.to_string().contains("Cannot find module 'fs'"), "{err}");
}

#[test]
fn kvs_meta_and_bytes() {
    let kvs = KeyValueStore::from_import_json("s", r#"{"data":[{"key":"k","value":"v\u00e9"}]}"#)
        .expect("kvs");
    let code = FunctionCode::compile(
        "m",
        "import cf from 'cloudfront';\nconst h = cf.kvs();\nasync function handler(e) {\n const m = await h.meta();\n const b = await h.get('k', {format: 'bytes'});\n let missing;\n try { await h.get('zz'); } catch (err) { missing = err.message; }\n return { statusCode: 200, body: JSON.stringify([m.keyCount, typeof m.creationDateTime, b.length, missing]) };\n}",
        Kind::ViewerRequest,
    )
    .expect("compile");
    let limits = Limits::for_kind(Kind::ViewerRequest).with_cpu_budget(Duration::from_millis(200));
    let mut e = Engine::new(
        &code,
        EngineOptions::for_kind(Kind::ViewerRequest)
            .with_kvs(kvs)
            .with_limits(limits),
    )
    .expect("engine");
    let Outcome::Response(r) = e
        .viewer_request(&common::request_event("/"))
        .expect("run")
        .output
    else {
        panic!("response")
    };
    let v: Value = serde_json::from_str(&r.body.expect("body").data).expect("json");
    assert_eq!(
        v,
        json!([1, "string", 3, "KeyValueStore: key \"zz\" does not exist"])
    );
}

#[test]
fn test_function_reports_output_logs_and_errors() {
    let code = FunctionCode::compile(
        "t",
        "function handler(event) { console.log('hello', event.request.uri); if (event.request.uri === '/x') throw new Error('bad uri'); return event.request; }",
        Kind::ViewerRequest,
    )
    .expect("compile");
    let opts = EngineOptions::for_kind(Kind::ViewerRequest).with_limits(
        Limits::for_kind(Kind::ViewerRequest).with_cpu_budget(Duration::from_millis(100)),
    );
    let ev = r#"{"version":"1.0","context":{"eventType":"viewer-request"},"viewer":{"ip":"1.2.3.4"},"request":{"method":"GET","uri":"/a","querystring":{},"headers":{},"cookies":{}}}"#;
    let out = test_function(&code, opts.clone(), ev).expect("test");
    assert_eq!(out.logs, vec!["hello /a".to_string()]);
    assert_eq!(out.error, None);
    assert_eq!(
        out.function_output
            .as_ref()
            .and_then(|o| o["request"]["uri"].as_str()),
        Some("/a")
    );
    let out = test_function(&code, opts.clone(), &ev.replace("\"/a\"", "\"/x\"")).expect("test");
    assert_eq!(
        out.error.map(|e| e.message),
        Some("Error: bad uri".to_string())
    );
    assert!(out.function_output.is_none());
    assert!(matches!(
        test_function(&code, opts, "{\"request\": 5}"),
        Err(TestError::Event { .. })
    ));
}

#[test]
fn pool_reuses_engines_across_threads() {
    let code = FunctionCode::compile("p", "var n = 0; function handler(e) { n++; e.request.headers['x-n'] = {value: String(n)}; return e.request; }", Kind::ViewerRequest)
        .expect("compile");
    let opts = EngineOptions::for_kind(Kind::ViewerRequest).with_limits(
        Limits::for_kind(Kind::ViewerRequest).with_cpu_budget(Duration::from_millis(100)),
    );
    let pool = std::sync::Arc::new(EnginePool::new(code, opts, 4).expect("pool"));
    let p2 = pool.clone();
    std::thread::spawn(move || {
        let mut e = p2.get().expect("engine");
        e.viewer_request(&common::request_event("/")).expect("run");
    })
    .join()
    .expect("thread");
    assert_eq!(pool.idle(), 1, "engine went back to the pool");
    let mut e = pool.get().expect("engine");
    let Outcome::Request(r) = e
        .viewer_request(&common::request_event("/"))
        .expect("run")
        .output
    else {
        panic!()
    };
    assert_eq!(
        r.headers["x-n"].value, "2",
        "same engine, state kept between invocations"
    );
}

/// The engine's own `RegExp.prototype.flags` getter (atoms made once, not per call) must read
/// what the specification's does, in its order, with its conversions and errors.
#[test]
fn regexp_flags_read_as_the_specification_says() {
    let v = eval(
        "",
        "var get = Object.getOwnPropertyDescriptor(RegExp.prototype, 'flags');
         var order = [], o = {};
         ['hasIndices', 'global', 'ignoreCase', 'multiline', 'dotAll', 'unicode', 'unicodeSets', 'sticky']
           .forEach(function (k) {
             Object.defineProperty(o, k, { get: function () { order.push(k); return k === 'global' ? 1 : k === 'sticky' ? 'yes' : 0; } });
           });
         var thrown;
         try { get.get.call(1); } catch (e) { thrown = e instanceof TypeError; }
         var bad = {}; Object.defineProperty(bad, 'global', { get: function () { throw new Error('boom'); } });
         var rethrown;
         try { get.get.call(bad); } catch (e) { rethrown = e.message; }
         return [
           /a/dgimsy.flags, /a/v.flags, /a/.flags, new RegExp('a', 'gu').flags,
           get.get.call(o), order.join(','),
           get.get.name, get.get.length, get.enumerable, get.configurable, typeof get.set,
           thrown, rethrown,
           '/fn/a/fn/'.replace(/^\\/fn\\//, '/static/'), 'a-b-c'.replace(/-/g, '+'), 'a1b22'.split(/\\d+/),
         ];",
    );
    assert_eq!(
        v,
        json!([
            "dgimsy",
            "v",
            "",
            "gu",
            "gy",
            "hasIndices,global,ignoreCase,multiline,dotAll,unicode,unicodeSets,sticky",
            "get flags",
            0,
            false,
            true,
            "undefined",
            true,
            "boom",
            "/static/a/fn/",
            "a+b+c",
            ["a", "b", ""],
        ])
    );
}
