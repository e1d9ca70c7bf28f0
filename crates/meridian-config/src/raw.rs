//! A TOML tree that keeps the byte span of every key and value.
//!
//! serde stops at the first error and forgets where values came from; reading the
//! document into this tree first lets validation report every problem at once, each
//! with its file, line and column.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// One TOML value with spans kept on every nested key and value.
#[derive(Debug, Clone)]
pub enum RawValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Spanned<RawValue>>),
    Table(Vec<(Spanned<String>, Spanned<RawValue>)>),
}

impl RawValue {
    /// The word a user would use for this kind of value, for "expected X, found Y".
    pub fn kind(&self) -> &'static str {
        match self {
            RawValue::Str(_) => "a string",
            RawValue::Int(_) => "an integer",
            RawValue::Float(_) => "a float",
            RawValue::Bool(_) => "a boolean",
            RawValue::Datetime => "a datetime",
            RawValue::Array(_) => "an array",
            RawValue::Table(_) => "a table",
        }
    }
}

/// toml's serde bridge encodes datetimes as a one-entry map with this key.
const DATETIME_KEY: &str = "$__toml_private_datetime";

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                i64::try_from(v)
                    .map(RawValue::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
                Ok(RawValue::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Spanned<RawValue>>()? {
                    out.push(v);
                }
                Ok(RawValue::Array(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    if k.get_ref() == DATETIME_KEY {
                        let _: String = map.next_value()?;
                        return Ok(RawValue::Datetime);
                    }
                    let v = map.next_value::<Spanned<RawValue>>()?;
                    out.push((k, v));
                }
                Ok(RawValue::Table(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a document; a syntax error comes back with its byte span when toml knows it.
pub fn parse(src: &str) -> Result<Spanned<RawValue>, (String, Option<Range<usize>>)> {
    toml::from_str::<Spanned<RawValue>>(src).map_err(|e| {
        let msg = if e.message().contains(DATETIME_KEY) {
            "dates and times have no meaning in a Meridian config; quote the value if it is text"
                .to_owned()
        } else {
            e.message().trim().to_owned()
        };
        (msg, e.span())
    })
}
