//! The layering rule of `docs/architecture.md`, enforced.
//!
//! The rule lives in the document, not here: the first Markdown table after the heading line
//! `## Module map` has the columns
//!
//! ```text
//! | module | holds | may import | never uses |
//! |---|---|---|---|
//! | `registry` | pure replicated domain | `codec`, `crypto` | `tokio`, `axum`, `reqwest` |
//! | `http::tencent` | the KMS API | `registry`, `node` | — |
//! ```
//!
//! `module` is one backticked module path relative to the crate root; `may import` lists
//! backticked module paths of this crate (`—`, `-` or empty for none); `never uses` lists
//! backticked external crate names (or `—`). This file then checks `src/`:
//!
//! - every `.rs` file (the crate roots `lib.rs`/`main.rs`, `src/bin/` and test code excepted)
//!   belongs to the entry with the longest module-path prefix of its own module path, and every
//!   entry has at least one file;
//! - every crate-internal path in a file (`crate::…`, `super::…`, `self::…`, a declared child
//!   module `child::…`, `use` groups expanded) resolves to an entry; an edge to another entry is
//!   allowed only if that entry (or one of its ancestors) is in `may import`, or it is a
//!   descendant of the file's own entry;
//! - the graph of actual edges between entries has no cycle;
//! - no file uses a crate of its entry's `never uses`;
//! - no file under `src/registry/` mentions `planted-bugs`.
//!
//! Comments, string/char literals and test code (`#[cfg(test)]` items, out-of-line
//! `#[cfg(test)] mod x;` files, files of a module named `tests`, files with `#![cfg(test)]`) are
//! ignored. `cargo test --test architecture -- --nocapture` prints the edges it found.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// The module map
// ---------------------------------------------------------------------------------------------

/// One row of the module map.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Module path segments relative to the crate root (`["http", "tencent"]`).
    module: Vec<String>,
    may_import: Vec<Vec<String>>,
    never_uses: Vec<String>,
    /// 1-based line of the row in the document.
    line: usize,
}

const HEADING: &str = "## Module map";

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_module_path(s: &str) -> Option<Vec<String>> {
    let s = s.trim();
    let s = s.strip_prefix("crate::").unwrap_or(s);
    let segs: Vec<String> = s.split("::").map(|p| p.trim().to_string()).collect();
    if segs.iter().all(|p| is_ident(p)) && !segs.iter().any(|p| p == "crate") {
        Some(segs)
    } else {
        None
    }
}

/// The backticked items of a cell, or `None` if the cell has text outside backticks that is not
/// a separator or a "none" marker.
fn backticked(cell: &str) -> Option<Vec<String>> {
    let mut items = Vec::new();
    let mut rest = cell;
    let mut outside = String::new();
    while let Some(start) = rest.find('`') {
        outside.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('`')?;
        items.push(after[..end].trim().to_string());
        rest = &after[end + 1..];
    }
    outside.push_str(rest);
    let leftover: String = outside
        .chars()
        .filter(|c| !matches!(c, ',' | '—' | '–' | '-') && !c.is_whitespace())
        .collect();
    if leftover.is_empty() || (items.is_empty() && leftover.eq_ignore_ascii_case("none")) {
        Some(items)
    } else {
        None
    }
}

