//! The module structure of `src/graph/`: which of its modules import which. The modules form
//! a DAG, layered types → emitter → ops → builder → tensor → jvp → model, with emit (the walk
//! over a finished graph) above builder and ops; an import against the layering fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module and the modules it may import (directly).
const ALLOWED: [(&str, &[&str]); 8] = [
    ("types", &[]),
    ("emitter", &["types"]),
    ("ops", &["emitter", "types"]),
    ("builder", &["ops", "types"]),
    ("tensor", &["builder", "ops", "types"]),
    ("emit", &["builder", "emitter", "ops", "types"]),
    ("jvp", &["builder", "ops", "tensor", "types"]),
    ("model", &["builder", "jvp", "tensor", "types"]),
];

/// The module an item re-exported by `graph/mod.rs` comes from (`Graph` -> `builder`).
fn reexports(dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join("mod.rs")).unwrap();
    let mut from = BTreeMap::new();
    for line in text.lines().filter_map(|l| l.trim().strip_prefix("pub use ")) {
        let (module, names) = line.trim_end_matches(';').split_once("::").unwrap();
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            from.insert(name.trim().to_string(), module.to_string());
        }
    }
    from
}

/// `module -> modules it names` (`crate::graph::<module>` paths, and items re-exported by
/// `graph/mod.rs` counted as their module's; a file of `ops/` is `ops`).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/graph");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().is_dir() {
            files.extend(std::fs::read_dir(e.path()).unwrap().flatten().map(|f| f.path()));
        } else {
            files.push(e.path());
        }
    }
    let reexported = reexports(&dir);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|x| x == "rs")) {
        let rel = file.strip_prefix(&dir).unwrap();
        let from = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let from = from.trim_end_matches(".rs").to_string();
        if from == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (i, _) in text.match_indices("crate::graph::") {
            let rest = &text[i + "crate::graph::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let module = reexported.get(&name).cloned().unwrap_or(name);
            if ALLOWED.iter().any(|(m, _)| *m == module) && module != from {
                edges.entry(from.clone()).or_default().insert(module);
            }
        }
    }
    edges
}

fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            todo.extend(edges.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn graph_modules_form_a_dag_in_layers() {
    let edges = imports();
    assert!(edges.len() >= 6, "the scan found too few modules: {edges:?}");
    let on_cycle: BTreeSet<(String, String)> = edges
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from.clone(), to.clone())))
        .filter(|(from, to)| reaches(&edges, to, from))
        .collect();
    assert!(on_cycle.is_empty(), "import cycle edges in src/graph: {on_cycle:?}");
    for (from, tos) in &edges {
        let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| m == from) else {
            panic!("module {from} is not in ALLOWED: place it in the layering");
        };
        for to in tos {
            assert!(
                allowed.contains(&to.as_str()),
                "{from} imports {to}, against the layering {ALLOWED:?}"
            );
        }
    }
}
