//! Static checks of the dashboard's files in `dashboard/` (no browser, no JavaScript engine):
//! the three language files define the same keys; the ES-module imports (`import … from`,
//! `export … from`, `import('…')` with a literal) name files that exist, form no cycle and only
//! go one way (`app.js` → `page-*.js` → core modules); and every file of the folder is embedded
//! by the asset table of `src/dashboard.rs`, so a new module cannot be forgotten.
//!
//! The JavaScript is read by a small tokenizer that knows comments, the two string quotes,
//! template literals (with `${…}` code inside) and regular-expression literals, so an `import`
//! inside a comment, a string or a regex is not taken for one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn dashboard_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard")
}

fn asset_table_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("dashboard.rs")
}

fn read(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

/// Names of the files in the dashboard folder ending in `ext`, sorted.
fn files_with(ext: &str) -> Vec<String> {
    let dir = dashboard_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(ext))
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------- tokenizer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Identifier or keyword.
    Ident(String),
    /// `'…'` or `"…"`, unescaped.
    Str(String),
    /// A piece of a template literal (its text does not matter here).
    Template,
    /// A regular-expression literal.
    Regex,
    /// A number.
    Num,
    /// Any other character (operators are split into single characters).
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Keywords after which a `/` starts a regular expression rather than a division.
const BEFORE_REGEX: &[&str] = &[
    "return",
    "typeof",
    "instanceof",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "case",
    "do",
    "else",
    "yield",
    "await",
];

fn is_ident_start(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_alphanumeric() || c == '\u{200c}' || c == '\u{200d}'
}

/// Whether a `/` after these tokens begins a regular expression.
fn regex_allowed(tokens: &[Token]) -> bool {
    let n = tokens.len();
    let Some(last) = tokens.last() else {
        return true;
    };
    match &last.tok {
        Tok::Ident(w) => BEFORE_REGEX.contains(&w.as_str()),
        Tok::Punct(c) => {
            // `a++ / b`, `a-- / b`: a division.
            if (*c == '+' || *c == '-') && n >= 2 && tokens[n - 2].tok == Tok::Punct(*c) {
                return false;
            }
            !matches!(c, ')' | ']')
        }
        Tok::Str(_) | Tok::Template | Tok::Regex | Tok::Num => false,
    }
}

/// Splits JavaScript source into tokens; comments and whitespace are dropped.
fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let s: Vec<char> = src.chars().collect();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    let mut line = 1;
    // One entry per open `{`: true when it is a template's `${`, whose `}` resumes the template.
    let mut braces: Vec<bool> = Vec::new();
    let at = |k: usize| s.get(k).copied();
    // Scans template text from `i` up to its closing backtick or the next `${`.
    let template =
        |i: &mut usize, line: &mut usize, braces: &mut Vec<bool>| -> Result<(), String> {
            let start = *line;
            loop {
                match s.get(*i).copied() {
                    None => return Err(format!("line {start}: unterminated template literal")),
                    Some('\\') => *i += 2,
                    Some('`') => {
                        *i += 1;
                        return Ok(());
                    }
                    Some('$') if s.get(*i + 1) == Some(&'{') => {
                        *i += 2;
                        braces.push(true);
                        return Ok(());
                    }
                    Some(c) => {
                        if c == '\n' {
                            *line += 1;
                        }
                        *i += 1;
                    }
                }
            }
        };
    while let Some(c) = at(i) {
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == Some('/') {
            while let Some(d) = at(i) {
                if d == '\n' {
                    break;
                }
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            let start = line;
            i += 2;
            loop {
                match at(i) {
                    None => return Err(format!("line {start}: unterminated comment")),
                    Some('*') if at(i + 1) == Some('/') => {
                        i += 2;
                        break;
                    }
                    Some(d) => {
                        if d == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
        } else if c == '\'' || c == '"' {
            let start = line;
            let mut value = String::new();
            i += 1;
            loop {
                match at(i) {
                    None | Some('\n') => return Err(format!("line {start}: unterminated string")),
                    Some('\\') => {
                        let (ch, used) = unescape(&s, i + 1);
                        if let Some(ch) = ch {
                            value.push(ch);
                        }
                        if at(i + 1) == Some('\n') {
                            line += 1;
                        }
                        i += 1 + used;
                    }
                    Some(d) if d == c => {
                        i += 1;
                        break;
                    }
                    Some(d) => {
                        value.push(d);
                        i += 1;
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(value),
                line: start,
            });
        } else if c == '`' {
            let start = line;
            i += 1;
            template(&mut i, &mut line, &mut braces)?;
            out.push(Token {
                tok: Tok::Template,
                line: start,
            });
        } else if c == '/' && regex_allowed(&out) {
            let start = line;
            let mut class = false;
            i += 1;
            loop {
                match at(i) {
                    None | Some('\n') => {
                        return Err(format!("line {start}: unterminated regular expression"))
                    }
                    Some('\\') => i += 2,
                    Some('[') => {
                        class = true;
                        i += 1;
                    }
                    Some(']') => {
                        class = false;
                        i += 1;
                    }
                    Some('/') if !class => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            while at(i).is_some_and(is_ident_char) {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Regex,
                line: start,
            });
        } else if c.is_ascii_digit() || (c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while at(i).is_some_and(|d| is_ident_char(d) || d == '.') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Num,
                line,
            });
        } else if is_ident_start(c) || c == '\\' {
            let mut word = String::new();
            while let Some(d) = at(i) {
                if !(is_ident_char(d) || d == '\\') {
                    break;
                }
                word.push(d);
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(word),
                line,
            });
        } else if c == '{' {
            braces.push(false);
            out.push(Token {
                tok: Tok::Punct('{'),
                line,
            });
            i += 1;
        } else if c == '}' {
            i += 1;
            if braces.pop() == Some(true) {
                // The end of a `${…}`: back into the template's text.
                template(&mut i, &mut line, &mut braces)?;
                out.push(Token {
                    tok: Tok::Template,
                    line,
                });
            } else {
                out.push(Token {
                    tok: Tok::Punct('}'),
                    line,
                });
            }
        } else {
            out.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        }
    }
    Ok(out)
}

/// The character of the escape sequence starting at `s[k]` (after the backslash), and how many
/// characters it spans. A line continuation gives no character.
fn unescape(s: &[char], k: usize) -> (Option<char>, usize) {
    let hex = |from: usize, len: usize| -> Option<char> {
        let text: String = s.get(from..from + len)?.iter().collect();
        char::from_u32(u32::from_str_radix(&text, 16).ok()?)
    };
    match s.get(k).copied() {
        None => (None, 0),
        Some('n') => (Some('\n'), 1),
        Some('t') => (Some('\t'), 1),
        Some('r') => (Some('\r'), 1),
        Some('0') => (Some('\0'), 1),
        Some('\n') => (None, 1),
        Some('x') => (hex(k + 1, 2), 3),
        Some('u') if s.get(k + 1) == Some(&'{') => {
            let end = (k + 2..s.len()).find(|&j| s[j] == '}').unwrap_or(s.len());
            (hex(k + 2, end - (k + 2)), end + 1 - k)
        }
        Some('u') => (hex(k + 1, 4), 5),
        Some(c) => (Some(c), 1),
    }
}

// ---------------------------------------------------------------- imports

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ImportKind {
    /// `import … from '…'` or `import '…'`.
    Static,
    /// `export … from '…'`.
    ReExport,
    /// `import('…')` with a string literal.
    Dynamic,
}

#[derive(Debug, Clone)]
struct Import {
    spec: String,
    line: usize,
    kind: ImportKind,
}

fn ident(t: Option<&Token>, word: &str) -> bool {
    matches!(t.map(|t| &t.tok), Some(Tok::Ident(w)) if w == word)
}

fn punct(t: Option<&Token>, c: char) -> bool {
    matches!(t.map(|t| &t.tok), Some(Tok::Punct(p)) if *p == c)
}

fn string(t: Option<&Token>) -> Option<String> {
    match t.map(|t| &t.tok) {
        Some(Tok::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Every module a source file imports. Dynamic imports of a computed name (`import(\`./x-${a}.js\`)`)
/// cannot be followed and are left out.
fn imports(src: &str) -> Result<Vec<Import>, String> {
    let toks = tokenize(src)?;
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        // `x.import`, `{ import: 1 }`: a property, not a statement.
        let after_dot = i > 0 && punct(toks.get(i - 1), '.');
        if after_dot || punct(toks.get(i + 1), ':') {
            continue;
        }
        if ident(Some(t), "import") {
            let next = toks.get(i + 1);
            if let Some(spec) = string(next) {
                out.push(Import {
                    spec,
                    line: t.line,
                    kind: ImportKind::Static,
                });
            } else if punct(next, '(') {
                if let Some(spec) = string(toks.get(i + 2)) {
                    if punct(toks.get(i + 3), ')') || punct(toks.get(i + 3), ',') {
                        out.push(Import {
                            spec,
                            line: t.line,
                            kind: ImportKind::Dynamic,
                        });
                    }
                }
            } else if punct(next, '.') {
                // import.meta
            } else {
                // import a, {b as c} from '…' / import * as n from '…': find `from '…'`.
                let mut depth = 0usize;
                let mut found = None;
                for j in i + 1..toks.len() {
                    let tj = toks.get(j);
                    if punct(tj, '{') {
                        depth += 1;
                    } else if punct(tj, '}') {
                        depth = depth.saturating_sub(1);
                    } else if depth == 0 && ident(tj, "from") {
                        found = string(toks.get(j + 1));
                        break;
                    } else if depth == 0
                        && (punct(tj, ';') || ident(tj, "import") || ident(tj, "export"))
                    {
                        break;
                    }
                }
                match found {
                    Some(spec) => out.push(Import {
                        spec,
                        line: t.line,
                        kind: ImportKind::Static,
                    }),
                    None => {
                        return Err(format!(
                            "line {}: an import statement without `from '…'`",
                            t.line
                        ))
                    }
                }
            }
        } else if ident(Some(t), "export") {
            let next = toks.get(i + 1);
            let mut j = i + 1;
            if punct(next, '*') {
                // export * from '…' / export * as n from '…'
                j += 1;
                if ident(toks.get(j), "as") {
                    j += 2;
                }
            } else if punct(next, '{') {
                while j < toks.len() && !punct(toks.get(j), '}') {
                    j += 1;
                }
                j += 1;
            } else {
                continue;
            }
            if ident(toks.get(j), "from") {
                match string(toks.get(j + 1)) {
                    Some(spec) => out.push(Import {
                        spec,
                        line: t.line,
                        kind: ImportKind::ReExport,
                    }),
                    None => return Err(format!("line {}: `export … from` without a name", t.line)),
                }
            }
        }
    }
    Ok(out)
}

/// The dashboard file an import names (`./x.js`, or `/assets/x.js` as the gateway serves it).
fn resolve(spec: &str) -> Result<String, String> {
    let name = spec
        .strip_prefix("./")
        .or_else(|| spec.strip_prefix("/assets/"))
        .ok_or_else(|| {
            format!(
                "{spec:?} is not a dashboard file (use './name.js'; nothing comes from elsewhere)"
            )
        })?;
    if name.is_empty() || name.contains('/') || name.contains('\\') {
        return Err(format!(
            "{spec:?}: the gateway serves only the folder's own files, not sub-paths"
        ));
    }
    Ok(name.to_string())
}

/// Module graph of the folder: file -> [(imported file, line, kind)], and every problem found.
type Graph = BTreeMap<String, Vec<(String, usize, ImportKind)>>;

fn module_graph() -> (Graph, Vec<String>) {
    let dir = dashboard_dir();
    let mut graph = Graph::new();
    let mut problems = Vec::new();
    for file in files_with(".js") {
        let src = read(&dir.join(&file));
        let edges = graph.entry(file.clone()).or_default();
        match imports(&src) {
            Err(e) => problems.push(format!("{file}: cannot read its imports: {e}")),
            Ok(list) => {
                for imp in list {
                    match resolve(&imp.spec) {
                        Err(e) => problems.push(format!("{file}:{}: {e}", imp.line)),
                        Ok(target) => {
                            if !dir.join(&target).is_file() {
                                problems.push(format!(
                                    "{file}:{}: imports {:?}, but there is no {target}",
                                    imp.line, imp.spec
                                ));
                            }
                            edges.push((target, imp.line, imp.kind));
                        }
                    }
                }
            }
        }
    }
    (graph, problems)
}

/// Every elementary cycle reachable by depth-first search, as `a.js -> b.js -> a.js`.
fn cycles(graph: &Graph) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        found: &mut BTreeSet<String>,
    ) {
        marks.insert(node.to_string(), Mark::OnStack);
        stack.push(node.to_string());
        for (next, line, kind) in graph.get(node).map(Vec::as_slice).unwrap_or(&[]) {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::OnStack => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut path: Vec<String> = stack[from..].to_vec();
                    path.push(next.clone());
                    found.insert(format!(
                        "{} (closed by {node}:{line}, {kind:?} import)",
                        path.join(" -> ")
                    ));
                }
                Mark::New if graph.contains_key(next) => visit(next, graph, marks, stack, found),
                _ => {}
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
    }
    let mut marks: BTreeMap<String, Mark> = BTreeMap::new();
    let mut found = BTreeSet::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            visit(node, graph, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    // Shortest first: the two modules that import each other directly say the most.
    let mut found: Vec<String> = found.into_iter().collect();
    found.sort_by_key(|c| c.matches(" -> ").count());
    found
}

fn is_page(file: &str) -> bool {
    file.starts_with("page-")
}

// ---------------------------------------------------------------- language files

/// Keys of the object after `export default` (top level only), and keys given twice.
fn lang_keys(src: &str) -> Result<(BTreeSet<String>, Vec<String>), String> {
    let toks = tokenize(src)?;
    let start = (0..toks.len())
        .find(|&i| {
            ident(toks.get(i), "export")
                && ident(toks.get(i + 1), "default")
                && punct(toks.get(i + 2), '{')
        })
        .ok_or("no `export default {`")?;
    let mut keys = BTreeSet::new();
    let mut twice = Vec::new();
    let mut depth = 0usize;
    for i in start + 2..toks.len() {
        let t = toks.get(i);
        if punct(t, '{') || punct(t, '[') || punct(t, '(') {
            depth += 1;
        } else if punct(t, '}') || punct(t, ']') || punct(t, ')') {
            depth -= 1;
            if depth == 0 {
                return Ok((keys, twice));
            }
        } else if depth == 1
            && (punct(toks.get(i - 1), '{') || punct(toks.get(i - 1), ','))
            && punct(toks.get(i + 1), ':')
        {
            let key = match t.map(|t| &t.tok) {
                Some(Tok::Str(s) | Tok::Ident(s)) => s.clone(),
                _ => continue,
            };
            if !keys.insert(key.clone()) {
                twice.push(key);
            }
        }
    }
    Err("the `export default {` object is not closed".into())
}

// ---------------------------------------------------------------- asset table

/// `(name, included file)` of every `Asset { … }` in the asset table.
fn asset_entries() -> Vec<(String, String)> {
    let src = read(&asset_table_file());
    let Some(table) = src.find("ASSETS: &[Asset]").map(|at| &src[at..]) else {
        panic!("no ASSETS table in {}", asset_table_file().display());
    };
    let table = &table[..table.find("\n];").unwrap_or(table.len())];
    let quoted_after = |text: &str, marker: &str| -> Option<String> {
        let rest = &text[text.find(marker)? + marker.len()..];
        let rest = &rest[rest.find('"')? + 1..];
        Some(rest[..rest.find('"')?].to_string())
    };
    table
        .split("Asset {")
        .skip(1)
        .map(|entry| {
            (
                quoted_after(entry, "name:").unwrap_or_default(),
                quoted_after(entry, "include_bytes!(").unwrap_or_default(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- tests

#[test]
fn language_files_define_the_same_keys() {
    let dir = dashboard_dir();
    let files = ["lang-ru.js", "lang-kk.js", "lang-en.js"];
    let mut sets = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        match lang_keys(&read(&dir.join(f))) {
            Ok((keys, twice)) => {
                if !twice.is_empty() {
                    problems.push(format!("{f} gives these keys twice: {}", twice.join(", ")));
                }
                sets.push((f, keys));
            }
            Err(e) => problems.push(format!("{f}: {e}")),
        }
    }
    let all: BTreeSet<&String> = sets.iter().flat_map(|(_, k)| k.iter()).collect();
    assert!(
        all.len() > 50,
        "only {} keys read from the language files: the parser missed them",
        all.len()
    );
    for (f, keys) in &sets {
        let missing: Vec<&str> = all
            .iter()
            .filter(|k| !keys.contains(k.as_str()))
            .map(|k| k.as_str())
            .collect();
        if !missing.is_empty() {
            let others: Vec<&str> = sets
                .iter()
                .filter(|(g, _)| g != f)
                .map(|(g, _)| *g)
                .collect();
            problems.push(format!(
                "{f} lacks {} key(s) that {} define: {}",
                missing.len(),
                others.join(" / "),
                missing.join(", ")
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_import_names_an_existing_dashboard_file() {
    let (graph, problems) = module_graph();
    assert!(graph.contains_key("app.js"), "no app.js in {graph:?}");
    assert!(
        graph.get("app.js").is_some_and(|e| !e.is_empty()),
        "app.js imports nothing: the parser missed its imports"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn module_imports_form_no_cycle() {
    let (graph, _) = module_graph();
    let found = cycles(&graph);
    let more = found.len().saturating_sub(5);
    assert!(
        found.is_empty(),
        "the dashboard's modules import each other in a circle:\n{}{}",
        found.iter().take(5).cloned().collect::<Vec<_>>().join("\n"),
        if more > 0 {
            format!("\n… and {more} more through the same imports")
        } else {
            String::new()
        }
    );
}

#[test]
fn imports_only_go_from_app_to_pages_to_core() {
    let (graph, _) = module_graph();
    let mut problems = Vec::new();
    for (file, edges) in &graph {
        for (target, line, kind) in edges {
            let bad = if target == "app.js" {
                Some("app.js is the entry: nothing imports it")
            } else if is_page(target) && file != "app.js" {
                Some("only app.js imports pages")
            } else {
                None
            };
            if let Some(why) = bad {
                problems.push(format!("{file}:{line} imports {target} ({kind:?}): {why}"));
            }
        }
    }
    assert!(
        graph.keys().any(|f| is_page(f)),
        "no page-*.js module found"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_file_of_the_folder_is_in_the_asset_table() {
    let entries = asset_entries();
    let mut problems = Vec::new();
    let mut files = files_with(".js");
    files.extend(files_with(".html"));
    files.extend(files_with(".css"));
    assert!(files.len() > 3, "dashboard folder looks empty: {files:?}");
    for f in &files {
        let expected = format!("../dashboard/{f}");
        if let Some((_, p)) = entries.iter().find(|(n, p)| n == f && *p != expected) {
            problems.push(format!(
                "{f} is embedded from {p:?}, not from {expected:?} (the file beside the crate)"
            ));
        } else if !entries.iter().any(|(n, p)| n == f && *p == expected) {
            problems.push(format!(
                "{f} is not embedded: add `Asset {{ name: \"{f}\", …, body: include_bytes!(\"{expected}\") }}` to ASSETS in src/dashboard.rs"
            ));
        }
    }
    let dir = dashboard_dir();
    for (name, path) in &entries {
        if !path.ends_with(&format!("/{name}")) {
            problems.push(format!(
                "asset {name:?} embeds {path:?}, a file of another name"
            ));
        }
        if !dir.join(name).is_file() {
            problems.push(format!("asset {name:?} has no file in dashboard/"));
        }
    }
    let mut seen = BTreeSet::new();
    for (name, _) in &entries {
        if !seen.insert(name) {
            problems.push(format!("asset {name:?} is listed twice"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The parser itself, on every import form and on the traps around them.
#[test]
fn the_import_parser_reads_every_form_and_skips_look_alikes() {
    let src = r#"
// import nope from './comment.js';
/* import nope from './block-comment.js'; */
import a from './a.js';
import {
  b,
  c as d,
} from "./b.js";
import * as e from './c.js'
import './d.js';
import f, { g } from "./e.js";
export { h } from './f.js';
export * from "./g.js";
export * as i from './h.js';
export const j = 'import x from "./string.js"';
export function k() { return import('./i.js'); }
const re = /["'`]import ('.\/regex.js')/g;
const tpl = `import x from './template.js' ${ `nested ${ 1 + 2 }` } import('./tpl.js')`;
const m = import(`./lang-${j}.js`);
const n = import.meta.url;
const o = 4 / 2 / 1; const p = x++ / 2; // import('./after-division.js')
const q = { import: 1 }.import;
"#;
    let found = match imports(src) {
        Ok(list) => list,
        Err(e) => panic!("{e}"),
    };
    let got: Vec<(String, ImportKind)> = found.iter().map(|i| (i.spec.clone(), i.kind)).collect();
    let want: Vec<(String, ImportKind)> = [
        ("./a.js", ImportKind::Static),
        ("./b.js", ImportKind::Static),
        ("./c.js", ImportKind::Static),
        ("./d.js", ImportKind::Static),
        ("./e.js", ImportKind::Static),
        ("./f.js", ImportKind::ReExport),
        ("./g.js", ImportKind::ReExport),
        ("./h.js", ImportKind::ReExport),
        ("./i.js", ImportKind::Dynamic),
    ]
    .iter()
    .map(|(s, k)| (s.to_string(), *k))
    .collect();
    assert_eq!(got, want);
    let b = found.iter().find(|i| i.spec == "./b.js").map(|i| i.line);
    assert_eq!(b, Some(5), "line of a multi-line import is where it starts");

    assert_eq!(resolve("./x.js").ok().as_deref(), Some("x.js"));
    assert_eq!(resolve("/assets/x.js").ok().as_deref(), Some("x.js"));
    assert!(resolve("x.js").is_err());
    assert!(resolve("../x.js").is_err());
    assert!(resolve("./sub/x.js").is_err());

    let mut g = Graph::new();
    g.insert("a.js".into(), vec![("b.js".into(), 1, ImportKind::Static)]);
    g.insert(
        "b.js".into(),
        vec![("c.js".into(), 2, ImportKind::ReExport)],
    );
    g.insert("c.js".into(), vec![("a.js".into(), 3, ImportKind::Dynamic)]);
    g.insert("d.js".into(), vec![("a.js".into(), 4, ImportKind::Static)]);
    let c = cycles(&g);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("a.js -> b.js -> c.js -> a.js"), "{c:?}");

    let lang = "// x\nexport default {\n  \"a.b\": \"x: {y}\",\n  c: 'd',\n  \"e\": \"f\", \"a.b\": \"again\",\n};\n";
    let (keys, twice) = match lang_keys(lang) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        vec!["a.b".to_string(), "c".into(), "e".into()]
    );
    assert_eq!(twice, vec!["a.b".to_string()]);
}
