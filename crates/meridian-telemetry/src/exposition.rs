//! Reading the Prometheus text exposition every node serves on `/metrics`, for the tools
//! that read other nodes (the console, the simulator's reports).
//!
//! Only sample lines with labels and a value. Comments, help and type lines are skipped; a
//! malformed line is skipped rather than failing the scrape, so one odd series never
//! blinds a reader to a whole node.

/// One sample line: `name{label="value",...} 12.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of a scrape, in order.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Labels up to the closing brace, with `\"`, `\\` and `\n` escapes in values.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((out, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        out.push((key, value));
        s = &s[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_values_and_skips_the_rest() {
        let text = "# HELP x Things.\n# TYPE x counter\nx_total 3\n\
                    lb_requests_total{target=\"svc-1\",status=\"200\"} 19\n\
                    h_bucket{le=\"+Inf\"} 4\nweird{a=\"q\\\"uote\"} 1.5e3 1700000000\n\
                    broken{a=\"x\" 3\nnovalue\n";
        let s = parse(text);
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].label("target"), Some("svc-1"));
        assert_eq!(s[1].label("status"), Some("200"));
        assert_eq!(s[2].label("le"), Some("+Inf"));
        assert_eq!(s[3].label("a"), Some("q\"uote"));
        assert_eq!(s[3].value, 1500.0);
    }

    #[test]
    fn infinite_values() {
        let s = parse("g +Inf\nh -Inf\n");
        assert_eq!(s[0].value, f64::INFINITY);
        assert_eq!(s[1].value, f64::NEG_INFINITY);
    }
}
