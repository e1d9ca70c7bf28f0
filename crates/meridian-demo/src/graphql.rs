//! A small GraphQL endpoint with Apollo's automatic persisted queries (APQ).
//!
//! It parses real GraphQL (operations, aliases, arguments, variables, nested selections)
//! over a fixed schema: `quote`, `quotes`, `marketStatus`, `portfolio`, `__typename`,
//! `__schema`. Fragments, directives and mutations are answered with a clear error:
//! the stand-in exists to exercise caching and routing, not to be a GraphQL engine.

use crate::app::{bearer, simulate_work, App};
use crate::apq::sha256_hex;
use crate::market;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// One GraphQL request, from a POST body or GET query string.
#[derive(Default)]
struct GqlRequest {
    query: Option<String>,
    variables: Map<String, Value>,
    extensions: Option<Value>,
}

fn error_body(status: StatusCode, message: &str, code: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "private, no-cache, must-revalidate")],
        Json(json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })),
    )
        .into_response()
}

fn parse_json_object(text: &str, what: &str) -> Result<Map<String, Value>, Box<Response>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        _ => Err(Box::new(error_body(
            StatusCode::BAD_REQUEST,
            &format!("`{what}` must be a JSON object"),
            "BAD_REQUEST",
        ))),
    }
}

pub async fn get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut req = GqlRequest {
        query: params.get("query").cloned(),
        ..Default::default()
    };
    if let Some(v) = params.get("variables") {
        match parse_json_object(v, "variables") {
            Ok(m) => req.variables = m,
            Err(r) => return *r,
        }
    }
    if let Some(e) = params.get("extensions") {
        match parse_json_object(e, "extensions") {
            Ok(m) => req.extensions = Some(Value::Object(m)),
            Err(r) => return *r,
        }
    }
    execute(&app, &headers, req, true).await
}

pub async fn post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(&body) else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object such as {\"query\": \"{ __typename }\"}",
            "BAD_REQUEST",
        );
    };
    let req = GqlRequest {
        query: m
            .remove("query")
            .and_then(|q| q.as_str().map(str::to_owned)),
        variables: match m.remove("variables") {
            Some(Value::Object(v)) => v,
            _ => Map::new(),
        },
        extensions: m.remove("extensions"),
    };
    execute(&app, &headers, req, false).await
}

async fn execute(app: &App, headers: &HeaderMap, req: GqlRequest, is_get: bool) -> Response {
    // Automatic persisted queries, as Apollo implements them.
    let persisted = req
        .extensions
        .as_ref()
        .and_then(|e| e.get("persistedQuery"))
        .cloned();
    let query = match (persisted, req.query) {
        (Some(pq), query) => {
            if pq.get("version").and_then(Value::as_i64) != Some(1) {
                return error_body(
                    StatusCode::BAD_REQUEST,
                    "Unsupported persisted query version",
                    "BAD_REQUEST",
                );
            }
            let Some(hash) = pq
                .get("sha256Hash")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
            else {
                return error_body(
                    StatusCode::BAD_REQUEST,
                    "persistedQuery needs a sha256Hash",
                    "BAD_REQUEST",
                );
            };
            match query {
                Some(q) => {
                    if sha256_hex(&q) != hash {
                        return error_body(
                            StatusCode::BAD_REQUEST,
                            "provided sha does not match query",
                            "BAD_REQUEST",
                        );
                    }
                    app.apq.put(hash, q.clone());
                    q
                }
                None => match app.apq.get(&hash) {
                    Some(q) => q,
                    // Apollo answers 200 so clients retry with the full query; the
                    // no-cache keeps a CDN from storing the miss.
                    None => {
                        return error_body(
                            StatusCode::OK,
                            "PersistedQueryNotFound",
                            "PERSISTED_QUERY_NOT_FOUND",
                        )
                    }
                },
            }
        }
        (None, Some(q)) if !q.trim().is_empty() => q,
        _ => return error_body(
            StatusCode::BAD_REQUEST,
            "GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension.",
            "BAD_REQUEST",
        ),
    };
    let selections = match parse(&query) {
        Ok(s) => s,
        Err(msg) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                &format!("Syntax Error: {msg}"),
                "GRAPHQL_PARSE_FAILED",
            )
        }
    };
    simulate_work(app).await;
    let ctx = Ctx {
        vars: &req.variables,
        authorized: bearer(headers).is_some(),
        token: bearer(headers).unwrap_or(""),
        now: market::now_secs(),
    };
    let mut data = Map::new();
    let mut errors = Vec::new();
    let mut private = false;
    for field in &selections {
        private |= field.name == "portfolio";
        match resolve_root(&ctx, field).and_then(|v| project(v, &field.selections)) {
            Ok(v) => {
                data.insert(field.key().to_owned(), v);
            }
            Err(e) if e.validation => {
                return error_body(
                    StatusCode::BAD_REQUEST,
                    &e.message,
                    "GRAPHQL_VALIDATION_FAILED",
                )
            }
            Err(e) => {
                data.insert(field.key().to_owned(), Value::Null);
                errors.push(json!({ "message": e.message, "path": [field.key()], "extensions": { "code": e.code } }));
            }
        }
    }
    let cache = if !errors.is_empty() {
        "no-store"
    } else if private {
        "private"
    } else if is_get {
        "public, max-age=5"
    } else {
        "no-store"
    };
    let mut body = json!({ "data": data });
    if !errors.is_empty() {
        body["errors"] = Value::Array(errors);
    }
    ([(header::CACHE_CONTROL, cache)], Json(body)).into_response()
}

