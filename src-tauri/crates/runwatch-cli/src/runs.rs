//! `runwatch runs [--json]`: the runs this data dir knows, with their state, why they
//! ended (cause), the host they ran on and their labels, most recently updated first.

use std::io::Write;

use runwatch_core::Store;

use crate::output;
use crate::summary::Finished;

pub fn list(store: &Store, json: bool) -> anyhow::Result<Finished> {
    let runs = store.runs()?;
    let mut out = output::stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
        return Ok(Finished::ok());
    }
    if runs.is_empty() {
        writeln!(out, "There are no runs.")?;
        return Ok(Finished::ok());
    }
    let mut table = output::Table::new(["RUN", "NAME", "STATE", "CAUSE", "HOST", "UPDATED", "LABELS"]);
    for r in &runs {
        let labels = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        table.row([
            r.id.clone(),
            r.name.clone().unwrap_or_default(),
            r.state.to_string(),
            r.cause.clone().unwrap_or_default(),
            r.host.clone().unwrap_or_default(),
            output::minute(r.updated_at),
            labels,
        ]);
    }
    for line in table.render("") {
        writeln!(out, "{line}")?;
    }
    Ok(Finished::ok())
}
