//! Per-partition buffers of decoded rows and dead letters, with the offset
//! guard of the exactly-once invariant: a message at or below the last
//! committed position of its partition is dropped, never stored twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use gatemeter_lake::{PendingCommit, SourceOffsets};
use gatemeter_schema::privacy::Redaction;
use gatemeter_schema::{decode_message, AttemptRow, DeadLetter, PrivacyPolicy, SourcePosition};

use crate::policy::BufferStats;

/// Key of a source partition.
pub type PartitionKey = (String, i32);

#[derive(Debug, Default)]
struct PartitionBuffer {
    rows: Vec<AttemptRow>,
    dead_letters: Vec<DeadLetter>,
    /// The next offset expected: the lake's committed position until a
    /// message is buffered, then one past the last buffered message.
    next_offset: Option<i64>,
    /// Whether anything (rows or dead letters) is waiting for a flush.
    dirty: bool,
    bytes: usize,
    oldest: Option<Instant>,
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    pub rows: usize,
    pub dead_letters: usize,
    /// The message was at or below the committed position and was dropped.
    pub replayed: bool,
    /// Values the privacy policy replaced (secrets, e-mails).
    pub redactions: Vec<Redaction>,
}

#[derive(Debug)]
pub struct Buffers {
    partitions: BTreeMap<PartitionKey, PartitionBuffer>,
    /// Applied to every decoded event before it is buffered.
    privacy: Arc<PrivacyPolicy>,
}

impl Buffers {
    pub fn new(privacy: Arc<PrivacyPolicy>) -> Buffers {
        Buffers {
            partitions: BTreeMap::new(),
            privacy,
        }
    }

    /// Starts (or restarts) a partition at the lake's committed position,
    /// dropping anything buffered for it.
    pub fn reset_partition(&mut self, key: PartitionKey, committed_next: Option<i64>) {
        self.partitions.insert(
            key,
            PartitionBuffer {
                next_offset: committed_next,
                ..PartitionBuffer::default()
            },
        );
    }

    /// Forgets a partition (revoked: its new owner re-reads from the lake).
    pub fn drop_partition(&mut self, key: &PartitionKey) {
        self.partitions.remove(key);
    }

    /// Decodes one message into rows and dead letters of its partition.
    pub fn accept(&mut self, source: SourcePosition, payload: &[u8], now: Instant) -> Accepted {
        let key = (source.topic.clone(), source.partition);
        let buffer = self.partitions.entry(key).or_default();
        if buffer.next_offset.is_some_and(|next| source.offset < next) {
            return Accepted {
                replayed: true,
                ..Accepted::default()
            };
        }
        let mut accepted = Accepted::default();
        match decode_message(payload) {
            Ok(events) => {
                let batch = events.len() > 1 || payload.first() == Some(&b'[');
                for (index, event) in events.into_iter().enumerate() {
                    match event {
                        Ok(mut event) => {
                            accepted.redactions.extend(self.privacy.apply(&mut event));
                            buffer.rows.push(AttemptRow {
                                event,
                                source: source.clone(),
                            });
                            accepted.rows += 1;
                        }
                        Err(error) => {
                            let index = batch.then_some(index as i32);
                            buffer.dead_letters.push(DeadLetter::new(
                                source.clone(),
                                index,
                                &error,
                                payload,
                            ));
                            accepted.dead_letters += 1;
                        }
                    }
                }
            }
            Err(error) => {
                buffer
                    .dead_letters
                    .push(DeadLetter::new(source.clone(), None, &error, payload));
                accepted.dead_letters += 1;
            }
        }
        buffer.next_offset = Some(source.offset + 1);
        buffer.dirty = true;
        buffer.bytes += payload.len();
        buffer.oldest.get_or_insert(now);
        accepted
    }

