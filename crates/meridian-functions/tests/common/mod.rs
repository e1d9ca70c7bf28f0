#![allow(dead_code)]
use meridian_functions::event::{Context, Field, Request, Response};
use meridian_functions::Event;
use std::collections::BTreeMap;

/// A viewer-request event like CloudFront's documented example.
pub fn request_event(uri: &str) -> Event {
    let mut headers = BTreeMap::new();
    headers.insert("host".to_string(), Field::new("www.example.com"));
    headers.insert("accept".to_string(), Field::new("text/html"));
    let request = Request {
        method: "GET".into(),
        uri: uri.into(),
        headers,
        ..Request::default()
    };
    let ctx = Context {
        distribution_domain_name: "d111111abcdef8.cloudfront.net".into(),
        distribution_id: "EDFDVBD6EXAMPLE".into(),
        request_id: "4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ==".into(),
        ..Context::default()
    };
    Event::viewer_request(ctx, "198.51.100.11", request)
}

pub fn response_event(uri: &str) -> Event {
    let req = request_event(uri);
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_string(), Field::new("text/html"));
    let resp = Response {
        status_code: 200,
        status_description: Some("OK".into()),
        headers,
        ..Response::default()
    };
    Event::viewer_response(req.context, "198.51.100.11", req.request, resp)
}
