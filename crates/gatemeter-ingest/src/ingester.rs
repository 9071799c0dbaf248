//! The ingest loop: one `select!` over the next message, a flush ticker and
//! shutdown. Messages go into per-partition buffers; a flush writes one lake
//! commit, and only then are offsets committed to Kafka (for lag tools).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gatemeter_lake::{Lake, LakeError, SourceOffsets};
use gatemeter_schema::SourcePosition;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::buffer::{Buffers, PartitionKey};
use crate::context::{AssignmentChange, LakeSeekContext};
use crate::error::IngestError;
use crate::metrics::IngestMetrics;
use crate::policy::FlushPolicy;
use crate::traffic::TrafficMetrics;

/// Where to consume from.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// Extra librdkafka properties (`-X key=value`), applied last.
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub source: KafkaSource,
    pub policy: FlushPolicy,
    /// Stop once every assigned partition is read to its end and flushed.
    pub until_caught_up: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub stored: u64,
    pub dead_letters: u64,
    pub commits: u64,
}

/// How often the age bound of the flush policy is checked.
const TICK: Duration = Duration::from_millis(200);

fn consumer_config(source: &KafkaSource) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &source.brokers)
        .set("group.id", &source.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // Every start position comes from the lake; if one is out of range
        // (retention deleted it) that is an error to see, never a silent skip.
        .set("auto.offset.reset", "error")
        .set("statistics.interval.ms", "5000")
        // Bound what librdkafka prefetches, so ingest memory stays small.
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.wait.max.ms", "100");
    for (key, value) in &source.options {
        config.set(key, value);
    }
    config
}

type LakeConsumer = StreamConsumer<LakeSeekContext>;

struct Ingest {
    changes: Receiver<AssignmentChange>,
    committed: Arc<Mutex<SourceOffsets>>,
    lake: Lake,
    buffers: Buffers,
    metrics: IngestMetrics,
    traffic: Option<TrafficMetrics>,
    policy: FlushPolicy,
    topic: String,
    assigned: BTreeSet<PartitionKey>,
    at_end: BTreeSet<PartitionKey>,
    report: IngestReport,
}