/// Splits a table row on unescaped `|`, dropping the outer empty cells.
fn split_row(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    cells.push(cur);
    if cells.first().is_some_and(|c| c.trim().is_empty()) {
        cells.remove(0);
    }
    if cells.last().is_some_and(|c| c.trim().is_empty()) {
        cells.pop();
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

fn join(path: &[String]) -> String {
    if path.is_empty() {
        "<crate root>".to_string()
    } else {
        path.join("::")
    }
}

/// Parses the module map out of the architecture document.
fn parse_module_map(doc: &str) -> Result<Vec<Entry>, String> {
    let lines: Vec<&str> = doc.lines().collect();
    let Some(heading) = lines.iter().position(|l| l.trim_end() == HEADING) else {
        return Err(format!(
            "docs/architecture.md has no `{HEADING}` section: the layering rule is the first \
             table after a heading line exactly `{HEADING}`, with columns \
             `| module | holds | may import | never uses |`"
        ));
    };
    let mut i = heading + 1;
    while i < lines.len() && !lines[i].trim_start().starts_with('|') {
        if lines[i].starts_with('#') {
            return Err(format!(
                "no table between `{HEADING}` (line {}) and the next heading (line {})",
                heading + 1,
                i + 1
            ));
        }
        i += 1;
    }
    if i >= lines.len() {
        return Err(format!("no table after `{HEADING}` (line {})", heading + 1));
    }
    let header: Vec<String> = split_row(lines[i])
        .iter()
        .map(|c| c.to_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(c_mod), Some(_), Some(c_may), Some(c_never)) = (
        col("module"),
        col("holds"),
        col("may import"),
        col("never uses"),
    ) else {
        return Err(format!(
            "the table after `{HEADING}` (line {}) must have the columns \
             `| module | holds | may import | never uses |`, found {header:?}",
            i + 1
        ));
    };
    i += 1;
    let is_separator = |l: &str| {
        let t = l.trim();
        t.starts_with('|') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
    };
    if i < lines.len() && is_separator(lines[i]) {
        i += 1;
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut errors = Vec::new();
    while i < lines.len() && lines[i].trim_start().starts_with('|') {
        let line = i + 1;
        let cells = split_row(lines[i]);
        i += 1;
        let cell = |c: usize| cells.get(c).map(String::as_str).unwrap_or("");
        let module = match backticked(cell(c_mod)).as_deref() {
            Some([one]) => match parse_module_path(one) {
                Some(m) => m,
                None => {
                    errors.push(format!("line {line}: `{one}` is not a module path"));
                    continue;
                }
            },
            _ => {
                errors.push(format!(
                    "line {line}: the module cell must be one backticked module path, found `{}`",
                    cell(c_mod)
                ));
                continue;
            }
        };
        let mut may_import = Vec::new();
        match backticked(cell(c_may)) {
            Some(items) => {
                for it in items {
                    match parse_module_path(&it) {
                        Some(m) => may_import.push(m),
                        None => errors.push(format!("line {line}: `{it}` is not a module path")),
                    }
                }
            }
            None => errors.push(format!(
                "line {line}: `may import` must be backticked module paths or `—`, found `{}`",
                cell(c_may)
            )),
        }
        let mut never_uses = Vec::new();
        match backticked(cell(c_never)) {
            Some(items) => {
                for it in items {
                    let name = it.trim_start_matches("::").replace('-', "_");
                    if is_ident(&name) {
                        never_uses.push(name);
                    } else {
                        errors.push(format!("line {line}: `{it}` is not a crate name"));
                    }
                }
            }
            None => errors.push(format!(
                "line {line}: `never uses` must be backticked crate names or `—`, found `{}`",
                cell(c_never)
            )),
        }
        if let Some(prev) = entries.iter().find(|e| e.module == module) {
            errors.push(format!(
                "line {line}: `{}` is listed twice (also line {})",
                join(&module),
                prev.line
            ));
            continue;
        }
        entries.push(Entry {
            module,
            may_import,
            never_uses,
            line,
        });
    }
    if entries.is_empty() && errors.is_empty() {
        errors.push(format!("the table after `{HEADING}` has no rows"));
    }
    // `may import` must name an entry or an ancestor of entries.
    for e in &entries {
        for m in &e.may_import {
            if !entries.iter().any(|x| x.module.starts_with(m)) {
                errors.push(format!(
                    "line {}: `{}` may import `{}`, which is neither a module-map entry nor \
                     contains one",
                    e.line,
                    join(&e.module),
                    join(m)
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(format!(
            "module map in docs/architecture.md: {}",
            errors.join("\n  ")
        ))
    }
}

/// Index of the entry with the longest prefix of `path`.
fn entry_of(entries: &[Entry], path: &[String]) -> Option<usize> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| path.starts_with(&e.module))
        .max_by_key(|(_, e)| e.module.len())
        .map(|(i, _)| i)
}

// ---------------------------------------------------------------------------------------------
// A small Rust lexer: comments and literals vanish, identifiers and `::` remain.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    /// A string, char or number literal (its content is dropped).
    Lit,
    Lifetime,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn lex(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let n = c.len();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    // Skips a "…" string starting at the opening quote; returns the index after it.
    let skip_quoted = |mut i: usize, line: &mut usize| -> usize {
        i += 1;
        while i < n {
            match c[i] {
                '\\' => {
                    if at(i + 1) == '\n' {
                        *line += 1;
                    }
                    i += 2;
                }
                '"' => return i + 1,
                '\n' => {
                    *line += 1;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        n
    };
    while i < n {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        if ch == '/' && at(i + 1) == '/' {
            while i < n && c[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if ch == '/' && at(i + 1) == '*' {
            let mut depth = 1;
            i += 2;
            while i < n && depth > 0 {
                if c[i] == '\n' {
                    line += 1;
                    i += 1;
                } else if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            continue;
        }
        if ident_start(ch) {
            let start = i;
            while i < n && ident_continue(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let tok_line = line;
            if matches!(word.as_str(), "r" | "br" | "cr") && matches!(at(i), '"' | '#') {
                let mut j = i;
                while at(j) == '#' {
                    j += 1;
                }
                let hashes = j - i;
                if at(j) == '"' {
                    // Raw string: ends at `"` followed by as many `#`.
                    i = j + 1;
                    while i < n {
                        if c[i] == '\n' {
                            line += 1;
                        }
                        if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                            i += 1 + hashes;
                            break;
                        }
                        i += 1;
                    }
                    out.push(Token {
                        tok: Tok::Lit,
                        line: tok_line,
                    });
                    continue;
                }
                if word == "r" && hashes == 1 && ident_start(at(j)) {
                    // Raw identifier `r#type`.
                    let s = j;
                    i = j;
                    while i < n && ident_continue(c[i]) {
                        i += 1;
                    }
                    let name: String = c[s..i].iter().collect();
                    out.push(Token {
                        tok: Tok::Ident(name),
                        line: tok_line,
                    });
                    continue;
                }
            }
            if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_quoted(i, &mut line);
                out.push(Token {
                    tok: Tok::Lit,
                    line: tok_line,
                });
                continue;
            }
            if word == "b" && at(i) == '\'' {
                i += 1;
                if at(i) == '\\' {
                    i += 2;
                }
                while i < n && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push(Token {
                    tok: Tok::Lit,
                    line: tok_line,
                });
                continue;
            }
            out.push(Token {
                tok: Tok::Ident(word),
                line: tok_line,
            });
            continue;
        }
        if ch == '"' {
            let tok_line = line;
            i = skip_quoted(i, &mut line);
            out.push(Token {
                tok: Tok::Lit,
                line: tok_line,
            });
            continue;
        }
        if ch == '\'' {
            if at(i + 1) == '\\' {
                // Escaped char literal: '\n', '\'', '\u{..}'.
                i += 3;
                while i < n && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push(Token {
                    tok: Tok::Lit,
                    line,
                });
            } else if at(i + 2) == '\'' && at(i + 1) != '\n' {
                i += 3;
                out.push(Token {
                    tok: Tok::Lit,
                    line,
                });
            } else {
                // Lifetime or label.
                i += 1;
                while i < n && ident_continue(c[i]) {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Lifetime,
                    line,
                });
            }
            continue;
        }
        if ch.is_ascii_digit() {
            while i < n && (ident_continue(c[i]) || (c[i] == '.' && at(i + 1).is_ascii_digit())) {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Lit,
                line,
            });
            continue;
        }
        if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::Sep,
                line,
            });
            i += 2;
            continue;
        }
        out.push(Token {
            tok: Tok::Punct(ch),
            line,
        });
        i += 1;
    }
    out
}

fn is_punct(t: Option<&Token>, p: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(x), .. }) if *x == p)
}

fn is_word(t: Option<&Token>, w: &str) -> bool {
    matches!(t, Some(Token { tok: Tok::Ident(x), .. }) if x == w)
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token {
            tok: Tok::Ident(x), ..
        }) => Some(x),
        _ => None,
    }
}

/// Index just past the bracket group opening at `i` (`(`, `[` or `{`).
fn skip_group(toks: &[Token], i: usize) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < toks.len() {
        match toks[j].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    toks.len()
}

/// Whether `toks[i..]` starts with `#[cfg(test)]` (or `#![cfg(test)]` when `inner`).
fn cfg_test_at(toks: &[Token], i: usize, inner: bool) -> Option<usize> {
    let mut j = i;
    if !is_punct(toks.get(j), '#') {
        return None;
    }
    j += 1;
    if inner {
        if !is_punct(toks.get(j), '!') {
            return None;
        }
        j += 1;
    }
    let ok = is_punct(toks.get(j), '[')
        && is_word(toks.get(j + 1), "cfg")
        && is_punct(toks.get(j + 2), '(')
        && is_word(toks.get(j + 3), "test")
        && is_punct(toks.get(j + 4), ')')
        && is_punct(toks.get(j + 5), ']');
    ok.then_some(j + 6)
}

