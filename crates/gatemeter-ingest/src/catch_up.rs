//! When `ingest --until-caught-up` is done (docs/operations.md, "Catch-up
//! and backfill jobs"): every partition of the topic, as the broker listed
//! it at start, is stored in the lake up to the high watermark read at
//! start, whoever stored it. "The partitions this process happens to hold
//! are at their end" is not enough: after a crash, dead members of the
//! group may hold the others until the group's timeouts, and a job that
//! trusts the exit code would stop with them unread.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

/// The offsets of one partition at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// The oldest offset still on the broker.
    pub low: i64,
    /// One past the newest message: what must be stored.
    pub high: i64,
}

/// A partition not yet stored to its start-time high watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    pub partition: i32,
    /// The lake's next offset for it (`None`: nothing stored yet).
    pub stored: Option<i64>,
    pub high: i64,
    /// Held by this process (it is reading it), or by another member or
    /// by nobody alive.
    pub assigned_here: bool,
}

impl fmt::Display for Behind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stored = match self.stored {
            Some(next) => format!("stored up to offset {next}"),
            None => "nothing stored".to_owned(),
        };
        let holder = if self.assigned_here {
            "being read here"
        } else {
            "not assigned to this process"
        };
        write!(
            f,
            "partition {} ({stored} of {}, {holder})",
            self.partition, self.high
        )
    }
}

/// What a catch-up run waits for, and until when.
#[derive(Debug, Clone)]
pub struct CatchUp {
    targets: BTreeMap<i32, Watermarks>,
    started: Instant,
    deadline: Duration,
}

impl CatchUp {
    /// A run that must store every partition of `targets` up to its high
    /// watermark, giving up `deadline` after `started`.
    pub fn new(targets: BTreeMap<i32, Watermarks>, started: Instant, deadline: Duration) -> Self {
        CatchUp {
            targets,
            started,
            deadline,
        }
    }

    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.targets.keys().copied()
    }

    /// The partitions still behind, given the lake's next offset of each
    /// (`stored`), the partitions this process holds (`assigned`) and
    /// those among them it has read to their end and flushed (`drained`).
    /// A drained partition is done even below its watermark: the offsets
    /// past its last message may be transaction markers, which no event
    /// stands for. A partition with nothing on the broker is done.
    pub fn behind(
        &self,
        stored: impl Fn(i32) -> Option<i64>,
        assigned: &BTreeSet<i32>,
        drained: &BTreeSet<i32>,
    ) -> Vec<Behind> {
        self.targets
            .iter()
            .filter(|(_, marks)| marks.high > marks.low)
            .filter(|(partition, _)| !drained.contains(partition))
            .filter_map(|(&partition, marks)| {
                let next = stored(partition);
                (next.unwrap_or(i64::MIN) < marks.high).then(|| Behind {
                    partition,
                    stored: next,
                    high: marks.high,
                    assigned_here: assigned.contains(&partition),
                })
            })
            .collect()
    }

    /// Whether the deadline has passed at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.started) >= self.deadline
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

/// `behind` as one line for the log or an error.
pub fn describe(behind: &[Behind]) -> String {
    behind
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catch_up(marks: &[(i32, i64, i64)]) -> CatchUp {
        let targets = marks
            .iter()
            .map(|&(p, low, high)| (p, Watermarks { low, high }))
            .collect();
        CatchUp::new(targets, Instant::now(), Duration::from_secs(60))
    }

    fn set(partitions: &[i32]) -> BTreeSet<i32> {
        partitions.iter().copied().collect()
    }

    #[test]
    fn every_partition_stored_to_its_watermark_is_caught_up_whoever_stored_it() {
        let run = catch_up(&[(0, 0, 100), (1, 0, 50)]);
        let stored = |p: i32| Some(if p == 0 { 100 } else { 70 });
        assert!(run.behind(stored, &set(&[0]), &set(&[])).is_empty());
    }

    #[test]
    fn a_partition_held_elsewhere_below_its_watermark_is_behind_though_mine_are_drained() {
        let run = catch_up(&[(0, 0, 100), (1, 0, 50), (2, 0, 80), (3, 0, 10)]);
        let stored = |p: i32| match p {
            0 => Some(100),
            1 => Some(20),
            3 => Some(10),
            _ => None,
        };
        let behind = run.behind(stored, &set(&[0]), &set(&[0]));
        assert_eq!(
            behind,
            vec![
                Behind {
                    partition: 1,
                    stored: Some(20),
                    high: 50,
                    assigned_here: false
                },
                Behind {
                    partition: 2,
                    stored: None,
                    high: 80,
                    assigned_here: false
                },
            ]
        );
        assert_eq!(
            describe(&behind),
            "partition 1 (stored up to offset 20 of 50, not assigned to this process), \
             partition 2 (nothing stored of 80, not assigned to this process)"
        );
    }

    #[test]
    fn a_partition_read_here_counts_until_drained_and_an_empty_one_never_does() {
        // Partition 1 ends in transaction markers: its last event is at 47.
        let run = catch_up(&[(0, 5, 5), (1, 0, 50)]);
        let stored = |p: i32| (p == 1).then_some(48);
        let reading = run.behind(stored, &set(&[0, 1]), &set(&[0]));
        assert_eq!(reading.len(), 1);
        assert!(reading[0].assigned_here);
        assert!(run.behind(stored, &set(&[0, 1]), &set(&[0, 1])).is_empty());
    }

    #[test]
    fn the_deadline_counts_from_the_start() {
        let started = Instant::now();
        let run = CatchUp::new(BTreeMap::new(), started, Duration::from_secs(5));
        assert!(!run.expired(started + Duration::from_secs(4)));
        assert!(run.expired(started + Duration::from_secs(5)));
    }
}
