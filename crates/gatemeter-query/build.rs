//! Compiles the KPI definitions of `queries/kpis/*.sql` into the crate
//! (docs/kpis.md, "The KPIs"): one `KpiDefinition` per `-- kpi:` block, in
//! file-name order, and `KPI_NAMES` from them. A block without its unit,
//! question, formula or expression, a name given twice, or a placeholder
//! the engine does not bind fails the build, naming the file and the KPI.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The values the engine binds into an expression (kpi/definitions.rs).
const PLACEHOLDERS: &[&str] = &["budget", "minutes", "tpm_limit", "baseline_spend"];

#[derive(Default)]
struct Kpi {
    name: String,
    unit: String,
    question: String,
    formula: String,
    expression: Vec<String>,
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../queries/kpis");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut definitions = String::new();
    let mut families = String::new();
    let mut names: Vec<String> = Vec::new();
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (family, about, kpis) = parse(&file, &text);
        let _ = writeln!(families, "    ({family:?}, {about:?}),");
        for kpi in kpis {
            if names.contains(&kpi.name) {
                panic!("queries/kpis/{file}: kpi `{}` is defined twice", kpi.name);
            }
            let expression = kpi.expression.join(" ");
            let _ = writeln!(
                definitions,
                "    KpiDefinition {{ name: {:?}, family: {family:?}, unit: {:?}, question: {:?}, formula: {:?}, expression: {expression:?} }},",
                kpi.name, kpi.unit, kpi.question, kpi.formula,
            );
            names.push(kpi.name);
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let code = format!(
        "/// Every KPI of queries/kpis/, in column order.\n\
         pub const KPI_DEFINITIONS: &[KpiDefinition] = &[\n{definitions}];\n\n\
         /// Each KPI family (file) and what it is about, in order.\n\
         pub const KPI_FAMILIES: &[(&str, &str)] = &[\n{families}];\n\n\
         /// Every KPI column, in output order.\n\
         pub const KPI_NAMES: &[&str] = &[{}];\n",
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(out.join("kpi_definitions.rs"), code).expect("write kpi_definitions.rs");
}

/// A file's family, its description and its KPIs.
fn parse(file: &str, text: &str) -> (String, String, Vec<Kpi>) {
    let mut family = String::new();
    let mut about: Vec<String> = Vec::new();
    let mut kpis: Vec<Kpi> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(comment) = line.strip_prefix("--") {
            let comment = comment.trim();
            let field = |key: &str| comment.strip_prefix(key).map(|v| v.trim().to_owned());
            if let Some(name) = field("kpi:") {
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    panic!(
                        "queries/kpis/{file}: `{name}` is not a KPI name (lowercase, digits, _)"
                    );
                }
                kpis.push(Kpi {
                    name,
                    ..Kpi::default()
                });
            } else if let Some(kpi) = kpis.last_mut() {
                if let Some(unit) = field("unit:") {
                    kpi.unit = unit;
                } else if let Some(question) = field("question:") {
                    kpi.question = question;
                } else if let Some(formula) = field("formula:") {
                    kpi.formula = formula;
                } else {
                    panic!(
                        "queries/kpis/{file}: kpi `{}`: unknown header `{line}`",
                        kpi.name
                    );
                }
            } else if let Some(name) = field("family:") {
                family = name;
            } else {
                about.push(comment.to_owned());
            }
        } else if !line.trim().is_empty() {
            match kpis.last_mut() {
                Some(kpi) => kpi.expression.push(line.trim().to_owned()),
                None => panic!("queries/kpis/{file}: SQL before the first `-- kpi:` header"),
            }
        }
    }
    if family.is_empty() {
        panic!("queries/kpis/{file}: no `-- family:` header");
    }
    for kpi in &kpis {
        for (what, value) in [
            ("unit", &kpi.unit),
            ("question", &kpi.question),
            ("formula", &kpi.formula),
        ] {
            if value.is_empty() {
                panic!(
                    "queries/kpis/{file}: kpi `{}` has no `-- {what}:`",
                    kpi.name
                );
            }
        }
        let expression = kpi.expression.join(" ");
        if expression.is_empty() {
            panic!("queries/kpis/{file}: kpi `{}` has no expression", kpi.name);
        }
        let mut rest = expression.as_str();
        while let Some(start) = rest.find('{') {
            let end = rest[start..]
                .find('}')
                .map(|e| start + e)
                .unwrap_or_else(|| {
                    panic!("queries/kpis/{file}: kpi `{}`: unclosed `{{`", kpi.name)
                });
            let placeholder = &rest[start + 1..end];
            if !PLACEHOLDERS.contains(&placeholder) {
                panic!(
                    "queries/kpis/{file}: kpi `{}`: unknown placeholder `{{{placeholder}}}` (known: {})",
                    kpi.name,
                    PLACEHOLDERS.join(", ")
                );
            }
            rest = &rest[end + 1..];
        }
    }
    // The description: the comment lines before the first KPI, up to the
    // first empty one (what follows it is for readers of the file).
    let about = about
        .split(|line| line.is_empty())
        .next()
        .unwrap_or_default()
        .join(" ");
    (family, about, kpis)
}