/// Source with its test code removed.
struct Stripped {
    toks: Vec<Token>,
    /// Out-of-line modules declared `#[cfg(test)] mod name;`.
    test_mods: Vec<String>,
    /// The file starts `#![cfg(test)]`.
    whole_file_test: bool,
}

fn strip_test_code(toks: Vec<Token>) -> Stripped {
    // `#![cfg(test)]` among the file's leading inner attributes.
    let mut whole_file_test = false;
    let mut k = 0;
    while is_punct(toks.get(k), '#') && is_punct(toks.get(k + 1), '!') {
        if cfg_test_at(&toks, k, true).is_some() {
            whole_file_test = true;
        }
        k = skip_group(&toks, k + 2);
    }
    let mut out = Vec::with_capacity(toks.len());
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let Some(mut j) = cfg_test_at(&toks, i, false) else {
            out.push(toks[i].clone());
            i += 1;
            continue;
        };
        // Further attributes on the same item.
        while is_punct(toks.get(j), '#') && is_punct(toks.get(j + 1), '[') {
            j = skip_group(&toks, j + 1);
        }
        // The item: up to `;` at bracket depth 0, or through its `{ … }` body.
        let start = j;
        let mut depth = 0usize;
        while j < toks.len() {
            match toks[j].tok {
                Tok::Punct('{') if depth == 0 => {
                    j = skip_group(&toks, j);
                    break;
                }
                Tok::Punct('(' | '[' | '{') => depth += 1,
                Tok::Punct(')' | ']' | '}') => {
                    if depth == 0 {
                        // Closing brace of an enclosing block: the attribute was on an
                        // expression; leave the brace alone.
                        break;
                    }
                    depth -= 1;
                }
                Tok::Punct(';') if depth == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let item = &toks[start..j.min(toks.len())];
        if let Some(k) = item.iter().position(|t| t.tok == Tok::Ident("mod".into())) {
            if let Some(name) = ident(item.get(k + 1)) {
                if is_punct(item.get(k + 2), ';') {
                    test_mods.push(name.to_string());
                }
            }
        }
        i = j;
    }
    Stripped {
        toks: out,
        test_mods,
        whole_file_test,
    }
}

// ---------------------------------------------------------------------------------------------
// Paths in a file
// ---------------------------------------------------------------------------------------------

/// A `use` tree or inline path starting at `toks[i]`; pushes every leaf path (raw segments,
/// `crate`/`super`/`self` unresolved) with its line and `as` alias. Returns the index after it.
fn parse_tree(
    toks: &[Token],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize, Option<String>)>,
) -> usize {
    let mut path = prefix;
    let mut line = toks.get(i).map(|t| t.line).unwrap_or(0);
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                line = toks[i].line;
                i += 1;
                if matches!(toks.get(i).map(|t| &t.tok), Some(Tok::Sep)) {
                    i += 1;
                    continue;
                }
                let mut alias = None;
                if is_word(toks.get(i), "as") {
                    alias = ident(toks.get(i + 1)).map(str::to_string);
                    i += 2;
                }
                out.push((path, line, alias));
                return i;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.tok) {
                        None => return i,
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        Some(_) => {
                            let before = i;
                            i = parse_tree(toks, i, path.clone(), out);
                            if i == before {
                                i += 1;
                            }
                        }
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                out.push((path, toks[i].line, None));
                return i + 1;
            }
            _ => {
                // `crate::f::<T>()` or a trailing `::`: the path so far.
                if !path.is_empty() {
                    out.push((path, line, None));
                }
                return i;
            }
        }
    }
}

/// Resolves raw segments against the module `scope`; `None` if `super` leaves the crate.
fn resolve(raw: &[String], scope: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = scope.to_vec();
    for (k, seg) in raw.iter().enumerate() {
        match seg.as_str() {
            "crate" if k == 0 => base.clear(),
            "super" => {
                base.pop()?;
            }
            "self" => {}
            s => base.push(s.to_string()),
        }
    }
    Some(base)
}

/// A path as written, without a trailing `::self` (`use a::{self}`).
fn written(segs: &[String]) -> String {
    let n = if segs.len() > 1 && segs.last().is_some_and(|s| s == "self") {
        segs.len() - 1
    } else {
        segs.len()
    };
    segs[..n].join("::")
}

/// A crate-internal path found in a file, resolved to segments from the crate root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathRef {
    target: Vec<String>,
    line: usize,
    /// As written (`super::b::X`).
    written: String,
}

/// External-crate or crate-internal references of one file.
struct FileRefs {
    internal: Vec<PathRef>,
    /// (crate name, line) for every identifier used as the first segment of a path.
    external: Vec<(String, usize)>,
}

