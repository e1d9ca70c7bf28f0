//! Typed reads from the spanned tree: each getter records a precise error and returns
//! `None` instead of stopping, so one pass finds every problem.

use crate::error::Diagnostics;
use crate::raw::RawValue;
use crate::units::{self, ByteSize};
use std::cell::RefCell;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// A TOML table being read; remembers which keys were used so the rest can be reported.
pub(crate) struct Table<'a> {
    pub path: String,
    pub span: Range<usize>,
    entries: &'a [(Spanned<String>, Spanned<RawValue>)],
    used: RefCell<Vec<&'a str>>,
}

/// A value together with where it is and what it is called.
pub(crate) struct Field<'a> {
    pub key: String,
    pub span: Range<usize>,
    pub value: &'a RawValue,
}

impl<'a> Table<'a> {
    pub fn new(path: String, v: &'a Spanned<RawValue>, d: &mut Diagnostics) -> Option<Self> {
        match v.get_ref() {
            RawValue::Table(entries) => Some(Table {
                path,
                span: v.span(),
                entries,
                used: RefCell::new(Vec::new()),
            }),
            other => {
                d.error(
                    v.span(),
                    &path,
                    format!("`{path}` must be a table, found {}", other.kind()),
                    format!("write it as a table: [{path}]"),
                );
                None
            }
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn get(&self, key: &'a str) -> Option<Field<'a>> {
        self.used.borrow_mut().push(key);
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| Field {
                key: self.key_path(key),
                span: v.span(),
                value: v.get_ref(),
            })
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.get_ref() == key)
    }

    /// Reports a required key that is missing, pointing at the table header.
    pub fn missing(&self, d: &mut Diagnostics, key: &str, fix: &str) {
        d.error(
            self.span.clone(),
            &self.key_path(key),
            format!(
                "`{}` is missing the required key `{key}`",
                self.display_name()
            ),
            fix,
        );
    }

    fn display_name(&self) -> String {
        if self.path.is_empty() {
            "the config".to_owned()
        } else {
            format!("[{}]", self.path)
        }
    }

    /// Reports every key that no getter asked for, with a "did you mean" when one is close.
    pub fn finish(&self, d: &mut Diagnostics) {
        let used = self.used.borrow().clone();
        for (k, _) in self.entries {
            let name = k.get_ref().as_str();
            if used.contains(&name) {
                continue;
            }
            let best = used
                .iter()
                .map(|u| (strsim::damerau_levenshtein(u, name), *u))
                .filter(|(dist, u)| *dist <= 2.max(u.len() / 4))
                .min();
            let fix = match best {
                Some((_, u)) => format!("did you mean `{u}`?"),
                None if used.is_empty() => "remove it".to_owned(),
                None => {
                    let mut known = used.clone();
                    known.sort();
                    known.dedup();
                    format!("remove it; keys allowed here: {}", known.join(", "))
                }
            };
            d.error(
                k.span(),
                &self.key_path(name),
                format!("unknown key `{name}` in {}", self.display_name()),
                fix,
            );
        }
    }

    // Typed getters. Each returns None both when absent and when wrong (after reporting).

    pub fn str(&self, d: &mut Diagnostics, key: &'a str) -> Option<String> {
        let f = self.get(key)?;
        match f.value {
            RawValue::Str(s) => Some(s.clone()),
            other => {
                f.wrong_type(d, "a string", other);
                None
            }
        }
    }

    pub fn req_str(&self, d: &mut Diagnostics, key: &'a str, fix: &str) -> Option<String> {
        if !self.has(key) {
            self.missing(d, key, fix);
        }
        self.str(d, key)
    }

    pub fn bool(&self, d: &mut Diagnostics, key: &'a str) -> Option<bool> {
        let f = self.get(key)?;
        match f.value {
            RawValue::Bool(b) => Some(*b),
            other => {
                f.wrong_type(d, "true or false", other);
                None
            }
        }
    }

    pub fn float(&self, d: &mut Diagnostics, key: &'a str) -> Option<f64> {
        let f = self.get(key)?;
        match f.value {
            RawValue::Float(x) => Some(*x),
            RawValue::Int(i) => Some(*i as f64),
            other => {
                f.wrong_type(d, "a number", other);
                None
            }
        }
    }

    /// An integer within `range`; the error names the range.
    pub fn int(
        &self,
        d: &mut Diagnostics,
        key: &'a str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let f = self.get(key)?;
        match f.value {
            RawValue::Int(i) if range.contains(i) => Some(*i),
            RawValue::Int(i) => {
                d.error(
                    f.span.clone(),
                    &f.key,
                    format!(
                        "`{}` is {i}, outside {}..={}",
                        f.key,
                        range.start(),
                        range.end()
                    ),
                    format!("use a value from {} to {}", range.start(), range.end()),
                );
                None
            }
            other => {
                f.wrong_type(d, "an integer", other);
                None
            }
        }
    }

    pub fn duration(&self, d: &mut Diagnostics, key: &'a str) -> Option<Duration> {
        self.unit(
            d,
            key,
            units::parse_duration,
            |_| None,
            "a duration such as \"500ms\" or \"2s\"",
        )
    }

    pub fn size(&self, d: &mut Diagnostics, key: &'a str) -> Option<ByteSize> {
        let bytes = |v: &RawValue| match v {
            RawValue::Int(i) if *i >= 0 => Some(ByteSize(*i as u64)),
            _ => None,
        };
        self.unit(
            d,
            key,
            units::parse_size,
            bytes,
            "a size such as \"256MiB\"",
        )
    }

    /// A value written as a string with a unit; `other` may accept a non-string form.
    fn unit<T>(
        &self,
        d: &mut Diagnostics,
        key: &'a str,
        parse: fn(&str) -> Result<T, units::UnitError>,
        other: impl Fn(&RawValue) -> Option<T>,
        expected: &str,
    ) -> Option<T> {
        let f = self.get(key)?;
        if let RawValue::Str(s) = f.value {
            return match parse(s) {
                Ok(v) => Some(v),
                Err(e) => {
                    d.error(
                        f.span.clone(),
                        &f.key,
                        format!("`{}`: {}", f.key, e.problem),
                        e.fix,
                    );
                    None
                }
            };
        }
        let v = other(f.value);
        if v.is_none() {
            f.wrong_type(d, expected, f.value);
        }
        v
    }

    pub fn str_list(&self, d: &mut Diagnostics, key: &'a str) -> Option<Vec<Spanned<String>>> {
        let f = self.get(key)?;
        let RawValue::Array(items) = f.value else {
            f.wrong_type(d, "an array of strings", f.value);
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match item.get_ref() {
                RawValue::Str(s) => out.push(Spanned::new(item.span(), s.clone())),
                other => {
                    d.error(
                        item.span(),
                        &f.key,
                        format!("`{}` must hold only strings, found {}", f.key, other.kind()),
                        "quote every element",
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    pub fn table(&self, d: &mut Diagnostics, key: &'a str) -> Option<Table<'a>> {
        let f = self.get(key)?;
        let path = f.key.clone();
        let entries = self
            .entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)?;
        let _ = f;
        Table::new(path, entries, d)
    }

    /// An array of tables (`[[key]]`); a single table is accepted as a list of one.
    pub fn tables(&self, d: &mut Diagnostics, key: &'a str) -> Vec<Table<'a>> {
        let Some(f) = self.get(key) else {
            return Vec::new();
        };
        let raw = self
            .entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v);
        match (f.value, raw) {
            (RawValue::Array(items), _) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Table::new(format!("{}[{i}]", f.key), v, d))
                .collect(),
            (RawValue::Table(_), Some(v)) => Table::new(f.key.clone(), v, d).into_iter().collect(),
            (other, _) => {
                f.wrong_type(d, &format!("a list of tables ([[{key}]])"), other);
                Vec::new()
            }
        }
    }
}

impl Field<'_> {
    pub fn wrong_type(&self, d: &mut Diagnostics, expected: &str, found: &RawValue) {
        d.error(
            self.span.clone(),
            &self.key,
            format!("`{}` must be {expected}, found {}", self.key, found.kind()),
            format!("write `{}` as {expected}", self.key),
        );
    }
}

impl<'a> Table<'a> {
    /// Every key of the table, for tables whose keys are data (custom headers).
    pub fn keys(&self) -> Vec<&'a str> {
        self.entries
            .iter()
            .map(|(k, _)| k.get_ref().as_str())
            .collect()
    }

    /// A string that must be one of `allowed`; the error lists them.
    pub fn choice(
        &self,
        d: &mut Diagnostics,
        key: &'a str,
        allowed: &[&'static str],
    ) -> Option<&'static str> {
        let value = self.str(d, key)?;
        if let Some(found) = allowed.iter().find(|a| **a == value) {
            return Some(found);
        }
        let f = self.get(key)?;
        let close = allowed
            .iter()
            .find(|a| strsim::damerau_levenshtein(a, &value) <= 2)
            .map(|a| format!("did you mean \"{a}\"? "))
            .unwrap_or_default();
        d.error(
            f.span,
            &f.key,
            format!("`{value}` is not a valid `{}`", f.key),
            format!("{close}use one of: {}", allowed.join(", ")),
        );
        None
    }
}
