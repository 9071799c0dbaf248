//! The ingest loop: one `select!` over the next message, a flush ticker and
//! shutdown. Messages go into per-partition buffers; a flush writes one lake
//! commit, and only then are offsets committed to Kafka (for lag tools).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gatemeter_lake::{Lake, LakeError, SourceOffsets};
use gatemeter_schema::{PrivacyPolicy, SourcePosition};
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
    /// What of each event may be stored (docs/privacy.md).
    pub privacy: Arc<PrivacyPolicy>,
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
    let mut lake = lake;
    let (sender, changes) = channel();
    let consumer_config = consumer_config(&options.source);
    // Positions of every partition of the topic, so the rebalance callback
    // starts each assigned partition at (or, when another writer moved it
    // since, just below) its committed offset.
    let partitions = {
        let (config, topic) = (consumer_config.clone(), options.source.topic.clone());
        tokio::task::spawn_blocking(move || topic_partitions(&config, &topic))
            .await
            .map_err(|e| IngestError::Metadata(e.to_string()))??
    };
    lake.load_offsets(&options.source.topic, &partitions)
        .await?;
    let committed = Arc::new(Mutex::new(lake.offsets().clone()));
    let context = LakeSeekContext {
        committed: committed.clone(),
        changes: sender,
        metrics: metrics.clone(),
    };
    let consumer: LakeConsumer = consumer_config.create_with_context(context)?;
    consumer.subscribe(&[options.source.topic.as_str()])?;
    let mut ingest = Ingest {
        changes,
        committed,
        lake,
        buffers: Buffers::new(options.privacy.clone()),
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
                ingest.apply_assignment_changes(&consumer).await?;
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
                        ingest.metrics.record_redactions(&accepted.redactions);
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
                ingest.apply_assignment_changes(&consumer).await?;
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
    async fn apply_assignment_changes(
        &mut self,
        consumer: &LakeConsumer,
    ) -> Result<(), IngestError> {
        while let Ok(change) = self.changes.try_recv() {
            match change {
                AssignmentChange::Assigned(partitions) => {
                    for key in &partitions {
                        info!(topic = key.0, partition = key.1, "assigned");
                        self.at_end.remove(key);
                        self.assigned.insert(key.clone());
                    }
                    // The callback started them from what this process knew;
                    // a past owner may have committed more since.
                    self.reset(consumer, partitions, StartPosition::AtOrBelowLake)
                        .await?;
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
        Ok(())
    }

    /// The one way a partition is (re)started: read its committed offset
    /// from the lake's log, drop what is buffered for it, and seek the
    /// consumer there.
    async fn reset(
        &mut self,
        consumer: &LakeConsumer,
        partitions: Vec<PartitionKey>,
        position: StartPosition,
    ) -> Result<(), IngestError> {
        let before = self.committed_snapshot();
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &partitions {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        for (topic, numbers) in by_topic {
            let found = self.lake.load_offsets(&topic, &numbers).await?;
            for (partition, next) in found {
                let key = (topic.clone(), partition);
                info!(topic, partition, next_offset = ?next, "starting from the lake's offset");
                self.buffers.reset_partition(key.clone(), next);
                let known_before = before.get(&topic).and_then(|p| p.get(&partition)).copied();
                if position == StartPosition::AtOrBelowLake && known_before == next {
                    continue;
                }
                let offset = next.map_or(Offset::Beginning, Offset::Offset);
                seek(consumer, &key, offset, position)?;
            }
        }
        self.publish_committed();
        Ok(())
    }

    fn committed_snapshot(&self) -> SourceOffsets {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
            Err(LakeError::LostCommitRace { detail }) => {
                timer.stop_and_discard();
                warn!(%detail, "another writer committed first; restarting from the lake");
                let held: Vec<PartitionKey> = self.assigned.iter().cloned().collect();
                self.buffers.reset_all(&SourceOffsets::new());
                self.reset(consumer, held, StartPosition::MayBeAhead).await
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
}

/// Where the consumer stands for a partition being reset, relative to the
/// lake's committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartPosition {
    /// Just assigned at what this process knew: at or below the lake, so a
    /// failed seek only costs replays that the buffer drops.
    AtOrBelowLake,
    /// After a lost race it may have read past the lake: the seek must
    /// happen, or what lies between would be skipped.
    MayBeAhead,
}

/// How often a seek that must happen is tried before ingest stops (a
/// restart then starts from the lake).
const SEEK_TRIES: u32 = 5;

fn seek(
    consumer: &LakeConsumer,
    (topic, partition): &PartitionKey,
    offset: Offset,
    position: StartPosition,
) -> Result<(), IngestError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match consumer.seek(topic, *partition, offset, Duration::from_secs(5)) {
            Ok(()) => return Ok(()),
            Err(error) if position == StartPosition::AtOrBelowLake => {
                warn!(%error, topic, partition, "seek failed; replayed messages will be dropped");
                return Ok(());
            }
            Err(error) if tries >= SEEK_TRIES => return Err(error.into()),
            Err(error) => {
                warn!(%error, topic, partition, tries, "seek failed; trying again");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The partition numbers of `topic`, from the broker's metadata.
fn topic_partitions(config: &ClientConfig, topic: &str) -> Result<Vec<i32>, IngestError> {
    let client: rdkafka::consumer::BaseConsumer = config.create()?;
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}