/// Extracts the references of a file whose module path is `module`.
fn extract_refs(toks: &[Token], module: &[String]) -> FileRefs {
    // Pass 1: declared child modules per scope (`mod x;` / `mod x { … }`).
    let mut children: BTreeSet<(Vec<String>, String)> = BTreeSet::new();
    walk_scopes(toks, module, |i, scope| {
        if is_word(toks.get(i), "mod") {
            if let Some(name) = ident(toks.get(i + 1)) {
                if is_punct(toks.get(i + 2), ';') || is_punct(toks.get(i + 2), '{') {
                    children.insert((scope.to_vec(), name.to_string()));
                }
            }
        }
        i + 1
    });
    let mut internal = Vec::new();
    let mut external = Vec::new();
    walk_scopes(toks, module, |i, scope| {
        let Some(word) = ident(toks.get(i)) else {
            return i + 1;
        };
        let next_sep = matches!(toks.get(i + 1).map(|t| &t.tok), Some(Tok::Sep));
        let prev = i.checked_sub(1).and_then(|p| toks.get(p));
        let prev_sep = matches!(prev.map(|t| &t.tok), Some(Tok::Sep));
        let prev_dot = is_punct(prev, '.');
        // `::name` at the start of a path (not `a::name`).
        let leading_sep = prev_sep && {
            let before = i.checked_sub(2).and_then(|p| toks.get(p));
            !matches!(
                before.map(|t| &t.tok),
                Some(Tok::Ident(_) | Tok::Punct('>' | ')'))
            ) || is_word(before, "use")
        };
        let is_child = |w: &str| children.contains(&(scope.to_vec(), w.to_string()));
        let is_internal = |w: &str| matches!(w, "crate" | "super" | "self") || is_child(w);
        let mut push_internal = |segs: &[String], line: usize| {
            if let Some(target) = resolve(segs, scope) {
                internal.push(PathRef {
                    target,
                    line,
                    written: written(segs),
                });
            }
        };
        if word == "use" {
            // A use tree: its roots are either this crate's paths or external crates.
            let mut j = i + 1;
            if matches!(toks.get(j).map(|t| &t.tok), Some(Tok::Sep)) {
                j += 1;
            }
            let mut raw = Vec::new();
            let end = parse_tree(toks, j, Vec::new(), &mut raw);
            for (segs, line, _) in raw {
                let Some(first) = segs.first() else { continue };
                if is_internal(first) {
                    push_internal(&segs, line);
                } else {
                    external.push((first.clone(), line));
                }
            }
            return end;
        }
        if prev_sep && !leading_sep || prev_dot || !next_sep {
            if word != "crate" && is_word(prev, "crate") && {
                let before = i.checked_sub(2).and_then(|p| toks.get(p));
                is_word(before, "extern")
            } {
                external.push((word.to_string(), toks[i].line));
            }
            return i + 1;
        }
        // The first segment of a path in code.
        if is_internal(word) && !prev_sep {
            let mut raw = Vec::new();
            let end = parse_tree(toks, i, Vec::new(), &mut raw);
            for (segs, line, _) in raw {
                push_internal(&segs, line);
            }
            return end;
        }
        if !is_child(word) {
            external.push((word.to_string(), toks[i].line));
        }
        i + 1
    });
    FileRefs { internal, external }
}

/// Visits tokens with the module scope they are in (the file's module plus inline `mod x {`).
/// `f(i, scope)` returns the next index to visit; skipped tokens must not contain braces that
/// open or close an inline module (paths never do).
fn walk_scopes(toks: &[Token], module: &[String], mut f: impl FnMut(usize, &[String]) -> usize) {
    let mut scope: Vec<String> = module.to_vec();
    // (brace depth at which the inline module's body was opened)
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match toks[i].tok {
            Tok::Punct('{') => {
                depth += 1;
                if i >= 2 && is_word(toks.get(i - 2), "mod") {
                    if let Some(name) = ident(toks.get(i - 1)) {
                        scope.push(name.to_string());
                        inline.push(depth);
                    }
                }
            }
            Tok::Punct('}') => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                    scope.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        let next = f(i, &scope);
        i = next.max(i + 1);
    }
}

// ---------------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------------

/// An edge between two entries, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    file: String,
    line: usize,
    from: String,
    to: String,
    written: String,
}

#[derive(Debug, Default)]
struct Report {
    /// Every crate-internal reference between two different entries.
    edges: Vec<Edge>,
    /// Human-readable problems; empty means the map is respected.
    problems: Vec<String>,
}

impl Report {
    fn render_edges(&self) -> String {
        let mut by_pair: BTreeMap<(&str, &str), Vec<&Edge>> = BTreeMap::new();
        for e in &self.edges {
            by_pair.entry((&e.from, &e.to)).or_default().push(e);
        }
        let mut s = String::new();
        for ((from, to), es) in by_pair {
            let _ = writeln!(
                s,
                "{from} -> {to}  ({} refs, e.g. {}:{}: {})",
                es.len(),
                es[0].file,
                es[0].line,
                es[0].written
            );
        }
        s
    }
}

/// Module path of a file given relative to `src/` (`a/b.rs`); `None` for files that are not
/// modules of the library (`src/bin/…`). The crate roots give an empty path.
fn module_of_file(rel: &str) -> Option<Vec<String>> {
    let rel = rel.replace('\\', "/");
    let stem = rel.strip_suffix(".rs")?;
    if stem.starts_with("bin/") {
        return None;
    }
    let mut segs: Vec<String> = stem.split('/').map(str::to_string).collect();
    if segs.len() == 1 && (segs[0] == "lib" || segs[0] == "main") {
        return Some(Vec::new());
    }
    if segs.last().map(String::as_str) == Some("mod") {
        segs.pop();
    }
    Some(segs)
}

