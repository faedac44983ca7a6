//! The Nexmark queries both Nexmark benchmarks run: their names, their SQL and which to run.

use std::path::Path;

/// Every query of `sql/nexmark/`, in the order the benchmarks run them.
pub const QUERIES: &[&str] = &["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q17"];

/// `sql/nexmark/{name}.sql`.
pub fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sql/nexmark")
        .join(format!("{name}.sql"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The queries `TRIBUTARY_NEXMARK_QUERIES` names (say `q0,q4`), or all of them.
pub fn chosen() -> Vec<String> {
    std::env::var("TRIBUTARY_NEXMARK_QUERIES")
        .map(|list| {
            list.split(',')
                .map(|name| name.trim().to_string())
                .collect()
        })
        .unwrap_or_else(|_| QUERIES.iter().map(|name| name.to_string()).collect())
}