/// Consumes `options.source` into `lake` until `shutdown` completes (or, with
/// `until_caught_up`, until every assigned partition is drained), then
/// flushes and commits what is buffered. `traffic`, when given, counts the
/// live traffic series of every committed attempt.
pub async fn run_ingest(
    options: IngestOptions,
    lake: Lake,
    metrics: IngestMetrics,
    traffic: Option<TrafficMetrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<IngestReport, IngestError> {
    let (sender, changes) = channel();
    let committed = Arc::new(Mutex::new(lake.offsets().clone()));
    let context = LakeSeekContext {
        committed: committed.clone(),
        changes: sender,
        metrics: metrics.clone(),
    };
    let consumer: LakeConsumer = consumer_config(&options.source).create_with_context(context)?;
    consumer.subscribe(&[options.source.topic.as_str()])?;
    let mut ingest = Ingest {
        changes,
        committed,
        lake,
        buffers: Buffers::default(),
        metrics,
        traffic,
        policy: options.policy,
        topic: options.source.topic.clone(),
        assigned: BTreeSet::new(),
        at_end: BTreeSet::new(),
        report: IngestReport::default(),
    };
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                info!("shutdown requested");
                break;
            }
            received = consumer.recv() => {
                ingest.apply_assignment_changes();
                match received {
                    Ok(message) => {
                        let source = SourcePosition {
                            topic: message.topic().to_owned(),
                            partition: message.partition(),
                            offset: message.offset(),
                        };
                        ingest.at_end.remove(&(source.topic.clone(), source.partition));
                        let accepted = ingest.buffers.accept(source, message.payload().unwrap_or_default(), Instant::now());
                        if accepted.replayed {
                            ingest.metrics.events.with_label_values(&["replayed"]).inc();
                        }
                    }
                    Err(KafkaError::PartitionEOF(partition)) => {
                        ingest.at_end.insert((ingest.topic.clone(), partition));
                    }
                    Err(error) => {
                        // librdkafka retries on its own; note it and go on.
                        ingest.metrics.consumer_errors.inc();
                        warn!(%error, "consumer error");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            _ = ticker.tick() => {
                ingest.apply_assignment_changes();
            }
        }
        if let Some(reason) = ingest.policy.check(&ingest.buffers.stats(), Instant::now()) {
            debug!(reason = reason.as_str(), "flush");
            ingest.flush(&consumer).await?;
        }
        if options.until_caught_up && ingest.caught_up() {
            info!("every assigned partition is consumed to its end");
            break;
        }
    }
    ingest.flush(&consumer).await?;
    consumer.unsubscribe();
    Ok(ingest.report)
}

impl Ingest {
    fn apply_assignment_changes(&mut self) {
        while let Ok(change) = self.changes.try_recv() {
            match change {
                AssignmentChange::Assigned(partitions) => {
                    for key in partitions {
                        let next = self.lake.next_offset(&key.0, key.1);
                        info!(topic = key.0, partition = key.1, next_offset = ?next, "assigned");
                        self.buffers.reset_partition(key.clone(), next);
                        self.at_end.remove(&key);
                        self.assigned.insert(key);
                    }
                }
                AssignmentChange::Revoked(partitions) => {
                    for key in partitions {
                        info!(topic = key.0, partition = key.1, "revoked");
                        self.buffers.drop_partition(&key);
                        self.at_end.remove(&key);
                        self.assigned.remove(&key);
                    }
                }
            }
        }
    }

    fn caught_up(&self) -> bool {
        // What is still buffered is flushed by the caller on the way out.
        !self.assigned.is_empty() && self.assigned.is_subset(&self.at_end)
    }

    async fn flush(&mut self, consumer: &LakeConsumer) -> Result<(), IngestError> {
        if !self.buffers.is_dirty() {
            return Ok(());
        }
        let pending = self.buffers.take_pending("ingest");
        let offsets = pending.offsets.clone();
        let staged = self
            .traffic
            .as_ref()
            .map(|traffic| traffic.stage(&pending.rows));
        let timer = self.metrics.flush_duration.start_timer();
        match self.lake.commit(pending).await {
            Ok(summary) => {
                timer.observe_duration();
                self.metrics.record_commit(&summary);
                if let (Some(traffic), Some(staged)) = (&self.traffic, staged) {
                    traffic.apply(staged);
                }
                self.report.stored += summary.rows;
                self.report.dead_letters += summary.dead_letters;
                self.report.commits += 1;
                self.publish_committed();
                self.commit_to_kafka(consumer, &offsets);
                Ok(())
            }
            Err(LakeError::LostCommitRace { sequence }) => {
                timer.stop_and_discard();
                warn!(
                    sequence,
                    "another writer committed first; re-seeking from the lake"
                );
                self.buffers.reset_all(self.lake.offsets());
                self.publish_committed();
                self.reseek_from_lake(consumer);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn publish_committed(&self) {
        let mut committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *committed = self.lake.offsets().clone();
    }

    /// Kafka's group offsets follow the lake only so lag shows in Kafka tools.
    fn commit_to_kafka(&self, consumer: &LakeConsumer, offsets: &SourceOffsets) {
        let mut list = TopicPartitionList::new();
        for (topic, partitions) in offsets {
            for (partition, next) in partitions {
                if self.assigned.contains(&(topic.clone(), *partition)) {
                    let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*next));
                }
            }
        }
        if list.count() > 0 {
            if let Err(error) = consumer.commit(&list, CommitMode::Async) {
                debug!(%error, "kafka offset commit failed (informational only)");
            }
        }
    }

    fn reseek_from_lake(&self, consumer: &LakeConsumer) {
        let positions: BTreeMap<&PartitionKey, Offset> = self
            .assigned
            .iter()
            .map(|key| {
                let offset = self
                    .lake
                    .next_offset(&key.0, key.1)
                    .map_or(Offset::Beginning, Offset::Offset);
                (key, offset)
            })
            .collect();
        for ((topic, partition), offset) in positions {
            if let Err(error) = consumer.seek(topic, *partition, offset, Duration::from_secs(5)) {
                warn!(%error, topic, partition, "seek failed");
            }
        }
    }
}