/// Checks `files` (paths relative to `src/`, contents) against the module map in `doc`.
fn check(doc: &str, files: &[(String, String)]) -> Result<Report, String> {
    let entries = parse_module_map(doc)?;
    let mut report = Report::default();
    let problems = &mut report.problems;

    // Lex every file once; find test-only modules.
    struct File {
        rel: String,
        module: Vec<String>,
        stripped: Stripped,
    }
    let mut parsed: Vec<File> = Vec::new();
    for (rel, text) in files {
        if rel.replace('\\', "/").starts_with("registry/") && text.contains("planted-bugs") {
            let lines: Vec<String> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains("planted-bugs"))
                .map(|(n, _)| format!("src/{rel}:{}", n + 1))
                .collect();
            problems.push(format!(
                "fault plants stay out of the pure registry: `planted-bugs` in {}",
                lines.join(", ")
            ));
        }
        let Some(module) = module_of_file(rel) else {
            continue;
        };
        parsed.push(File {
            rel: rel.clone(),
            module,
            stripped: strip_test_code(lex(text)),
        });
    }
    let test_modules: BTreeSet<Vec<String>> = parsed
        .iter()
        .flat_map(|f| {
            f.stripped.test_mods.iter().map(|m| {
                let mut p = f.module.clone();
                p.push(m.clone());
                p
            })
        })
        .collect();
    let is_test = |f: &File| {
        f.stripped.whole_file_test
            || f.module.iter().any(|s| s == "tests")
            || test_modules.iter().any(|t| f.module.starts_with(t))
    };

    // Names the crate root re-exports (`pub use config::NodeConfig;` in lib.rs).
    let mut root_aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(lib) = parsed.iter().find(|f| f.rel == "lib.rs") {
        let toks = &lib.stripped.toks;
        for i in 0..toks.len() {
            if is_word(toks.get(i), "use") {
                let mut raw = Vec::new();
                parse_tree(toks, i + 1, Vec::new(), &mut raw);
                for (segs, _, alias) in raw {
                    let Some(name) = alias.or_else(|| segs.last().cloned()) else {
                        continue;
                    };
                    if let Some(target) = resolve(&segs, &[]) {
                        if name != "*" && name != "self" {
                            root_aliases.insert(name, target);
                        }
                    }
                }
            }
        }
    }

    let mut used = vec![false; entries.len()];
    let mut orphans = Vec::new();
    let mut forbidden = Vec::new();
    let mut unresolved = Vec::new();
    let mut never = Vec::new();
    for f in &parsed {
        if f.module.is_empty() || is_test(f) {
            continue;
        }
        let Some(from) = entry_of(&entries, &f.module) else {
            orphans.push(format!("src/{} (module `{}`)", f.rel, join(&f.module)));
            continue;
        };
        used[from] = true;
        let from_e = &entries[from];
        let refs = extract_refs(&f.stripped.toks, &f.module);
        for r in refs.internal {
            let mut target = r.target.clone();
            let mut to = entry_of(&entries, &target);
            if to.is_none() {
                if let Some(real) = target.first().and_then(|s| root_aliases.get(s)) {
                    let mut t = real.clone();
                    t.extend(target.iter().skip(1).cloned());
                    target = t;
                    to = entry_of(&entries, &target);
                }
            }
            let Some(to) = to else {
                unresolved.push(format!(
                    "src/{}:{}: {} -> `{}` ({}) is in no module-map entry",
                    f.rel,
                    r.line,
                    join(&from_e.module),
                    join(&target),
                    r.written
                ));
                continue;
            };
            if to == from {
                continue;
            }
            let to_e = &entries[to];
            let edge = Edge {
                file: format!("src/{}", f.rel),
                line: r.line,
                from: join(&from_e.module),
                to: join(&to_e.module),
                written: r.written,
            };
            let allowed = to_e.module.starts_with(&from_e.module)
                || from_e.may_import.iter().any(|m| to_e.module.starts_with(m));
            if !allowed {
                forbidden.push(format!(
                    "{}:{}: {} -> {} ({})",
                    edge.file, edge.line, edge.from, edge.to, edge.written
                ));
            }
            report.edges.push(edge);
        }
        let mut seen = BTreeSet::new();
        for (name, line) in refs.external {
            if from_e.never_uses.contains(&name) && seen.insert((name.clone(), line)) {
                never.push(format!(
                    "src/{}:{}: {} uses `{}`, which it never uses",
                    f.rel,
                    line,
                    join(&from_e.module),
                    name
                ));
            }
        }
    }
    // Test-only files still count as files of their entry for staleness.
    for f in &parsed {
        if !f.module.is_empty() && is_test(f) {
            if let Some(e) = entry_of(&entries, &f.module) {
                used[e] = true;
            }
        }
    }
    if !orphans.is_empty() {
        problems.push(format!(
            "files in no module-map entry (add a row for them):\n    {}",
            orphans.join("\n    ")
        ));
    }
    let stale: Vec<String> = entries
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(e, _)| format!("`{}` (line {})", join(&e.module), e.line))
        .collect();
    if !stale.is_empty() {
        problems.push(format!(
            "module-map entries with no file under src/ (stale rows):\n    {}",
            stale.join("\n    ")
        ));
    }
    if !forbidden.is_empty() {
        problems.push(format!(
            "imports not allowed by `may import`:\n    {}",
            forbidden.join("\n    ")
        ));
    }
    if !unresolved.is_empty() {
        problems.push(format!(
            "crate paths that resolve to no module-map entry:\n    {}",
            unresolved.join("\n    ")
        ));
    }
    if !never.is_empty() {
        problems.push(format!(
            "`never uses` crates used:\n    {}",
            never.join("\n    ")
        ));
    }
    let cycles = find_cycles(&report.edges);
    if !cycles.is_empty() {
        problems.push(format!(
            "import cycles between entries:\n    {}",
            cycles.join("\n    ")
        ));
    }
    Ok(report)
}

/// One cycle per strongly connected component of the entry graph, with an example reference
/// for each of its edges.
fn find_cycles(edges: &[Edge]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut example: BTreeMap<(&str, &str), &Edge> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().insert(&e.to);
        graph.entry(&e.to).or_default();
        example.entry((&e.from, &e.to)).or_insert(e);
    }
    let nodes: Vec<&str> = graph.keys().copied().collect();
    let idx: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let adj: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| graph[n].iter().map(|m| idx[m]).collect())
        .collect();
    let mut out = Vec::new();
    let mut sccs = tarjan(&adj);
    sccs.iter_mut().for_each(|c| c.sort_unstable());
    sccs.sort();
    for scc in sccs {
        if scc.len() < 2 {
            continue;
        }
        let members: BTreeSet<usize> = scc.iter().copied().collect();
        let mut s = String::new();
        if members.len() > 2 {
            let all: Vec<&str> = members.iter().map(|&i| nodes[i]).collect();
            let _ = write!(
                s,
                "entries {} import each other in a circle:",
                all.join(", ")
            );
        }
        // For every edge inside the component, the shortest cycle through it; each cycle once.
        let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
        for &u in &members {
            for &v in adj[u].iter().filter(|v| members.contains(v)) {
                let mut cycle = vec![u];
                cycle.extend(shortest_path(&adj, &members, v, u));
                // Same cycle, other starting point: rotate to its smallest member.
                let body = &cycle[..cycle.len() - 1];
                let k = (0..body.len()).min_by_key(|&k| body[k]).unwrap_or(0);
                let mut rotated: Vec<usize> = body[k..].iter().chain(&body[..k]).copied().collect();
                rotated.push(rotated[0]);
                if !seen.insert(rotated.clone()) {
                    continue;
                }
                let names: Vec<&str> = rotated.iter().map(|&i| nodes[i]).collect();
                if !s.is_empty() {
                    s.push_str("\n    ");
                }
                let _ = write!(s, "cycle: {}", names.join(" -> "));
                for w in names.windows(2) {
                    let e = example[&(w[0], w[1])];
                    let _ = write!(
                        s,
                        "\n        {}:{}: {} -> {} ({})",
                        e.file, e.line, e.from, e.to, e.written
                    );
                }
            }
        }
        out.push(s);
    }
    out
}

