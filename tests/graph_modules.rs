//! The module structure of `src/graph/`: which of its modules import which, and the import
//! cycles that are left. A new cycle fails this test; a cycle removed must be removed from
//! `KNOWN_CYCLE_EDGES` too, so the list only shrinks (the goal is none: `graph/` as a DAG of
//! types → IR → builder → tensor → rules → emit).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MODULES: [&str; 7] = ["builder", "emit", "jvp", "model", "ops", "tensor", "types"];

/// Import edges `from -> to` that lie on a cycle today.
const KNOWN_CYCLE_EDGES: [(&str, &str); 8] = [
    ("builder", "ops"),
    ("builder", "tensor"),
    ("emit", "builder"),
    ("emit", "ops"),
    ("ops", "emit"),
    ("ops", "tensor"),
    ("tensor", "builder"),
    ("tensor", "ops"),
];

/// `module -> modules it names` (`crate::graph::<module>` paths; a file of `ops/` is `ops`).
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
            if MODULES.contains(&name.as_str()) && name != from {
                edges.entry(from.clone()).or_default().insert(name);
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
fn graph_modules_form_no_new_import_cycle() {
    let edges = imports();
    assert!(edges.len() >= 5, "the scan found too few modules: {edges:?}");
    let on_cycle: BTreeSet<(String, String)> = edges
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from.clone(), to.clone())))
        .filter(|(from, to)| reaches(&edges, to, from))
        .collect();
    let known: BTreeSet<(String, String)> = KNOWN_CYCLE_EDGES
        .iter()
        .map(|&(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let new: Vec<_> = on_cycle.difference(&known).collect();
    assert!(
        new.is_empty(),
        "new import cycle edges in src/graph: {new:?} (all edges: {edges:?})"
    );
    let gone: Vec<_> = known.difference(&on_cycle).collect();
    assert!(
        gone.is_empty(),
        "cycle edges gone, remove them from KNOWN_CYCLE_EDGES: {gone:?}"
    );
    // Modules out of every cycle stay out: the types, forward-mode AD and the model helpers.
    for m in ["types", "jvp", "model"] {
        assert!(on_cycle.iter().all(|(a, b)| a != m && b != m), "{m} is on a cycle");
    }
}
