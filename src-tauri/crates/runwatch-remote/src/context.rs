//! Where a job runs: the host name and the cluster's description of the job (Slurm's
//! variables, the GPUs it was given), recorded as run labels by `exec` and `check-in`.

use std::collections::BTreeMap;

/// Environment variables recorded as labels, and the label each becomes.
pub const CLUSTER_VARIABLES: [(&str, &str); 5] = [
    ("SLURM_JOB_ID", "slurm_job_id"),
    ("SLURM_ARRAY_JOB_ID", "slurm_array_job_id"),
    ("SLURM_ARRAY_TASK_ID", "slurm_array_task_id"),
    ("SLURM_JOB_NAME", "slurm_job_name"),
    ("CUDA_VISIBLE_DEVICES", "cuda_visible_devices"),
];

/// The labels the environment gives (those of [`CLUSTER_VARIABLES`] that are set).
pub fn cluster_labels() -> BTreeMap<String, String> {
    labels_from(|name| std::env::var(name).ok())
}

fn labels_from(get: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    CLUSTER_VARIABLES
        .iter()
        .filter_map(|(var, label)| get(var).filter(|v| !v.trim().is_empty()).map(|v| (label.to_string(), v.trim().to_string())))
        .collect()
}

/// This machine's host name ("unknown" if the system will not say).
pub use runwatch_core::host::host_name;

/// Parses `KEY=VALUE` (the `--label` option).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE, e.g. --label sweep=lr-search")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_variables_become_labels() {
        let env = BTreeMap::from([("SLURM_JOB_ID", "4242"), ("SLURM_ARRAY_TASK_ID", "7"), ("CUDA_VISIBLE_DEVICES", " ")]);
        let labels = labels_from(|k| env.get(k).map(ToString::to_string));
        assert_eq!(labels, BTreeMap::from([("slurm_job_id".into(), "4242".into()), ("slurm_array_task_id".into(), "7".into())]));
        assert!(!host_name().is_empty());
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_label("=x").is_err());
    }
}
