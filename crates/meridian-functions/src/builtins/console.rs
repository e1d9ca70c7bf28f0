//! `console`: output is captured into the invocation's logs (CloudFront shows it in the test
//! output and in logs), never written to the edge's stdout.

pub(crate) const JS: &str = include_str!("console.js");
