//! The shape of the code, as the structure issue asks it to stay: no source file over 800
//! lines, and no import circle between the files of a crate (file A naming a path into B
//! while B names one into A, directly or around a longer loop). Module declarations alone
//! are not references; naming an item is (`crate::x::Y`, `super::x`, `self::x`, a child
//! module's path, a `use crate::{..}` group, a `pub use` re-export).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file relative to its crate's `src`: `a/b.rs` and `a/b/mod.rs` are
/// `[a, b]`, `lib.rs` and `main.rs` the root.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Every `a::b::c` path in the code (line comments removed), and the paths inside
/// `use x::{a, b::c}` groups joined to their prefix; each with how many inline modules
/// (`mod tests { .. }`) enclose it, since `super` inside one means the file's own module.
fn paths(code: &str) -> Vec<(Vec<String>, usize)> {
    let text: String = code
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    // Brace depth, and the depths at which inline module bodies open.
    let mut depth = 0usize;
    let mut inline: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                depth += 1;
                i += 1;
                continue;
            }
            b'}' => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            _ => {}
        }
        if !is_ident(bytes[i]) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && is_ident(bytes[j]) {
                j += 1;
            }
            segs.push(text[start..j].to_owned());
            if text[j..].starts_with("::") && j + 2 < bytes.len() {
                if is_ident(bytes[j + 2]) {
                    j += 2;
                    continue;
                }
                if bytes[j + 2] == b'{' {
                    // A use group: each item joined to this prefix.
                    if let Some(end) = text[j + 3..].find('}') {
                        for item in text[j + 3..j + 3 + end].split(',') {
                            let item: Vec<String> = item
                                .trim()
                                .split("::")
                                .map(|s| s.trim().trim_start_matches('{').to_owned())
                                .filter(|s| !s.is_empty())
                                .collect();
                            if !item.is_empty() {
                                let mut p = segs.clone();
                                p.extend(item);
                                out.push((p, inline.len()));
                            }
                        }
                        // The group's braces are not blocks.
                        j = j + 3 + end + 1;
                    }
                }
            }
            break;
        }
        if segs.len() == 1 && segs[0] == "mod" {
            // `mod name {` opens an inline module body.
            let rest = text[j..].trim_start();
            let name_len = rest.bytes().take_while(|b| is_ident(*b)).count();
            if name_len > 0 && rest[name_len..].trim_start().starts_with('{') {
                inline.push(depth + 1);
            }
        }
        if segs.len() > 1 {
            out.push((segs, inline.len()));
        }
        i = j.max(i + 1);
    }
    out
}

/// Import circles among the files of one crate's `src`, each as the loop of files.
fn circles(src: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(src).ok()?;
            Some((module_of(rel), rel.display().to_string()))
        })
        .collect();
    // The file a path lands in: the deepest module it names.
    let resolve = |base: Vec<String>, rest: &[String]| -> Option<String> {
        let mut best = None;
        for n in 0..=rest.len() {
            let mut m = base.clone();
            m.extend_from_slice(&rest[..n]);
            if let Some(f) = modules.get(&m) {
                best = Some(f.clone());
            }
        }
        best
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Ok(rel) = f.strip_prefix(src) else {
            continue;
        };
        let me = rel.display().to_string();
        let here = module_of(rel);
        let code = std::fs::read_to_string(f).unwrap_or_default();
        let set = edges.entry(me.clone()).or_default();
        for (p, inner) in paths(&code) {
            let target = match p[0].as_str() {
                "crate" => resolve(Vec::new(), &p[1..]),
                "super" => {
                    // Inside an inline module the first `super`s stay in this file.
                    let ups = p.iter().take_while(|s| *s == "super").count();
                    if ups <= inner {
                        None
                    } else {
                        let up = ups - inner;
                        let base = here[..here.len().saturating_sub(up)].to_vec();
                        resolve(base, &p[ups..])
                    }
                }
                "self" if inner > 0 => None,
                "self" => resolve(here.clone(), &p[1..]),
                head => {
                    let mut child = here.clone();
                    child.push(head.to_owned());
                    if modules.contains_key(&child) {
                        resolve(here.clone(), &p)
                    } else {
                        None
                    }
                }
            };
            if let Some(t) = target.filter(|t| *t != me) {
                set.insert(t);
            }
        }
    }
    // Depth-first search; a back edge closes a loop.
    let mut state: BTreeMap<String, u8> = BTreeMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut found = Vec::new();
    fn visit(
        u: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        state.insert(u.to_owned(), 1);
        stack.push(u.to_owned());
        for v in edges.get(u).into_iter().flatten() {
            match state.get(v) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == v).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(v.clone());
                    found.push(c);
                }
                None => visit(v, edges, state, stack, found),
                _ => {}
            }
        }
        stack.pop();
        state.insert(u.to_owned(), 2);
    }
    let names: Vec<String> = edges.keys().cloned().collect();
    for n in names {
        if !state.contains_key(&n) {
            visit(&n, &edges, &mut state, &mut stack, &mut found);
        }
    }
    found
}

fn crate_srcs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(crates_dir())
        .expect("the crates directory")
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut long = Vec::new();
    for src in crate_srcs() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let n = std::fs::read_to_string(&f)
                .unwrap_or_default()
                .lines()
                .count();
            if n > MAX_LINES {
                long.push(format!("{} ({n} lines)", f.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these files: {long:#?}");
}

#[test]
fn no_crate_has_an_import_circle_between_its_files() {
    let mut all = Vec::new();
    for src in crate_srcs() {
        for c in circles(&src) {
            all.push(format!("{}: {}", src.display(), c.join(" -> ")));
        }
    }
    assert!(all.is_empty(), "import circles:\n{}", all.join("\n"));
}

#[test]
fn the_checker_sees_a_circle_and_a_clean_tree() {
    let dir = std::env::temp_dir().join(format!("meridian-structure-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\npub use a::A;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "pub struct A;\nfn f() { crate::b::g(); }\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "pub fn g() {}\n").unwrap();
    assert!(circles(&src).is_empty(), "{:?}", circles(&src));
    std::fs::write(
        src.join("b.rs"),
        "use super::a::A;\npub fn g() { let _ = A; }\n",
    )
    .unwrap();
    let found = circles(&src);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains(&"a.rs".to_owned()) && found[0].contains(&"b.rs".to_owned()));
    std::fs::write(
        src.join("b.rs"),
        "use crate::{a::A};\npub fn g() { let _ = A; }\n",
    )
    .unwrap();
    assert_eq!(circles(&src).len(), 1, "a use group counts too");
    std::fs::write(
        src.join("b.rs"),
        "pub fn g() {}\n#[cfg(test)]\nmod tests {\n    use super::g;\n    fn t() { g(); super::g(); }\n}\n",
    )
    .unwrap();
    assert!(
        circles(&src).is_empty(),
        "super in an inline module is this file: {:?}",
        circles(&src)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