// ---- parsing ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Num(String),
    Punct(char),
    Spread,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = src.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() || c == ',' || c == '\u{feff}' => {
                it.next();
            }
            '#' => while it.next().is_some_and(|c| c != '\n') {},
            '{' | '}' | '(' | ')' | ':' | '$' | '!' | '[' | ']' | '=' | '@' | '|' | '&' => {
                out.push(Tok::Punct(c));
                it.next();
            }
            '.' => {
                let dots: String = (0..3).filter_map(|_| it.next()).collect();
                if dots != "..." {
                    return Err("unexpected `.`".into());
                }
                out.push(Tok::Spread);
            }
            '"' => {
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(c) => s.push(c),
                            None => return Err("unterminated string".into()),
                        },
                        Some(c) => s.push(c),
                    }
                }
                out.push(Tok::Str(s));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let mut s = String::new();
                while let Some(&c) = it.peek() {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '+' {
                        s.push(c);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Num(s));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some(&c) = it.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        s.push(c);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Name(s));
            }
            other => return Err(format!("unexpected character `{other}`")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Var(String),
    Lit(Value),
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    alias: Option<String>,
    name: String,
    args: Vec<(String, Arg)>,
    selections: Vec<Field>,
}

impl Field {
    fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.next() {
            Some(Tok::Punct(p)) if p == c => Ok(()),
            other => Err(format!(
                "expected `{c}`, found {}",
                describe(other.as_ref())
            )),
        }
    }
    fn name(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Name(n)) => Ok(n),
            other => Err(format!(
                "expected a name, found {}",
                describe(other.as_ref())
            )),
        }
    }
    fn selection_set(&mut self) -> Result<Vec<Field>, String> {
        self.depth += 1;
        if self.depth > 20 {
            return Err("selections nested too deeply".into());
        }
        self.expect('{')?;
        let mut fields = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Punct('}')) => {
                    self.next();
                    break;
                }
                Some(Tok::Spread) => {
                    return Err("fragments are not supported by the demo origin".into())
                }
                Some(Tok::Punct('@')) => {
                    return Err("directives are not supported by the demo origin".into())
                }
                _ => fields.push(self.field()?),
            }
        }
        if fields.is_empty() {
            return Err("a selection set cannot be empty".into());
        }
        self.depth -= 1;
        Ok(fields)
    }
    fn field(&mut self) -> Result<Field, String> {
        let first = self.name()?;
        let (alias, name) = if self.peek() == Some(&Tok::Punct(':')) {
            self.next();
            (Some(first), self.name()?)
        } else {
            (None, first)
        };
        let mut args = Vec::new();
        if self.peek() == Some(&Tok::Punct('(')) {
            self.next();
            while self.peek() != Some(&Tok::Punct(')')) {
                let n = self.name()?;
                self.expect(':')?;
                args.push((n, self.value()?));
            }
            self.next();
        }
        let selections = if self.peek() == Some(&Tok::Punct('{')) {
            self.selection_set()?
        } else {
            Vec::new()
        };
        Ok(Field {
            alias,
            name,
            args,
            selections,
        })
    }
    fn value(&mut self) -> Result<Arg, String> {
        Ok(match self.next() {
            Some(Tok::Punct('$')) => Arg::Var(self.name()?),
            Some(Tok::Str(s)) => Arg::Lit(Value::String(s)),
            Some(Tok::Num(n)) => {
                Arg::Lit(serde_json::from_str(&n).map_err(|_| format!("bad number `{n}`"))?)
            }
            Some(Tok::Name(n)) => Arg::Lit(match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::String(n),
            }),
            Some(Tok::Punct('[')) => {
                let mut items = Vec::new();
                while self.peek() != Some(&Tok::Punct(']')) {
                    match self.value()? {
                        Arg::Lit(v) => items.push(v),
                        Arg::Var(_) => {
                            return Err("variables inside lists are not supported".into())
                        }
                    }
                }
                self.next();
                Arg::Lit(Value::Array(items))
            }
            other => {
                return Err(format!(
                    "expected a value, found {}",
                    describe(other.as_ref())
                ))
            }
        })
    }
    /// Skips `($a: T = v, ...)`: variable types are not checked by the stand-in.
    fn skip_parens(&mut self) -> Result<(), String> {
        let mut depth = 0;
        loop {
            match self.next() {
                Some(Tok::Punct('(')) => depth += 1,
                Some(Tok::Punct(')')) => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                None => return Err("unclosed `(`".into()),
                _ => {}
            }
        }
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end of the document".into(),
        Some(Tok::Name(n)) => format!("`{n}`"),
        Some(Tok::Punct(c)) => format!("`{c}`"),
        Some(Tok::Str(_)) => "a string".into(),
        Some(Tok::Num(n)) => format!("`{n}`"),
        Some(Tok::Spread) => "`...`".into(),
    }
}

