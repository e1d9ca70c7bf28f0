//! Manifests as YAML, from JSON values: block style for people, every string quoted (JSON
//! quoting is valid YAML) so no value is read back as a number or a boolean, and texts of
//! several lines (the config) as literal blocks.

use serde_json::Value;

/// `objects` as one YAML stream, a document each.
pub(crate) fn documents(objects: &[Value]) -> String {
    let mut out = String::new();
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        block(o, 0, &mut out);
    }
    out
}

/// `v` as the body of a mapping or sequence at `indent` spaces (a scalar on its own line).
fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                out.push_str(&format!("{pad}{}:", key(k)));
                after_key(v, indent, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for v in a {
                match v {
                    // `- key: value`, the mapping's first key beside the dash.
                    Value::Object(m) if !m.is_empty() => {
                        let mut item = String::new();
                        block(v, indent + 2, &mut item);
                        out.push_str(&format!("{pad}- {}", &item[indent + 2..]));
                    }
                    _ => {
                        out.push_str(&format!("{pad}-"));
                        after_key(v, indent, out);
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other, indent));
            out.push('\n');
        }
    }
}

/// What follows `key:` or `-`: a nested block on the next lines, or a scalar.
fn after_key(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(v, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(v, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent + 2));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::String(s) if literal_ok(s) => {
            let pad = " ".repeat(indent);
            let chomp = if s.ends_with("\n\n") { "+" } else { "" };
            let mut t = format!("|{chomp}");
            for line in s.trim_end_matches('\n').split('\n') {
                t.push('\n');
                if !line.is_empty() {
                    t.push_str(&pad);
                    t.push_str(line);
                }
            }
            for _ in 1..s.len() - s.trim_end_matches('\n').len() {
                t.push('\n');
            }
            t
        }
        Value::String(s) => quote(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        other => other.to_string(),
    }
}

/// Whether `s` reads back exactly from a literal block: several lines ending in a line
/// break, none starting with a space (the block's indentation is taken from the first),
/// and nothing YAML would not keep as it is.
fn literal_ok(s: &str) -> bool {
    s.ends_with('\n')
        && s.trim_end_matches('\n').contains('\n')
        && !s.starts_with(' ')
        && !s.contains('\r')
        && !s.contains('\t')
        && s.chars().all(|c| !c.is_control() || c == '\n')
}

/// A mapping key: plain when it cannot be read as anything but that string.
fn key(k: &str) -> String {
    let plain = k.starts_with(|c: char| c.is_ascii_alphabetic())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        k.to_owned()
    } else {
        quote(k)
    }
}

/// `s` as a double-quoted scalar (JSON's escapes are YAML's).
fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_values_and_texts_are_written_as_blocks() {
        let v = json!({
            "a": {"b": [1, "two", {"c": true}], "e": {}},
            "text": "x = 1\n\n[y]\nz = \"q\"\n",
        });
        let y = documents(&[v, json!({"n": null})]);
        assert_eq!(
            y,
            "a:\n  b:\n    - 1\n    - \"two\"\n    - c: true\n  e: {}\ntext: |\n  x = 1\n\n  [y]\n  z = \"q\"\n---\n\"n\": null\n"
        );
    }
}
