//! `meridian dns explain`: asking a DNS node why it answers what it does, and printing
//! its reasoning.

/// `dns explain` for people.
pub(crate) fn render_explain(v: &serde_json::Value) -> String {
    let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_owned();
    let mut out = format!(
        "{} {} asked by {}",
        s(&v["name"]),
        s(&v["type"]),
        v["client"]["ip"].as_str().unwrap_or("?")
    );
    match v["client"]["location"]["name"].as_str() {
        Some(l) => out.push_str(&format!(
            " (client location {l}, from {})\n",
            s(&v["client"]["via"])
        )),
        None => out.push_str(" (no known client location)\n"),
    }
    out.push_str(&format!("rcode {}\n", s(&v["rcode"])));
    if let Some(why) = v["why"].as_str() {
        out.push_str(&format!("why: {why}\n"));
    }
    for d in v["decisions"].as_array().into_iter().flatten() {
        let dec = &d["decision"];
        out.push_str(&format!(
            "\n{} {}: policy {}\n",
            s(&d["name"]),
            s(&d["type"]),
            s(&dec["policy"])
        ));
        for c in dec["candidates"].as_array().into_iter().flatten() {
            let chosen = dec["chosen"]
                .as_array()
                .is_some_and(|a| a.contains(&c["id"]));
            let metric = c["metric"]
                .as_f64()
                .map(|m| format!("{m:>8.1}"))
                .unwrap_or_else(|| "       -".into());
            out.push_str(&format!(
                "  {} {:<18} {:<9} {metric}  {}\n",
                if chosen { "->" } else { "  " },
                s(&c["id"]),
                if c["healthy"].as_bool() == Some(true) {
                    "healthy"
                } else {
                    "UNHEALTHY"
                },
                c["values"]
                    .as_array()
                    .map(|a| a.iter().map(&s).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default()
            ));
        }
        out.push_str(&format!("  rule: {}\n", s(&dec["rule"])));
    }
    out.push_str("\nanswer:\n");
    for a in v["answers"].as_array().into_iter().flatten() {
        out.push_str(&format!("  {}\n", s(a)));
    }
    if v["answers"].as_array().is_none_or(|a| a.is_empty()) {
        out.push_str("  (none)\n");
    }
    out
}
