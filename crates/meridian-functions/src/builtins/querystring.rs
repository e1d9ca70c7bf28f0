//! `querystring` module (Node-compatible `parse`, `stringify`, `escape`, `unescape`). Pure JS:
//! it only shuffles strings, and `encodeURIComponent` is native in QuickJS already.

pub(crate) const JS: &str = include_str!("querystring.js");
