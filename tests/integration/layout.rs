//! The shape of `backup-core`: no file over 700 lines, and no import circle
//! between its files, so that each capability can be read and changed on its
//! own.
//!
//! An edge runs from a file to the file that defines a module path it names
//! (`use crate::storage::manifest::Manifest` names `storage/manifest.rs`;
//! `crate::Error` names `lib.rs`, which re-exports it from `error.rs`), with
//! `super::`, `self::` and `crate::` paths resolved alike. A child file that
//! reaches its parent counts too: a parent is its module's table of contents,
//! and what its children share lives in a sibling file. `mod` declarations
//! are not edges.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const MAX_LINES: usize = 700;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../backup-core/src")
}

/// Every `.rs` file under `root`, keyed by its module path (`lib.rs` is []).
fn modules(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .expect("under src")
                    .with_extension("");
                let mut module: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if module == ["lib"] {
                    module.clear();
                }
                out.insert(module, path);
            }
        }
    }
    out
}

/// The source without comments and string literals (their text could look
/// like paths).
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == '*' && bytes[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && (i == 0 || !is_ident(bytes[i - 1]))
            && matches!(next, Some('"' | '#'))
            && bytes[i + 1..].iter().find(|c| **c != '#') == Some(&'"')
        {
            // A raw string: r"..." or r#"..."#, which may hold quotes.
            let hashes = bytes[i + 1..].iter().take_while(|c| **c == '#').count();
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            i += 2 + hashes;
            while i < bytes.len() && !bytes[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next.is_some_and(|n| n != '\\') && bytes.get(i + 2) == Some(&'\'') {
            // A char literal such as '{' (lifetimes have no closing quote).
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < bytes.len() && bytes[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Expands a `use` tree (`crate::{a::{B, C}, d}`) into full paths.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut base = prefix.to_vec();
        base.extend(head);
        let Some(close) = tree.rfind('}') else {
            panic!("unbalanced use tree: {tree}");
        };
        let inner = &tree[open + 1..close];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &base, out);
    } else {
        let mut parts = tree.split(" as ");
        let tree = parts.next().unwrap_or(tree);
        let alias = parts.next().map(|a| a.trim().to_string());
        let mut path = prefix.to_vec();
        path.extend(
            tree.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "*")
                .map(String::from),
        );
        out.push((path, alias));
    }
}

/// The module paths a file names, each made absolute: paths in `use`
/// items, and paths in code that start with `crate`, `super`, `self`, a
/// child module or a module brought in by `use` (`use crate::engine::{self}`
/// then `engine::media::prepare`). Inside an inline module (`mod tests {
/// ... }`), `super` is the file's own module.
fn references(
    text: &str,
    module: &[String],
    files: &BTreeMap<Vec<String>, PathBuf>,
) -> Vec<Vec<String>> {
    let chars: Vec<char> = code(text).chars().collect();
    let word_at = |i: usize, w: &str| {
        let n = w.chars().count();
        chars.len() >= i + n
            && chars[i..i + n].iter().copied().eq(w.chars())
            && (i == 0 || !is_ident(chars[i - 1]))
            && chars.get(i + n).is_none_or(|c| !is_ident(*c))
    };
    let mut uses: Vec<(Vec<String>, Option<String>, usize)> = Vec::new();
    let mut paths: Vec<(Vec<String>, usize)> = Vec::new();
    // Inline modules: the brace depth each one opened at.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
        } else if c == '}' {
            depth = depth.saturating_sub(1);
            if inline.last() == Some(&depth) {
                inline.pop();
            }
        } else if word_at(i, "mod") {
            // `mod name {` opens an inline module; `mod name;` declares a file.
            let end = i
                + 3
                + chars[i + 3..]
                    .iter()
                    .take_while(|c| !matches!(c, ';' | '{'))
                    .count();
            if chars.get(end) == Some(&'{') {
                inline.push(depth);
            }
            i = end;
            continue;
        } else if word_at(i, "use")
            && chars[i + 3..].iter().find(|c| !c.is_whitespace()) != Some(&'<')
        {
            // (`+ use<>` is precise capturing, not an import.)
            let tree: String = chars[i + 3..].iter().take_while(|c| **c != ';').collect();
            let mut expanded = Vec::new();
            expand(&tree, &[], &mut expanded);
            let nested = inline.len();
            uses.extend(expanded.into_iter().map(|(p, alias)| (p, alias, nested)));
            i += 3 + tree.chars().count();
            continue;
        } else if is_ident(c) && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            let token: String = chars[i..]
                .iter()
                .take_while(|c| is_ident(**c) || **c == ':')
                .collect();
            if token.contains("::") {
                let parts = token
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                paths.push((parts, inline.len()));
            }
            i += token.chars().count();
            continue;
        }
        i += 1;
    }
    let resolve = |path: &[String], nested: usize| -> Option<Vec<String>> {
        let first = path.first()?;
        if matches!(first.as_str(), "crate" | "super" | "self") {
            return absolute(path, module, nested);
        }
        // A path relative to this module: a child module's.
        let mut child = module.to_vec();
        child.push(first.clone());
        files.contains_key(&child).then(|| {
            let mut full = module.to_vec();
            full.extend(path.iter().cloned());
            full
        })
    };
    let mut out = Vec::new();
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, alias, nested) in &uses {
        let Some(mut full) = resolve(path, *nested) else {
            continue;
        };
        if full.last().is_some_and(|l| l == "self") {
            full.pop();
        }
        if files.contains_key(&full)
            && let Some(name) = alias.clone().or_else(|| full.last().cloned())
        {
            aliases.insert(name, full.clone());
        }
        out.push(full);
    }
    for (path, nested) in &paths {
        let full = match aliases.get(&path[0]) {
            Some(base) => {
                let mut full = base.clone();
                full.extend(path[1..].iter().cloned());
                Some(full)
            }
            None => resolve(path, *nested),
        };
        out.extend(full);
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `path` as seen from `module` (inside `nested` inline modules), or `None`
/// for paths outside the crate.
fn absolute(path: &[String], module: &[String], nested: usize) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut here: Vec<String> = module.to_vec();
    let rest = match first.as_str() {
        "crate" => {
            here.clear();
            &path[1..]
        }
        "self" => &path[1..],
        "super" => {
            let supers = path.iter().take_while(|p| *p == "super").count();
            // The first `super`s of an inline module climb inside the file.
            let climb = supers.saturating_sub(nested);
            here.truncate(here.len().checked_sub(climb)?);
            &path[supers..]
        }
        _ => return None,
    };
    here.extend(rest.iter().cloned());
    Some(here)
}

