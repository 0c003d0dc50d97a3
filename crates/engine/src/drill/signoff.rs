//! Sign-off: the policy's recovery owner accepts a passed drill as evidence that the asset
//! can be recovered. Only that owner may sign, once per drill; a failed drill is not
//! evidence of recovery and cannot be signed off.

use std::collections::BTreeMap;

use backstop_catalog::{Catalog, DrillRecord, Signoff};

use crate::error::EngineError;
use crate::policy::Policy;

pub async fn sign_off(
    config: &crate::Config,
    catalog: &Catalog,
    policies: &BTreeMap<String, Policy>,
    drill: &str,
    principal: &str,
    comment: &str,
    now: jiff::Timestamp,
) -> Result<Signoff, EngineError> {
    let record = catalog.drill(drill).await?;
    // A system drill is signed off by the system's recovery owner.
    let (kind, name, owners) = match record.policy.strip_prefix(crate::system::RECORD_PREFIX) {
        Some(system) => {
            let systems = crate::system::load_dir(&crate::system::systems_dir(config), policies)?;
            let system = systems.get(system).ok_or_else(|| {
                EngineError::Refused(format!("system `{system}` is not defined under systems/"))
            })?;
            ("system", system.name.clone(), system.owners.clone())
        }
        None => {
            let policy = policies
                .get(&record.policy)
                .ok_or_else(|| EngineError::UnknownPolicy(record.policy.clone()))?;
            ("policy", policy.name.clone(), policy.owners.clone())
        }
    };
    check_allowed(&record, kind, &name, &owners, principal)?;
    if comment.trim().is_empty() {
        return Err(EngineError::Refused(
            "a sign-off needs a comment saying what was reviewed".into(),
        ));
    }
    let signoff = Signoff {
        drill_id: record.id.clone(),
        principal: principal.to_string(),
        comment: comment.to_string(),
        signed_at: now,
    };
    catalog.sign_off(&signoff).await?;
    Ok(signoff)
}

fn check_allowed(
    record: &DrillRecord,
    kind: &str,
    name: &str,
    owners: &crate::policy::Owners,
    principal: &str,
) -> Result<(), EngineError> {
    let Some(owner) = owners.recovery.as_deref() else {
        return Err(EngineError::Refused(format!(
            "{kind} `{name}` names no recovery owner ([owners] recovery), so nobody can sign its drills off"
        )));
    };
    if !owner.eq_ignore_ascii_case(principal) {
        return Err(EngineError::Refused(format!(
            "only the recovery owner of {kind} `{name}` ({owner}) can sign its drills off; you are {principal}"
        )));
    }
    if record.status != "passed" {
        return Err(EngineError::Refused(format!(
            "drill {} failed; a failed drill is not evidence of recovery and cannot be signed off",
            record.id
        )));
    }
    Ok(())
}

/// A passed drill still unsigned after `within` is overdue at `now`.
pub fn overdue(
    record: &DrillRecord,
    within: Option<std::time::Duration>,
    now: jiff::Timestamp,
) -> bool {
    within
        .is_some_and(|within| super::objectives::duration_between(record.finished_at, now) > within)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(finished: &str) -> DrillRecord {
        DrillRecord {
            id: "d1".into(),
            policy: "p".into(),
            repository: "local".into(),
            snapshot_id: String::new(),
            data_point: finished.parse().unwrap(),
            target: String::new(),
            status: "passed".into(),
            started_at: finished.parse().unwrap(),
            finished_at: finished.parse().unwrap(),
            rto_ms: None,
            rto_objective_ms: None,
            rpo_ms: None,
            rpo_objective_ms: None,
            error: None,
            report: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_signoff_is_overdue_only_after_its_window() {
        let day = std::time::Duration::from_secs(86_400);
        let r = record("2026-11-18T03:00:00Z");
        let at = |s: &str| s.parse().unwrap();
        assert!(!overdue(&r, Some(7 * day), at("2026-11-25T03:00:00Z")));
        assert!(overdue(&r, Some(7 * day), at("2026-11-25T03:00:01Z")));
        assert!(!overdue(&r, None, at("2027-01-01T00:00:00Z")));
    }
}
