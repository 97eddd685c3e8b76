//! The engine's layers point one way (README "Layout", `actors/src/lib.rs`):
//! read from the source tree, every path a file names into another top-level
//! module (`crate::…`, or `super::…` climbing to one) goes to a layer below its
//! own; the network layer names only the model, metrics and the fault hooks; no
//! two files import each other, directly or round a longer loop; no source file
//! is longer than 500 lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules of `optimystic-actors`, lowest first; a module may use
/// those of a lower rank (several share a rank when neither uses the other).
const LAYERS: &[(&str, u32)] = &[
    ("faults", 0),
    ("metrics", 0),
    ("model", 1),
    ("storage", 2),
    ("block", 3),
    ("watch", 3),
    ("membership", 3),
    ("cluster", 4),
    ("repair", 5),
    ("coordinator", 6),
    ("net", 7),
    ("service", 8),
];

/// What `net` may name: it carries frames, whatever they mean.
const NET_USES: &[&str] = &["model", "metrics", "faults"];

fn rank(module: &str) -> u32 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| panic!("module `{module}` is not in LAYERS: give it a layer"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file below `root` (`net/swarm/mod.rs` → `[net, swarm]`).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut segs: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// The source without comments (doc links may point anywhere).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths of a `use` tree, braces expanded (`a::{b, c::{d, e}}` → `a::b`,
/// `a::c::d`, `a::c::e`; `self` in a group is the group's own path).
fn expand_use(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.trim_end_matches("::self").to_string()];
    };
    let head = tree[..open].trim_end_matches("::").trim();
    let inner = tree[open + 1..].trim_end().trim_end_matches('}');
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .flat_map(|i| {
            expand_use(i).into_iter().map(move |p| match p.as_str() {
                "self" => head.to_string(),
                _ if head.is_empty() => p,
                _ => format!("{head}::{p}"),
            })
        })
        .collect()
}

/// Every absolute module path `code` (in module `here`) names, as segments:
/// paths starting at `crate`, `self` or `super` anywhere, and in `use` items
/// also those starting at a child module of `here` (`is_file` says whether a
/// module path is a file of the tree).
fn paths_named(
    here: &[String],
    code: &str,
    is_file: &dyn Fn(&[String]) -> bool,
) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        for path in expand_use(&rest[..end]) {
            let segs: Vec<String> = path.split("::").map(|s| s.trim().to_string()).collect();
            let Some(first) = segs.first() else { continue };
            if matches!(first.as_str(), "crate" | "self" | "super") {
                continue; // found by the scan below
            }
            let child: Vec<String> = here.iter().cloned().chain(segs.iter().cloned()).collect();
            if is_file(&child[..here.len() + 1]) {
                out.push(child);
            }
        }
    }
    let code = code.replace("::{", "::{ ");
    let expanded: String = code
        .split("use ")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                return part.to_string();
            }
            match part.find(';') {
                Some(end) => {
                    let uses = expand_use(&part[..end]).join("; use ");
                    format!("use {uses}{}", &part[end..])
                }
                None => format!("use {part}"),
            }
        })
        .collect();
    let code = expanded.as_str();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b'$')) {
            i += 1;
            continue;
        }
        let start = i;
        let mut segs: Vec<&str> = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            segs.push(&code[s..j]);
            if code[j..].starts_with("::") && j + 2 < bytes.len() && ident(bytes[j + 2]) {
                j += 2;
            } else {
                break;
            }
        }
        i = j.max(start + 1);
        let mut abs: Vec<String> = match segs[0] {
            "crate" => Vec::new(),
            "self" => here.to_vec(),
            "super" => {
                let mut base = here.to_vec();
                base.pop();
                base
            }
            _ => continue,
        };
        let mut rest = &segs[1..];
        while rest.first() == Some(&"super") {
            abs.pop();
            rest = &rest[1..];
        }
        if rest.is_empty() {
            continue;
        }
        abs.extend(rest.iter().map(|s| s.to_string()));
        out.push(abs);
    }
    out
}

struct Tree {
    /// Every file and its source.
    sources: Vec<(PathBuf, String)>,
    /// Module path → source (a crate root's `lib.rs` and `main.rs` together).
    files: BTreeMap<Vec<String>, String>,
}