/// The file that defines `path`: its longest prefix that is a file module.
fn file_of(path: &[String], files: &BTreeMap<Vec<String>, PathBuf>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| files.contains_key(p))
        .unwrap_or_default()
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "lib.rs".into()
    } else {
        format!("{}.rs", module.join("/"))
    }
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = modules(&src());
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &files {
        let text = fs::read_to_string(path).expect("read");
        let from = name(module);
        let to = edges.entry(from.clone()).or_default();
        for reference in references(&text, module, &files) {
            let target = name(&file_of(&reference, &files));
            if target != from {
                to.insert(target);
            }
        }
    }
    edges
}

/// A cycle in `edges`, if there is one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut found = stack[start..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(_) => {}
                None => {
                    if let Some(found) = visit(next, edges, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node)
            && let Some(found) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

#[test]
fn no_import_circle_between_files_of_backup_core() {
    let edges = graph();
    if std::env::var_os("LAYOUT_PRINT").is_some() {
        for (from, to) in &edges {
            println!(
                "{from} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    if let Some(found) = cycle(&edges) {
        panic!("import circle: {}", found.join(" -> "));
    }
}

#[test]
fn no_file_of_backup_core_is_over_700_lines() {
    let long: Vec<String> = modules(&src())
        .values()
        .filter_map(|path| {
            let lines = fs::read_to_string(path).expect("read").lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn the_layout_checker_reads_paths_as_rustc_does() {
    let files: BTreeMap<Vec<String>, PathBuf> = [
        vec![],
        vec!["a".to_string()],
        vec!["a".into(), "b".into()],
        vec!["c".into()],
    ]
    .into_iter()
    .map(|m| (m, PathBuf::new()))
    .collect();
    let here = vec!["a".to_string(), "b".to_string()];
    let text = "use super::{x::Y, b::Z};\nuse crate::c::{self, D as E};\n\
                fn f() { crate::Error::new(); let s = \"crate::z::Q\"; }\n\
                #[cfg(test)]\nmod tests { use super::*; use super::super::K; }";
    let targets: BTreeSet<String> = references(text, &here, &files)
        .iter()
        .map(|r| name(&file_of(r, &files)))
        .collect();
    let want: BTreeSet<String> = ["a.rs", "a/b.rs", "c.rs", "lib.rs"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(targets, want);
}
