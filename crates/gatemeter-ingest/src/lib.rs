//! Kafka → Parquet lake ingest for gatemeter. The only crate that links
//! librdkafka.
//!
//! # The exactly-once invariant
//! - Kafka's committed group offset is never the source of truth.
//! - A flush writes uniquely named Parquet files first, then one Delta
//!   commit that names them and holds, as app transactions, the next offset
//!   of every partition this process holds (docs/lake.md). Readers see only
//!   files a version names, so a crash mid-flush leaves an invisible file,
//!   removed by vacuum once past its retention.
//! - On start and on every assignment, each partition starts at the offset
//!   the Delta log holds for it: the rebalance callback assigns it there
//!   ([`context::LakeSeekContext`]), the loop reads the log again and seeks
//!   if another writer moved it since; the buffer drops any offset below
//!   the committed one ([`buffer::Buffers`]).
//! - When another writer moved one of those partitions first, the commit
//!   fails, the buffer is dropped and every held partition restarts from
//!   the log (a zombie cannot add rows twice).
//! - Offsets go to Kafka after the lake commit, only so lag shows in Kafka
//!   tools.
//! - `auto.offset.reset` is `error`: data is never skipped silently.

mod broker_metadata;
pub mod buffer;
pub mod catch_up;
pub mod context;
mod error;
pub mod import;
mod ingester;
pub mod metrics;
pub mod policy;
pub mod traffic;
pub mod unread;

pub use error::IngestError;
pub use import::{import_file, import_topic, ImportReport};
pub use ingester::{
    run_ingest, IngestOptions, IngestReport, KafkaSource, DEFAULT_CATCH_UP_DEADLINE,
};
pub use metrics::IngestMetrics;
pub use policy::{FlushPolicy, FlushReason};
pub use traffic::{LabelCaps, Pricer, TrafficMetrics};
