//! Every KPI is defined once, proven in a `.slt` case and described in
//! docs/kpis.md, whose table is the one the definitions make.

use std::path::Path;

use super::*;

fn repository_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn every_kpi_has_a_definition_a_sqllogictest_case_and_a_doc_line() {
    assert!(KPI_NAMES.len() >= 12, "{KPI_NAMES:?}");
    assert_eq!(KPI_NAMES.len(), KPI_DEFINITIONS.len());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt");
    let cases: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "slt"))
        .flat_map(|path| {
            std::fs::read_to_string(&path)
                .expect("slt file")
                .lines()
                .filter(|line| !line.starts_with('#'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let docs = repository_file("docs/kpis.md");
    for name in KPI_NAMES {
        let as_word = |line: &str| {
            line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == *name)
        };
        assert!(
            cases.iter().any(|line| as_word(line)),
            "KPI `{name}` has no query in tests/slt/*.slt"
        );
        assert!(
            docs.lines().any(|line| line.contains(&format!("`{name}`"))),
            "KPI `{name}` is not in docs/kpis.md"
        );
    }
}

#[test]
fn the_docs_table_is_the_one_the_definitions_make() {
    let docs = repository_file("docs/kpis.md");
    let (start, end) = (
        "<!-- kpi table: made from queries/kpis/*.sql -->\n",
        "<!-- end of kpi table -->",
    );
    let table = docs
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(table, _)| table)
        .expect("docs/kpis.md holds the generated table between its markers");
    assert_eq!(
        table,
        markdown_table(),
        "docs/kpis.md's KPI table is out of date; replace it with:\n{}",
        markdown_table()
    );
}

#[test]
fn placeholders_are_bound_and_nothing_else_changes() {
    let bindings = Bindings {
        budget: "0.001".into(),
        minutes: "60.0".into(),
        tpm_limit: "1000.0".into(),
        baseline_spend: "b.baseline_spend".into(),
    };
    for kpi in KPI_DEFINITIONS {
        let sql = kpi.sql(&bindings);
        assert!(
            !sql.contains('{') && !sql.contains('}'),
            "{}: {sql}",
            kpi.name
        );
    }
    let burn = KPI_DEFINITIONS
        .iter()
        .find(|k| k.name == "error_budget_burn_rate")
        .expect("burn rate");
    assert!(
        burn.sql(&bindings).ends_with(") / 0.001"),
        "{}",
        burn.sql(&bindings)
    );
}