/// The shortest path `from -> … -> to` inside `members` (BFS); `from` and `to` included.
fn shortest_path(
    adj: &[Vec<usize>],
    members: &BTreeSet<usize>,
    from: usize,
    to: usize,
) -> Vec<usize> {
    let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut found = from == to;
    while let Some(u) = queue.pop_front() {
        if found {
            break;
        }
        for &v in &adj[u] {
            if !members.contains(&v) || v == from || prev.contains_key(&v) {
                continue;
            }
            prev.insert(v, u);
            if v == to {
                found = true;
                break;
            }
            queue.push_back(v);
        }
    }
    assert!(
        found,
        "a strongly connected component has a path between any two members"
    );
    let mut path = vec![to];
    let mut cur = to;
    while cur != from {
        cur = prev[&cur];
        path.push(cur);
    }
    path.reverse();
    path
}

fn tarjan(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct St<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut St, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for k in 0..s.adj[v].len() {
            let w = s.adj[v][k];
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(comp);
        }
    }
    let n = adj.len();
    let mut s = St {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

fn read_src(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut items: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    items.sort();
    for p in items {
        if p.is_dir() {
            read_src(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p
                .strip_prefix(root)
                .expect("under src/")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            out.push((rel, text));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real repository
// ---------------------------------------------------------------------------------------------

#[test]
fn module_map_is_respected() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc_path = root.join("docs/architecture.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", doc_path.display()));
    let src = root.join("src");
    let mut files = Vec::new();
    read_src(&src, &src, &mut files);
    let report = match check(&doc, &files) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    println!(
        "edges between module-map entries:\n{}",
        report.render_edges()
    );
    if !report.problems.is_empty() {
        panic!(
            "the module map of docs/architecture.md is not respected ({} problems):\n\n{}\n",
            report.problems.len(),
            report.problems.join("\n\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The checker on small hand-made inputs
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod unit {
    use super::*;

    fn doc(rows: &[&str]) -> String {
        let mut d = String::from(
            "# Arch\n\nSome text with a | pipe table | elsewhere |\n\n## Module map\n\n\
             Prose before the table.\n\n\
             | module | holds | may import | never uses |\n|---|---|---|---|\n",
        );
        for r in rows {
            d.push_str(r);
            d.push('\n');
        }
        d.push_str("\nAfter.\n\n| other | table |\n|---|---|\n| `x` | y |\n");
        d
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    fn problems(d: &str, fs: &[(&str, &str)]) -> Vec<String> {
        check(d, &files(fs)).expect("map parses").problems
    }

    fn edges(d: &str, fs: &[(&str, &str)]) -> Vec<(String, String)> {
        let r = check(d, &files(fs)).expect("map parses");
        r.edges.into_iter().map(|e| (e.from, e.to)).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_first_table_after_the_heading() {
        let d = doc(&[
            "| `registry` | the domain | — | `axum`, `reqwest` |",
            "| `http::tencent` | KMS \\| API | `registry`, `node` | - |",
            "| `node` | wiring |  | none |",
            "| `crate::codec` | formats | `registry` | `serde-json` |",
        ]);
        let m = parse_module_map(&d).expect("parses");
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].module, ["registry"]);
        assert!(m[0].may_import.is_empty());
        assert_eq!(m[0].never_uses, ["axum", "reqwest"]);
        assert_eq!(m[1].module, ["http", "tencent"]);
        assert_eq!(m[1].may_import, [vec!["registry"], vec!["node"]]);
        assert!(m[1].never_uses.is_empty());
        assert!(m[2].may_import.is_empty() && m[2].never_uses.is_empty());
        assert_eq!(m[3].module, ["codec"]);
        assert_eq!(m[3].never_uses, ["serde_json"]);
    }

    #[test]
    fn missing_section_or_table_is_an_error() {
        let e = parse_module_map(
            "# Arch\n\n## Modules\n\n| module | holds | may import | never uses |\n",
        )
        .unwrap_err();
        assert!(e.contains("## Module map"), "{e}");
        let e = check("# nothing here\n", &[]).unwrap_err();
        assert!(e.contains("no `## Module map` section"), "{e}");
        let e = parse_module_map("## Module map\n\ntext\n\n## Next\n\n| a | b |\n").unwrap_err();
        assert!(e.contains("no table"), "{e}");
        let e =
            parse_module_map("## Module map\n\n| module | may import |\n|---|---|\n").unwrap_err();
        assert!(e.contains("columns"), "{e}");
        let e = parse_module_map(&doc(&["| registry | x | — | — |"])).unwrap_err();
        assert!(e.contains("one backticked module path"), "{e}");
        let e = parse_module_map(&doc(&["| `a` | x | `nowhere` | — |"])).unwrap_err();
        assert!(e.contains("`nowhere`"), "{e}");
        let e =
            parse_module_map(&doc(&["| `a` | x | — | — |", "| `a` | y | — | — |"])).unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn maps_files_to_modules() {
        assert_eq!(module_of_file("lib.rs"), Some(vec![]));
        assert_eq!(module_of_file("main.rs"), Some(vec![]));
        assert_eq!(module_of_file("a/mod.rs"), Some(vec!["a".to_string()]));
        assert_eq!(
            module_of_file("a/b.rs"),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(module_of_file("a.rs"), Some(vec!["a".to_string()]));
        assert_eq!(module_of_file("bin/tool.rs"), None);
    }

    #[test]
    fn forbidden_edge_fires_and_allowed_ones_do_not() {
        let d = doc(&[
            "| `a` | | `b` | — |",
            "| `b` | | — | — |",
            "| `c` | | — | — |",
            "| `http` | | `b` | — |",
            "| `http::tencent` | | — | — |",
        ]);
        let p = problems(
            &d,
            &[
                ("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod http;"),
                ("a.rs", "use crate::b::X;\nfn f() { crate::c::g(); }\n"),
                ("b.rs", ""),
                ("c.rs", ""),
                // Parent to child entry: allowed without listing.
                (
                    "http/mod.rs",
                    "pub mod tencent;\nuse crate::http::tencent::T;\n",
                ),
                ("http/tencent/mod.rs", "pub struct T;\n"),
            ],
        );
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].contains("src/a.rs:2: a -> c (crate::c::g)"),
            "{}",
            p[0]
        );
        // Child to parent needs a listing.
        let p = problems(
            &d,
            &[
                ("b.rs", ""),
                ("a.rs", ""),
                ("c.rs", ""),
                ("http/mod.rs", "pub mod tencent;"),
                ("http/tencent/mod.rs", "use super::Y;\n"),
            ],
        );
        assert!(p
            .iter()
            .any(|p| p.contains("src/http/tencent/mod.rs:1: http::tencent -> http")));
    }

    #[test]
    fn may_import_of_a_module_allows_its_sub_entries() {
        let d = doc(&[
            "| `a` | | `http` | — |",
            "| `http` | | — | — |",
            "| `http::tencent` | | — | — |",
        ]);
        let fs = [
            ("a.rs", "use crate::http::tencent::actions::keys::K;\n"),
            ("http/mod.rs", ""),
            ("http/tencent.rs", ""),
            ("http/tencent/actions/keys.rs", ""),
        ];
        assert!(problems(&d, &fs).is_empty(), "{:#?}", problems(&d, &fs));
        // Longest prefix: the deep file belongs to `http::tencent`, the target too.
        assert_eq!(edges(&d, &fs), pairs(&[("a", "http::tencent")]));
    }

    #[test]
    fn cycle_fires_even_when_each_edge_is_allowed() {
        let d = doc(&[
            "| `a` | | `b` | — |",
            "| `b` | | `a` | — |",
            "| `c` | | `a` | — |",
        ]);
        let p = problems(
            &d,
            &[
                ("a.rs", "use crate::b::B;\n"),
                ("b/mod.rs", "\n\nfn f() { let _ = crate::a::A; }\n"),
                ("c.rs", "use crate::a::A;\n"),
            ],
        );
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("cycle: a -> b -> a"), "{}", p[0]);
        assert!(
            p[0].contains("src/a.rs:1: a -> b (crate::b::B)"),
            "{}",
            p[0]
        );
        assert!(
            p[0].contains("src/b/mod.rs:3: b -> a (crate::a::A)"),
            "{}",
            p[0]
        );
        // A longer circle is named with all its members.
        let d = doc(&[
            "| `a` | | `b` | — |",
            "| `b` | | `c` | — |",
            "| `c` | | `a` | — |",
        ]);
        let p = problems(
            &d,
            &[
                ("a.rs", "use crate::b::B;"),
                ("b.rs", "use crate::c::C;"),
                ("c.rs", "use crate::a::A;"),
            ],
        );
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].contains("entries a, b, c import each other"),
            "{}",
            p[0]
        );
        assert!(p[0].contains("cycle: a -> b -> c -> a"), "{}", p[0]);
        // Parent -> child edges count for cycles.
        let d = doc(&["| `n` | | — | — |", "| `n::w` | | `n` | — |"]);
        let p = problems(
            &d,
            &[
                ("n.rs", "mod w;\nuse w::helper;\n"),
                ("n/w.rs", "use super::Node;\n"),
            ],
        );
        assert!(
            p.iter().any(|p| p.contains("cycle: n -> n::w -> n")),
            "{p:#?}"
        );
    }

    #[test]
    fn never_uses_crate_fires() {
        let d = doc(&["| `registry` | | — | `axum`, `serde_json`, `reqwest`, `tokio` |"]);
        let p = problems(
            &d,
            &[(
                "registry/mod.rs",
                "use axum::Router;\n\
                 fn f() { let v = serde_json::json!({}); }\n\
                 use ::reqwest;\n\
                 use tokio;\n\
                 // axum::x in a comment\n\
                 const S: &str = \"serde_json::to_string\";\n\
                 fn g(x: Foo) { x.axum::<u8>(); other::tokio::spawn(); }\n",
            )],
        );
        assert_eq!(p.len(), 1, "{p:#?}");
        let p = &p[0];
        assert!(
            p.contains("src/registry/mod.rs:1: registry uses `axum`"),
            "{p}"
        );
        assert!(
            p.contains("src/registry/mod.rs:2: registry uses `serde_json`"),
            "{p}"
        );
        assert!(
            p.contains("src/registry/mod.rs:3: registry uses `reqwest`"),
            "{p}"
        );
        assert!(
            p.contains("src/registry/mod.rs:4: registry uses `tokio`"),
            "{p}"
        );
        assert_eq!(p.matches("uses `").count(), 4, "{p}");
    }

    #[test]
    fn orphan_file_fires() {
        let d = doc(&["| `a` | | — | — |"]);
        let p = problems(
            &d,
            &[
                ("lib.rs", "pub mod a; pub mod b;"),
                ("a.rs", ""),
                ("b/c.rs", ""),
                ("main.rs", ""),
            ],
        );
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("files in no module-map entry"), "{}", p[0]);
        assert!(p[0].contains("src/b/c.rs (module `b::c`)"), "{}", p[0]);
    }

    #[test]
    fn stale_entry_fires() {
        let d = doc(&[
            "| `a` | | — | — |",
            "| `gone` | | — | — |",
            "| `a::moved` | | — | — |",
        ]);
        let p = problems(&d, &[("a.rs", "")]);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("stale"), "{}", p[0]);
        assert!(
            p[0].contains("`gone`") && p[0].contains("`a::moved`"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn brace_groups_are_expanded_recursively() {
        let d = doc(&[
            "| `x` | | — | — |",
            "| `a::b` | | — | — |",
            "| `a::c` | | — | — |",
            "| `d` | | — | — |",
            "| `e` | | — | — |",
        ]);
        let fs = [
            (
                "x.rs",
                "use crate::{\n    a::{b::{self, T}, c as cc},\n    d::{*},\n};\npub use crate::e::E;\n",
            ),
            ("a/b.rs", ""),
            ("a/c.rs", ""),
            ("d.rs", ""),
            ("e.rs", ""),
        ];
        let e = edges(&d, &fs);
        assert_eq!(
            e,
            pairs(&[
                ("x", "a::b"),
                ("x", "a::b"),
                ("x", "a::c"),
                ("x", "d"),
                ("x", "e")
            ])
        );
        let p = problems(&d, &fs);
        assert_eq!(p.len(), 1, "{p:#?}");
        for line in [
            "src/x.rs:2: x -> a::b (crate::a::b)",
            "src/x.rs:2: x -> a::b (crate::a::b::T)",
            "src/x.rs:2: x -> a::c (crate::a::c)",
            "src/x.rs:3: x -> d (crate::d)",
            "src/x.rs:5: x -> e (crate::e::E)",
        ] {
            assert!(p[0].contains(line), "missing {line} in {}", p[0]);
        }
    }

    #[test]
    fn super_and_self_are_resolved_relative_to_the_file() {
        let d = doc(&[
            "| `a` | | — | — |",
            "| `a::c` | | — | — |",
            "| `b` | | — | — |",
            "| `t` | | — | — |",
            "| `t::inner` | | — | — |",
        ]);
        let fs = [
            // In a/mod.rs, `super` is the crate root.
            ("a/mod.rs", "use super::b::B;\n"),
            // In a/c.rs, `super` is `a`; `super::super` the root.
            (
                "a/c.rs",
                "use super::A;\nfn f() { super::super::b::g(); }\n",
            ),
            ("b.rs", "fn f() { self::h(); }\n"),
            // Inside an inline module, `super` is the file's module.
            (
                "t.rs",
                "mod inner {\n    use super::super::b::X;\n}\nuse self::x::Y;\n",
            ),
            ("t/inner/deep.rs", ""),
        ];
        assert_eq!(
            edges(&d, &fs),
            pairs(&[("a", "b"), ("a::c", "a"), ("a::c", "b"), ("t", "b")])
        );
        let p = problems(&d, &fs).join("\n");
        assert!(p.contains("src/a/mod.rs:1: a -> b (super::b::B)"), "{p}");
        assert!(p.contains("src/a/c.rs:1: a::c -> a (super::A)"), "{p}");
        assert!(
            p.contains("src/a/c.rs:2: a::c -> b (super::super::b::g)"),
            "{p}"
        );
        assert!(p.contains("src/t.rs:2: t -> b (super::super::b::X)"), "{p}");
    }

    #[test]
    fn root_reexports_resolve_and_unknown_root_paths_fail() {
        let d = doc(&["| `a` | | `config` | — |", "| `config` | | — | — |"]);
        let fs = [
            (
                "lib.rs",
                "pub mod a;\npub mod config;\npub use config::NodeConfig;\n",
            ),
            ("a.rs", "use crate::NodeConfig;\nuse crate::Missing;\n"),
            ("config.rs", ""),
        ];
        assert_eq!(edges(&d, &fs), pairs(&[("a", "config")]));
        let p = problems(&d, &fs).join("\n");
        assert!(
            p.contains("src/a.rs:2: a -> `Missing` (crate::Missing) is in no"),
            "{p}"
        );
    }

    #[test]
    fn comments_and_strings_are_ignored() {
        let d = doc(&["| `a` | | — | `axum` |", "| `b` | | — | — |"]);
        let src = r####"
//! Module doc mentioning crate::b::X and axum::Router.
/// Item doc: use crate::b;
// use crate::b::Y;
/* block crate::b::Z /* nested crate::b */ still comment axum::x */
const S: &str = "use crate::b::W; axum::Router";
const R: &str = r#"crate::b::"quoted" axum::r"#;
const B: &[u8] = b"crate::b";
const C: char = '"';
const Q: char = '\'';
fn f<'a>(x: &'a str) -> &'a str { 'outer: loop { break 'outer; } x }
#[doc = "crate::b::V"]
pub struct Z;
"####;
        let fs = [("a.rs", src), ("b.rs", "")];
        assert!(edges(&d, &fs).is_empty(), "{:?}", edges(&d, &fs));
        assert!(problems(&d, &fs).is_empty(), "{:#?}", problems(&d, &fs));
        // And the same line without the comment is caught, on the right line.
        let fs = [
            (
                "a.rs",
                "// x\n/* y\n */ const S: &str = \"a\nb\"; use crate::b::T;\n",
            ),
            ("b.rs", ""),
        ];
        let p = problems(&d, &fs).join("\n");
        assert!(p.contains("src/a.rs:4: a -> b (crate::b::T)"), "{p}");
    }

    #[test]
    fn test_code_is_ignored() {
        let d = doc(&[
            "| `a` | | — | `tokio` |",
            "| `b` | | — | — |",
            "| `r` | | — | — |",
        ]);
        let fs = [
            (
                "a.rs",
                "pub fn f() {}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::b::X;\n    \
                 #[tokio::test]\n    async fn t() { crate::b::g(); }\n}\n",
            ),
            (
                "b.rs",
                "#[cfg(test)]\n#[allow(dead_code)]\nfn helper() { crate::a::f(); }\n\
                 #[cfg(test)]\nuse crate::a::f;\npub fn g() {}\n",
            ),
            // An out-of-line test module and a `tests` module file.
            ("r/mod.rs", "#[cfg(test)]\nmod checks;\n"),
            ("r/checks.rs", "use crate::b::X;\n"),
            ("r/tests.rs", "use crate::a::f;\n"),
            ("r/sub/mod.rs", "#![cfg(test)]\nuse crate::b::X;\n"),
        ];
        assert!(problems(&d, &fs).is_empty(), "{:#?}", problems(&d, &fs));
        // Code after a test block is still checked.
        let fs = [
            (
                "a.rs",
                "#[cfg(test)]\nmod tests {\n    fn x() { if true { } }\n}\nuse crate::b::Y;\n",
            ),
            ("b.rs", ""),
            ("r.rs", ""),
        ];
        let p = problems(&d, &fs).join("\n");
        assert!(p.contains("src/a.rs:5: a -> b (crate::b::Y)"), "{p}");
    }

    #[test]
    fn inline_paths_and_child_modules_count() {
        let d = doc(&[
            "| `n` | | — | — |",
            "| `n::writes` | | — | — |",
            "| `m` | | — | — |",
        ]);
        let fs = [
            (
                "n.rs",
                "mod writes;\npub use writes::W;\nfn f() { let t = crate::m::now_ms(); \
                 crate::m::g::<u8>(); }\n",
            ),
            ("n/writes.rs", ""),
            ("m.rs", ""),
        ];
        assert_eq!(
            edges(&d, &fs),
            pairs(&[("n", "n::writes"), ("n", "m"), ("n", "m")])
        );
        let p = problems(&d, &fs).join("\n");
        assert!(p.contains("src/n.rs:3: n -> m (crate::m::now_ms)"), "{p}");
        assert!(p.contains("src/n.rs:3: n -> m (crate::m::g)"), "{p}");
        assert!(!p.contains("n -> n::writes"), "{p}");
    }

    #[test]
    fn planted_bugs_in_the_registry_fire() {
        let d = doc(&["| `registry` | | — | — |", "| `raft` | | — | — |"]);
        let p = problems(
            &d,
            &[
                (
                    "registry/dedup.rs",
                    "fn f() {\n    #[cfg(feature = \"planted-bugs\")]\n    g();\n}\n",
                ),
                (
                    "raft/mod.rs",
                    "#[cfg(feature = \"planted-bugs\")]\nfn plant() {}\n",
                ),
            ],
        );
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("src/registry/dedup.rs:2"), "{}", p[0]);
        assert!(!p[0].contains("raft"), "{}", p[0]);
    }
}