/// Parses a document with one query operation into its root selections.
pub(crate) fn parse(src: &str) -> Result<Vec<Field>, String> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        depth: 0,
    };
    match p.peek() {
        Some(Tok::Name(k)) if k == "query" => {
            p.next();
            if let Some(Tok::Name(_)) = p.peek() {
                p.next();
            }
            if p.peek() == Some(&Tok::Punct('(')) {
                p.skip_parens()?;
            }
        }
        Some(Tok::Name(k)) if k == "mutation" || k == "subscription" => {
            return Err(format!("{k}s are not supported by the demo origin"));
        }
        Some(Tok::Name(k)) if k == "fragment" => {
            return Err("fragments are not supported by the demo origin".into());
        }
        _ => {}
    }
    let fields = p.selection_set()?;
    if p.pos < p.toks.len() {
        return Err("only one operation per document is supported".into());
    }
    Ok(fields)
}

// ---- execution ----

struct Ctx<'a> {
    vars: &'a Map<String, Value>,
    authorized: bool,
    token: &'a str,
    now: u64,
}

struct ExecError {
    message: String,
    code: &'static str,
    validation: bool,
}

fn invalid(message: String) -> ExecError {
    ExecError {
        message,
        code: "GRAPHQL_VALIDATION_FAILED",
        validation: true,
    }
}

fn arg(ctx: &Ctx, field: &Field, name: &str) -> Result<Value, ExecError> {
    let a = field.args.iter().find(|(n, _)| n == name).map(|(_, a)| a);
    match a {
        Some(Arg::Lit(v)) => Ok(v.clone()),
        Some(Arg::Var(v)) => ctx.vars.get(v).cloned().ok_or_else(|| {
            invalid(format!(
                "Variable \"${v}\" of required type was not provided."
            ))
        }),
        None => Err(invalid(format!(
            "Field \"{}\" argument \"{name}\" is required.",
            field.name
        ))),
    }
}

fn quote_value(symbol: &str, now: u64) -> Result<Value, ExecError> {
    let q = market::quote(symbol, now).ok_or_else(|| ExecError {
        message: format!("\"{symbol}\" is not a valid symbol"),
        code: "BAD_USER_INPUT",
        validation: false,
    })?;
    Ok(json!({
        "__typename": "Quote", "symbol": q.symbol, "price": q.price, "change": q.change,
        "changePercent": q.change_percent, "volume": q.volume, "currency": q.currency, "asOf": q.as_of,
    }))
}