impl Tree {
    fn read(root: &str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
        let mut list = Vec::new();
        rust_files(&root, &mut list);
        let sources: Vec<(PathBuf, String)> = list
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(&f).unwrap();
                (f, text)
            })
            .collect();
        let mut files: BTreeMap<Vec<String>, String> = BTreeMap::new();
        for (f, text) in &sources {
            let merged = files.entry(module_of(&root, f)).or_default();
            merged.push_str(text);
            merged.push('\n');
        }
        Self { sources, files }
    }

    /// The file a path lands in: its longest prefix that is a file's module,
    /// followed through that module's `pub use` of the item named next (so a
    /// path to a re-exported item lands in the file that defines it).
    fn file_of(&self, path: &[String]) -> Option<Vec<String>> {
        self.file_of_within(path, 8)
    }

    fn file_of_within(&self, path: &[String], hops: usize) -> Option<Vec<String>> {
        let module = (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| self.files.contains_key(p))?;
        let Some(item) = path.get(module.len()) else {
            return Some(module);
        };
        let target = (hops > 0)
            .then(|| self.reexport(&module, item))
            .flatten()
            .and_then(|t| self.file_of_within(&t, hops - 1));
        Some(target.unwrap_or(module))
    }

    /// Where module `m` re-exports `item` from (`pub use a::b::item;`), absolute.
    fn reexport(&self, m: &[String], item: &str) -> Option<Vec<String>> {
        let code = code_of(self.files.get(m)?);
        let is_file = |p: &[String]| self.files.contains_key(p);
        for part in code.split("pub use ").skip(1) {
            let Some(end) = part.find(';') else { continue };
            let stmt = format!("use {};", &part[..end]);
            for p in paths_named(m, &stmt, &is_file) {
                if p.last().is_some_and(|l| l == item) && p.len() > m.len() {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Which files each file names, leaving out its own ancestors (a submodule
    /// using the module it belongs to is that module's own structure).
    fn imports(&self) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        self.files
            .iter()
            .map(|(here, text)| {
                let is_file = |p: &[String]| self.files.contains_key(p);
                let targets = paths_named(here, &code_of(text), &is_file)
                    .iter()
                    .filter_map(|p| self.file_of(p))
                    .filter(|t| t != here && !here.starts_with(t))
                    .collect();
                (here.clone(), targets)
            })
            .collect()
    }
}

/// Files that import each other, directly or round a loop (Tarjan's strongly
/// connected components of more than one file).
fn cycles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.stack.contains(&w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                comp.push(w.join("/"));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.found.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn every_engine_module_uses_only_the_layers_below_it() {
    let tree = Tree::read("actors/src");
    let mut wrong = Vec::new();
    for (here, targets) in tree.imports() {
        let Some(top) = here.first() else { continue };
        for t in targets {
            let to = &t[0];
            if to == top {
                continue;
            }
            let allowed = if top == "net" {
                NET_USES.contains(&to.as_str())
            } else {
                rank(to) < rank(top)
            };
            if !allowed {
                wrong.push(format!("{} uses {}", here.join("/"), t.join("/")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other() {
    for root in ["actors/src", "src"] {
        let tree = Tree::read(root);
        let loops = cycles(&tree.imports());
        assert!(
            loops.is_empty(),
            "{root}: files importing each other: {loops:?}"
        );
    }
}

#[test]
fn no_source_file_is_over_500_lines_and_each_says_what_it_owns() {
    for root in ["actors/src", "src"] {
        let tree = Tree::read(root);
        for (file, text) in &tree.sources {
            let name = file.display();
            let lines = text.lines().count();
            assert!(lines <= 500, "{name}: {lines} lines (at most 500)");
            assert!(
                text.trim_start().starts_with("//!"),
                "{name}: does not open with a `//!` line saying what it owns"
            );
        }
    }
}

#[test]
fn the_checker_sees_imports_cycles_and_layers() {
    let here = [
        "cluster".to_string(),
        "member".to_string(),
        "apply".to_string(),
    ];
    let code = code_of(
        "use super::super::record::X; // crate::net::Nope\nuse crate::model::{A, B};\nlet x = self::y::z;",
    );
    let files = |p: &[String]| p.len() == 4 && p[3] == "inner";
    let named = paths_named(&here, &code, &files);
    assert_eq!(
        named,
        [
            vec!["cluster", "record", "X"],
            vec!["model", "A"],
            vec!["model", "B"],
            vec!["cluster", "member", "apply", "y", "z"],
        ]
        .map(|p| p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    );
    // Grouped and child-module imports are seen too.
    let grouped = code_of("use crate::{net::NetClient, model::{self, X as Y}};\nuse inner::Z;");
    let named = paths_named(&here, &grouped, &files);
    for want in [
        vec!["net", "NetClient"],
        vec!["model"],
        vec!["model", "X"],
        vec!["cluster", "member", "apply", "inner", "Z"],
    ] {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert!(named.contains(&want), "{want:?} not in {named:?}");
    }
    let v = |s: &str| vec![s.to_string()];
    let graph: BTreeMap<_, _> = [
        (v("a"), BTreeSet::from([v("b")])),
        (v("b"), BTreeSet::from([v("c")])),
        (v("c"), BTreeSet::from([v("a")])),
        (v("d"), BTreeSet::from([v("a")])),
    ]
    .into();
    assert_eq!(cycles(&graph), [vec!["a", "b", "c"]]);
    assert!(rank("net") > rank("coordinator") && rank("model") < rank("storage"));
}
