//! Partitions of the topic nobody alive is reading: not held by this
//! process, behind the broker's high watermark in the lake, and not one
//! offset further in the lake since the last look. A live member holding
//! a partition with messages to read moves its lake offset at every flush
//! (seconds); a dead member's partitions stand still until the group's
//! timeouts hand them to someone (docs/operations.md, "Scale out").

use std::collections::BTreeMap;
use std::time::Duration;

use crate::catch_up::Watermarks;

/// How often an ingester looks at the partitions it does not hold.
pub const LOOK_EVERY: Duration = Duration::from_secs(30);

/// The partitions among `marks` that are behind in the lake (`stored`, the
/// lake's next offset of each) and stored no further than at the last look
/// (`before`). A partition not in `before` was not looked at yet: not
/// unread.
pub fn unread(
    marks: &BTreeMap<i32, Watermarks>,
    stored: &BTreeMap<i32, Option<i64>>,
    before: &BTreeMap<i32, Option<i64>>,
) -> Vec<i32> {
    marks
        .iter()
        .filter(|(_, marks)| marks.high > marks.low)
        .filter_map(|(&partition, marks)| {
            let now = stored.get(&partition).copied().flatten();
            let behind = now.unwrap_or(i64::MIN) < marks.high;
            let still = before.get(&partition).is_some_and(|then| *then == now);
            (behind && still).then_some(partition)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_and_standing_still_is_unread_moving_or_done_is_not() {
        let marks: BTreeMap<i32, Watermarks> = [(0, 100), (1, 100), (2, 100), (3, 0), (4, 100)]
            .into_iter()
            .map(|(p, high)| (p, Watermarks { low: 0, high }))
            .collect();
        let before = BTreeMap::from([(0, Some(40)), (1, Some(40)), (2, Some(100)), (3, None)]);
        let stored = BTreeMap::from([
            (0, Some(40)),  // behind, still: nobody reads it
            (1, Some(70)),  // behind, moving: a live member
            (2, Some(100)), // at the watermark
            (3, None),      // nothing on the broker
            (4, None),      // not looked at before
        ]);
        assert_eq!(unread(&marks, &stored, &before), vec![0]);
        let never_stored = BTreeMap::from([(4, None)]);
        assert_eq!(unread(&marks, &never_stored, &never_stored), vec![4]);
    }
}
