//! The alert state machine, pure: `inactive → pending → firing → resolved`.
//! A condition must hold for `for` before it fires, and must stay clear for
//! `clear_for` before a firing alert resolves, so a flapping signal neither
//! pages twice nor resolves and re-fires on every blip. Records are plain
//! data, persisted between runs, so a restart neither re-pages (the
//! original `fired_at` is kept and sent again as `startsAt`) nor forgets.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Resolved => "resolved",
        }
    }
}

/// One alert's remembered state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub phase: Phase,
    /// When the condition became true (pending or firing).
    #[serde(with = "crate::time_serde::option", default)]
    pub active_since: Option<DateTime<Utc>>,
    /// When it fired: the `startsAt` sent for this firing, kept across restarts.
    #[serde(with = "crate::time_serde::option", default)]
    pub fired_at: Option<DateTime<Utc>>,
    /// When a firing alert's condition went false (it resolves after `clear_for`).
    #[serde(with = "crate::time_serde::option", default)]
    pub clear_since: Option<DateTime<Utc>>,
    #[serde(with = "crate::time_serde::option", default)]
    pub resolved_at: Option<DateTime<Utc>>,
}

impl Default for AlertRecord {
    fn default() -> Self {
        AlertRecord {
            phase: Phase::Inactive,
            active_since: None,
            fired_at: None,
            clear_since: None,
            resolved_at: None,
        }
    }
}

/// What an evaluation did to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing to tell anyone.
    Quiet,
    /// The condition holds; waiting out `for`.
    Pending,
    /// It just fired: notify.
    Fired,
    /// Still firing: resend (receivers expect repeats until resolved).
    StillFiring,
    /// It just resolved: notify with `endsAt`.
    Resolved,
}

/// How long a condition must hold, and stay clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub for_: Duration,
    pub clear_for: Duration,
}

/// One evaluation: the next record and what happened.
pub fn step(
    record: &AlertRecord,
    condition: bool,
    timing: Timing,
    now: DateTime<Utc>,
) -> (AlertRecord, Transition) {
    let mut next = record.clone();
    let transition = match (record.phase, condition) {
        (Phase::Inactive | Phase::Resolved, true) => {
            next.active_since = Some(now);
            next.clear_since = None;
            if timing.for_ <= Duration::zero() {
                fire(&mut next, now)
            } else {
                next.phase = Phase::Pending;
                Transition::Pending
            }
        }
        (Phase::Inactive | Phase::Resolved, false) => Transition::Quiet,
        (Phase::Pending, true) => {
            let since = record.active_since.unwrap_or(now);
            if now - since >= timing.for_ {
                fire(&mut next, now)
            } else {
                Transition::Pending
            }
        }
        (Phase::Pending, false) => {
            next = AlertRecord {
                resolved_at: record.resolved_at,
                ..AlertRecord::default()
            };
            Transition::Quiet
        }
        (Phase::Firing, true) => {
            next.clear_since = None;
            Transition::StillFiring
        }
        (Phase::Firing, false) => {
            let clear_since = record.clear_since.unwrap_or(now);
            if now - clear_since >= timing.clear_for {
                next.phase = Phase::Resolved;
                next.resolved_at = Some(now);
                next.active_since = None;
                next.clear_since = None;
                Transition::Resolved
            } else {
                next.clear_since = Some(clear_since);
                Transition::StillFiring
            }
        }
    };
    (next, transition)
}

fn fire(record: &mut AlertRecord, now: DateTime<Utc>) -> Transition {
    record.phase = Phase::Firing;
    record.fired_at = Some(now);
    record.resolved_at = None;
    Transition::Fired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap_or_default()
    }

    fn run(conditions: &[bool], timing: Timing) -> Vec<(Phase, Transition)> {
        let mut record = AlertRecord::default();
        conditions
            .iter()
            .enumerate()
            .map(|(minute, condition)| {
                let (next, transition) = step(&record, *condition, timing, at(minute as i64));
                record = next;
                (record.phase, transition)
            })
            .collect()
    }

    const NO_WAIT: Timing = Timing {
        for_: Duration::zero(),
        clear_for: Duration::zero(),
    };

    #[test]
    fn for_durations_hold_back_firing() {
        let timing = Timing {
            for_: Duration::minutes(2),
            clear_for: Duration::zero(),
        };
        let steps = run(&[false, true, true, true, true, false, false], timing);
        let phases: Vec<Phase> = steps.iter().map(|s| s.0).collect();
        assert_eq!(
            phases,
            [
                Phase::Inactive,
                Phase::Pending,
                Phase::Pending,
                Phase::Firing,
                Phase::Firing,
                Phase::Resolved,
                Phase::Resolved
            ]
        );
        assert_eq!(steps[3].1, Transition::Fired);
        assert_eq!(steps[5].1, Transition::Resolved);
        // A blip shorter than `for` never fires.
        let blip = run(&[true, true, false, true, false], timing);
        assert!(blip.iter().all(|(_, t)| *t != Transition::Fired));
        assert_eq!(blip.last().map(|s| s.0), Some(Phase::Inactive));
    }

    #[test]
    fn without_for_it_fires_at_once_and_resolves_at_once() {
        let steps = run(&[true, true, false], NO_WAIT);
        assert_eq!(
            steps.iter().map(|s| s.1).collect::<Vec<_>>(),
            [
                Transition::Fired,
                Transition::StillFiring,
                Transition::Resolved
            ]
        );
    }

    #[test]
    fn a_flapping_signal_pages_once() {
        let timing = Timing {
            for_: Duration::zero(),
            clear_for: Duration::minutes(3),
        };
        let flapping = [
            true, false, true, false, true, false, true, false, false, false, false,
        ];
        let steps = run(&flapping, timing);
        let fired = steps.iter().filter(|s| s.1 == Transition::Fired).count();
        let resolved = steps.iter().filter(|s| s.1 == Transition::Resolved).count();
        assert_eq!((fired, resolved), (1, 1));
        // It resolves only after three clear minutes in a row (minutes 7..10).
        assert_eq!(
            steps.iter().position(|s| s.1 == Transition::Resolved),
            Some(10)
        );
    }

    #[test]
    fn a_restored_record_keeps_its_fired_at() {
        let (fired, _) = step(&AlertRecord::default(), true, NO_WAIT, at(0));
        let restored: AlertRecord =
            serde_json::from_str(&serde_json::to_string(&fired).expect("json")).expect("parse");
        let (again, transition) = step(&restored, true, NO_WAIT, at(5));
        assert_eq!(transition, Transition::StillFiring);
        assert_eq!(again.fired_at, Some(at(0)));
    }
}
