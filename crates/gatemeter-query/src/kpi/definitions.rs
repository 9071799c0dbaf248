//! The KPI definitions, read from `queries/kpis/*.sql` at build time
//! (build.rs): each KPI's name, unit, the question it answers, its formula
//! in words and its SQL expression over the grouped request figures `rk`
//! and attempt figures `ak`. The order of the files is the order of the
//! KPI columns. docs/kpis.md's table of KPIs is made from these headers.

/// One KPI as its `-- kpi:` block in queries/kpis/ defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KpiDefinition {
    pub name: &'static str,
    /// The file's `-- family:`.
    pub family: &'static str,
    pub unit: &'static str,
    pub question: &'static str,
    /// The formula in words, for readers who do not read SQL.
    pub formula: &'static str,
    /// SQL over `rk` and `ak` (and the baseline `b`), with placeholders.
    pub expression: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/kpi_definitions.rs"));

/// The values bound into the placeholders of an expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Bindings {
    /// `{budget}`: 1 − the availability SLO target, as a SQL number.
    pub budget: String,
    /// `{minutes}`: the bucket's or window's minutes, or the observed ones.
    pub minutes: String,
    /// `{tpm_limit}`: the row's tokens-per-minute limit, null without one.
    pub tpm_limit: String,
    /// `{baseline_spend}`: the baseline's spend, null without a baseline.
    pub baseline_spend: String,
}

impl KpiDefinition {
    /// The expression with `bindings` in its placeholders.
    pub fn sql(&self, bindings: &Bindings) -> String {
        self.expression
            .replace("{budget}", &bindings.budget)
            .replace("{minutes}", &bindings.minutes)
            .replace("{tpm_limit}", &bindings.tpm_limit)
            .replace("{baseline_spend}", &bindings.baseline_spend)
    }
}

/// The Markdown table of every KPI (docs/kpis.md, "The KPIs"), family by
/// family.
pub fn markdown_table() -> String {
    let mut out = String::from("| KPI | unit | question | formula |\n|---|---|---|---|\n");
    for (family, about) in KPI_FAMILIES {
        out.push_str(&format!("| **{family}** | | {about} | |\n"));
        for kpi in KPI_DEFINITIONS.iter().filter(|k| k.family == *family) {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                kpi.name, kpi.unit, kpi.question, kpi.formula
            ));
        }
    }
    out
}

#[cfg(test)]
#[path = "definitions_tests.rs"]
mod tests;
