//! How the CLI words an error: a module of its own so `main` and the subcommands share it.

/// An error and its causes on one line, each cause once: many of our errors already name
/// their cause in their own message, and repeating it would only add noise.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that names its cause in its message and also returns it as its source.
    #[derive(Debug)]
    struct Bind(std::io::Error);
    impl std::fmt::Display for Bind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot listen on 127.0.0.1:53: {}", self.0)
        }
    }
    impl std::error::Error for Bind {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let said = io.to_string();
        let e = anyhow::Error::new(Bind(io)).context("dns-1 stopped");
        assert_eq!(
            describe(&e),
            format!("dns-1 stopped: cannot listen on 127.0.0.1:53: {said}")
        );
        let plain = anyhow::anyhow!("outer").context("top");
        assert_eq!(describe(&plain), "top: outer");
    }
}