fn resolve_root(ctx: &Ctx, field: &Field) -> Result<Value, ExecError> {
    match field.name.as_str() {
        "__typename" => Ok(json!("Query")),
        "quote" => {
            let s = arg(ctx, field, "symbol")?;
            quote_value(s.as_str().unwrap_or_default(), ctx.now)
        }
        "quotes" => {
            let list = arg(ctx, field, "symbols")?;
            let items = list.as_array().cloned().unwrap_or_default();
            items
                .iter()
                .take(50)
                .map(|s| quote_value(s.as_str().unwrap_or_default(), ctx.now))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        "marketStatus" => {
            // NYSE hours, 14:30-21:00 UTC on weekdays (ignoring holidays).
            let day = (ctx.now / 86400 + 4) % 7; // 0 = Sunday
            let minute = (ctx.now % 86400) / 60;
            let open = (1..=5).contains(&day) && (870..1260).contains(&minute);
            Ok(
                json!({ "__typename": "MarketStatus", "isOpen": open, "exchange": "NYSE", "asOf": ctx.now }),
            )
        }
        "portfolio" => {
            if !ctx.authorized {
                return Err(ExecError {
                    message: "You must be signed in to see a portfolio.".into(),
                    code: "UNAUTHENTICATED",
                    validation: false,
                });
            }
            let p = market::portfolio(ctx.token, ctx.now);
            let holdings: Vec<Value> = p
                .holdings
                .iter()
                .map(|h| json!({ "__typename": "Holding", "symbol": h.symbol, "shares": h.shares, "price": h.price, "value": h.value }))
                .collect();
            Ok(
                json!({ "__typename": "Portfolio", "account": p.account, "totalValue": p.total_value, "holdings": holdings, "asOf": p.as_of }),
            )
        }
        "__schema" => Ok(schema()),
        other => Err(invalid(format!(
            "Cannot query field \"{other}\" on type \"Query\"."
        ))),
    }
}

fn schema() -> Value {
    let t = |name: &str, fields: &[&str]| {
        json!({ "__typename": "__Type", "kind": "OBJECT", "name": name,
                "fields": fields.iter().map(|f| json!({ "__typename": "__Field", "name": f })).collect::<Vec<_>>() })
    };
    json!({
        "__typename": "__Schema",
        "queryType": { "__typename": "__Type", "name": "Query", "kind": "OBJECT" },
        "mutationType": null,
        "subscriptionType": null,
        "types": [
            t("Query", &["quote", "quotes", "marketStatus", "portfolio"]),
            t("Quote", &["symbol", "price", "change", "changePercent", "volume", "currency", "asOf"]),
            t("MarketStatus", &["isOpen", "exchange", "asOf"]),
            t("Portfolio", &["account", "totalValue", "holdings", "asOf"]),
            t("Holding", &["symbol", "shares", "price", "value"]),
        ],
    })
}

/// Keeps only what was selected, recursively, as GraphQL requires.
fn project(value: Value, selections: &[Field]) -> Result<Value, ExecError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|v| project(v, selections))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(mut obj) => {
            let type_name = obj
                .remove("__typename")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            if selections.is_empty() {
                return Err(invalid(format!(
                    "Field of type \"{type_name}\" must have a selection of subfields."
                )));
            }
            let mut out = Map::new();
            for f in selections {
                let v = if f.name == "__typename" {
                    Value::String(type_name.clone())
                } else {
                    let v = obj.get(&f.name).cloned().ok_or_else(|| {
                        invalid(format!(
                            "Cannot query field \"{}\" on type \"{type_name}\".",
                            f.name
                        ))
                    })?;
                    project(v, &f.selections)?
                };
                out.insert(f.key().to_owned(), v);
            }
            Ok(Value::Object(out))
        }
        scalar if selections.is_empty() => Ok(scalar),
        _ => Err(invalid("Scalar fields cannot have selections.".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apq::BUILTIN_OPERATIONS;

    #[test]
    fn parses_operations_aliases_and_arguments() {
        let f = parse(
            "query Q($s: String!) { a: quote(symbol: $s) { price } marketStatus { isOpen } }",
        )
        .unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].key(), "a");
        assert_eq!(f[0].name, "quote");
        assert!(matches!(&f[0].args[0].1, Arg::Var(v) if v == "s"));
        for q in BUILTIN_OPERATIONS {
            parse(q).unwrap();
        }
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(parse("{ quote(symbol: \"A\") { price }").is_err());
        assert!(parse("{ ...F }").is_err());
        assert!(parse("mutation { x }").is_err());
        assert!(parse("{}").is_err());
        assert!(parse(&"{ a ".repeat(50)).is_err());
    }

    #[test]
    fn projection_keeps_only_selected_fields() {
        let f = parse("{ quote(symbol: \"AAPL\") { price __typename } }").unwrap();
        let ctx = Ctx {
            vars: &Map::new(),
            authorized: false,
            token: "",
            now: 0,
        };
        let v = resolve_root(&ctx, &f[0])
            .and_then(|v| project(v, &f[0].selections))
            .ok()
            .unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2);
        assert_eq!(obj["__typename"], "Quote");
        let f = parse("{ quote(symbol: \"AAPL\") { nope } }").unwrap();
        let e = resolve_root(&ctx, &f[0])
            .and_then(|v| project(v, &f[0].selections))
            .err()
            .unwrap();
        assert!(e.validation && e.message.contains("nope"));
    }
}
