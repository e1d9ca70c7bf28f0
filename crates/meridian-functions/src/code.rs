//! Function source accepted for deployment: size-checked, module syntax lowered, and proven
//! to parse and initialise once, so every engine built from it afterwards is expected to work.

use crate::limits::Kind;
use std::sync::Arc;

#[derive(Debug)]
struct Inner {
    name: String,
    kind: Kind,
    source: String,
}

/// A validated function. Cheap to clone (`Arc`), `Send + Sync`: build it once per deployment
/// and hand clones to every worker's engines.
#[derive(Debug, Clone)]
pub struct FunctionCode(Arc<Inner>);

impl FunctionCode {
    /// Wrap `source`, module syntax lowered, without validating it: the constructor behind
    /// [`FunctionCode::compile`], which adds the checks.
    pub(crate) fn lowered(name: &str, source: &str, kind: Kind) -> FunctionCode {
        FunctionCode(Arc::new(Inner {
            name: name.to_string(),
            kind,
            source: lower_modules(source),
        }))
    }

    /// Name given at compile time.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Stage the function runs at.
    pub fn kind(&self) -> Kind {
        self.0.kind
    }

    /// Source as evaluated (after module lowering).
    pub(crate) fn source(&self) -> &str {
        &self.0.source
    }
}

/// Rewrite ES module syntax the runtime supports into script form, line for line so error
/// positions stay right: `import x from 'm'` → `const x = require('m')`, `import {a} from 'm'`,
/// `import * as x from 'm'`, and `export const handler` / `export [async] function handler`.
/// Functions stay plain scripts, which keeps `handler` a global the engine can call.
fn lower_modules(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 64);
    for (i, line) in source.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&lower_line(line).unwrap_or_else(|| line.to_string()));
    }
    out
}

fn lower_line(line: &str) -> Option<String> {
    let indent = &line[..line.len() - line.trim_start().len()];
    let t = line.trim_start();
    if let Some(rest) = t.strip_prefix("import ") {
        let (binding, module_part) = rest.split_once(" from ")?;
        let module_part = module_part.trim().trim_end_matches(';').trim();
        let binding = binding.trim();
        let binding = match binding.strip_prefix("* as ") {
            Some(b) => b.trim().to_string(),
            None if binding.starts_with('{') => binding.replace(" as ", ": "),
            None => binding.to_string(),
        };
        return Some(format!("{indent}const {binding} = require({module_part});"));
    }
    if let Some(rest) = t.strip_prefix("export ") {
        let rest = rest.trim_start();
        for decl in ["const handler", "let handler", "var handler"] {
            if let Some(r) = rest.strip_prefix(decl) {
                return Some(format!("{indent}exports.handler{r}"));
            }
        }
        for (decl, asy) in [
            ("async function handler", "async "),
            ("function handler", ""),
        ] {
            if let Some(r) = rest.strip_prefix(decl) {
                return Some(format!(
                    "{indent}exports.handler = {asy}function handler{r}"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_imports_and_exports() {
        let src = "import cf from 'cloudfront';\n  import { createHash as h } from \"crypto\"\nimport * as qs from 'querystring';\nexport const handler = async (e) => e;\nvar x = 'import a from b';";
        let out = lower_modules(src);
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines[0], "const cf = require('cloudfront');");
        assert_eq!(lines[1], "  const { createHash: h } = require(\"crypto\");");
        assert_eq!(lines[2], "const qs = require('querystring');");
        assert_eq!(lines[3], "exports.handler = async (e) => e;");
        assert_eq!(lines[4], "var x = 'import a from b';");
    }
}
