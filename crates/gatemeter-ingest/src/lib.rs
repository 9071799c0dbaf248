//! Kafka → Parquet lake ingest for gatemeter. The only crate that links
//! librdkafka.
//!
//! # The exactly-once invariant
//! - Kafka's committed group offset is never the source of truth.
//! - A flush writes its Parquet files first, then one commit record that
//!   lists them and holds each partition's next offset, written create-only.
//!   Readers see only files named by a commit record, so a crash mid-flush
//!   leaves an invisible orphan, deleted when the lake is next opened.
//! - On start and on every assignment, the consumer seeks each partition to
//!   the commit records' offset ([`context::LakeSeekContext`]); the buffer
//!   drops any offset below the committed one ([`buffer::Buffers`]).
//! - A lost create-only race means another writer owns the partition: the
//!   lake reloads and the ingester re-seeks (a zombie cannot overwrite).
//! - Offsets go to Kafka after the lake commit, only so lag shows in Kafka
//!   tools.
//! - `auto.offset.reset` is `error`: data is never skipped silently.

pub mod buffer;
pub mod context;
mod error;
pub mod import;
mod ingester;
pub mod metrics;
pub mod policy;
pub mod traffic;

pub use error::IngestError;
pub use import::{import_file, import_topic, ImportReport};
pub use ingester::{run_ingest, IngestOptions, IngestReport, KafkaSource};
pub use metrics::IngestMetrics;
pub use policy::{FlushPolicy, FlushReason};
pub use traffic::{LabelCaps, Pricer, TrafficMetrics};