    pub fn stats(&self) -> BufferStats {
        let mut stats = BufferStats::default();
        for buffer in self.partitions.values().filter(|b| b.dirty) {
            stats.rows += buffer.rows.len() + buffer.dead_letters.len();
            stats.bytes += buffer.bytes;
            stats.oldest = match (stats.oldest, buffer.oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        stats
    }

    pub fn is_dirty(&self) -> bool {
        self.partitions.values().any(|b| b.dirty)
    }

    /// Takes everything buffered as one pending commit, leaving each
    /// partition empty at its new position. The commit holds the position
    /// of every tracked partition, buffered data or not, so it fails if
    /// another writer moved any of them.
    pub fn take_pending(&mut self, writer: &str) -> PendingCommit {
        let mut pending = PendingCommit {
            writer: writer.to_owned(),
            ..PendingCommit::default()
        };
        for ((topic, partition), buffer) in self.partitions.iter_mut() {
            pending.rows.append(&mut buffer.rows);
            pending.dead_letters.append(&mut buffer.dead_letters);
            if let Some(next) = buffer.next_offset {
                pending
                    .offsets
                    .entry(topic.clone())
                    .or_default()
                    .insert(*partition, next);
            }
            buffer.dirty = false;
            buffer.bytes = 0;
            buffer.oldest = None;
        }
        pending
    }

    /// Partitions currently tracked.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionKey> {
        self.partitions.keys()
    }

    /// Re-seats every tracked partition at the lake's positions, dropping
    /// buffered data (after a lost commit race).
    pub fn reset_all(&mut self, offsets: &SourceOffsets) {
        for ((topic, partition), buffer) in self.partitions.iter_mut() {
            *buffer = PartitionBuffer {
                next_offset: offsets.get(topic).and_then(|p| p.get(partition)).copied(),
                ..PartitionBuffer::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"schema_version":1,"attempt_id":"a","request_id":"r","attempt_index":0,
        "attempt_kind":"initial","is_final":true,"request_start":"2026-11-01T10:00:00Z",
        "attempt_start":"2026-11-01T10:00:00Z","attempt_end":"2026-11-01T10:00:01Z",
        "requested_model":"m","provider":"p","api_key_id":"k","environment":"prod","outcome":"success"}"#;

    fn buffers() -> Buffers {
        Buffers::new(Arc::new(PrivacyPolicy::new(
            b"test".to_vec(),
            gatemeter_schema::FieldHandling::Keep,
            gatemeter_schema::FieldHandling::Keep,
        )))
    }

    fn at(partition: i32, offset: i64) -> SourcePosition {
        SourcePosition {
            topic: "t".into(),
            partition,
            offset,
        }
    }

    #[test]
    fn good_and_bad_neighbours_are_both_kept() {
        let mut buffers = buffers();
        let now = Instant::now();
        assert_eq!(buffers.accept(at(0, 0), GOOD.as_bytes(), now).rows, 1);
        assert_eq!(buffers.accept(at(0, 1), b"{not json", now).dead_letters, 1);
        assert_eq!(buffers.accept(at(0, 2), GOOD.as_bytes(), now).rows, 1);
        let batch = format!("[{GOOD}, 5, {GOOD}]");
        let accepted = buffers.accept(at(1, 7), batch.as_bytes(), now);
        assert_eq!((accepted.rows, accepted.dead_letters), (2, 1));
        let stats = buffers.stats();
        assert_eq!(stats.rows, 6);
        assert_eq!(stats.oldest, Some(now));
        let pending = buffers.take_pending("test");
        assert_eq!(pending.rows.len(), 4);
        assert_eq!(pending.dead_letters.len(), 2);
        assert_eq!(pending.dead_letters[0].source.offset, 1);
        assert_eq!(pending.dead_letters[1].index_in_message, Some(1));
        assert_eq!(pending.offsets["t"], BTreeMap::from([(0, 3), (1, 8)]));
        assert!(!buffers.is_dirty());
        assert_eq!(buffers.stats(), BufferStats::default());
    }

    #[test]
    fn offsets_below_the_committed_position_are_dropped() {
        let mut buffers = buffers();
        let now = Instant::now();
        buffers.reset_partition(("t".into(), 0), Some(10));
        assert!(buffers.accept(at(0, 9), GOOD.as_bytes(), now).replayed);
        assert!(!buffers.accept(at(0, 10), GOOD.as_bytes(), now).replayed);
        // A replay of what is already buffered is dropped too.
        assert!(buffers.accept(at(0, 10), GOOD.as_bytes(), now).replayed);
        assert_eq!(buffers.take_pending("t").rows.len(), 1);
    }

    #[test]
    fn reset_all_drops_buffered_data_and_reseats() {
        let mut buffers = buffers();
        let now = Instant::now();
        buffers.accept(at(0, 0), GOOD.as_bytes(), now);
        let offsets = BTreeMap::from([("t".to_owned(), BTreeMap::from([(0, 5)]))]);
        buffers.reset_all(&offsets);
        assert!(!buffers.is_dirty());
        assert!(buffers.accept(at(0, 4), GOOD.as_bytes(), now).replayed);
    }
}
