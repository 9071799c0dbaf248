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
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::broker_metadata::{metadata_client, partition_ids, watermarks};
use crate::buffer::{Buffers, PartitionKey};
use crate::catch_up::{describe, CatchUp};
use crate::context::{AssignmentChange, LakeSeekContext};
use crate::error::IngestError;
use crate::metrics::IngestMetrics;
use crate::policy::FlushPolicy;
use crate::traffic::TrafficMetrics;
use crate::unread::{unread, LOOK_EVERY};

/// Where to consume from.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// This member's static id in the group (`group.instance.id`): a
    /// restarted ingester with the same id takes its partitions back at
    /// once, without a rebalance (docs/operations.md, "Scale out").
    pub instance_id: Option<String>,
    /// Extra librdkafka properties (`-X key=value`), applied last.
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub source: KafkaSource,
    pub policy: FlushPolicy,
    /// Stop once every partition of the topic is stored up to the high
    /// watermark read at start ([`CatchUp`]).
    pub until_caught_up: bool,
    /// How long a catch-up run waits for that before it fails, naming the
    /// partitions still behind.
    pub catch_up_deadline: Duration,
    /// What of each event may be stored (docs/privacy.md).
    pub privacy: Arc<PrivacyPolicy>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub stored: u64,
    pub dead_letters: u64,
    pub commits: u64,
}

/// How long `--until-caught-up` waits, by default, for every partition.
pub const DEFAULT_CATCH_UP_DEADLINE: Duration = Duration::from_secs(600);

/// How often the age bound of the flush policy is checked.
const TICK: Duration = Duration::from_millis(200);

/// How often a catch-up run whose own partitions are at their end reads
/// the lake's offsets of the others again.
const CATCH_UP_CHECK: Duration = Duration::from_secs(1);

/// How often a catch-up run logs the partitions it is waiting for.
const CATCH_UP_REPORT: Duration = Duration::from_secs(10);

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
    if let Some(id) = &source.instance_id {
        config.set("group.instance.id", id);
    }
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
    /// Reads the partitions' watermarks (not a member of the group).
    metadata: Arc<BaseConsumer>,
    /// Every partition of the topic, as the broker listed it at start.
    partitions: Vec<i32>,
    /// The lake's next offset of each partition not held here, at the last
    /// look for unread partitions, and when that was.
    looked: BTreeMap<i32, Option<i64>>,
    last_look: Instant,
    /// With `until_caught_up`: what the run waits for.
    catch_up: Option<CatchUp>,
    /// Catch-up is looked at every [`TICK`] at most, not at every message.
    next_catch_up_look: Instant,
    last_check: Option<Instant>,
    last_report: Instant,
}

/// Consumes `options.source` into `lake` until `shutdown` completes (or, with
/// `until_caught_up`, until every partition of the topic is stored up to
/// the high watermark read at start), then flushes and commits what is
/// buffered. `traffic`, when given, counts the
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
    let started = Instant::now();
    let metadata = Arc::new(metadata_client(&consumer_config)?);
    let partitions = {
        let (client, topic) = (metadata.clone(), options.source.topic.clone());
        tokio::task::spawn_blocking(move || partition_ids(&client, &topic))
            .await
            .map_err(|e| IngestError::Metadata(e.to_string()))??
    };
    let catch_up = if options.until_caught_up {
        let (client, topic, ids) = (
            metadata.clone(),
            options.source.topic.clone(),
            partitions.clone(),
        );
        let targets = tokio::task::spawn_blocking(move || watermarks(&client, &topic, &ids))
            .await
            .map_err(|e| IngestError::Metadata(e.to_string()))??;
        Some(CatchUp::new(targets, started, options.catch_up_deadline))
    } else {
        None
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
        metadata,
        partitions: partitions.clone(),
        looked: BTreeMap::new(),
        last_look: started,
        catch_up,
        next_catch_up_look: started,
        last_check: None,
        last_report: started,
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
                        // A fatal error (this member fenced by another with
                        // its instance id) ends the consumer: stop, and
                        // leave what is buffered to the partitions' owner.
                        if let Some((code, reason)) = consumer.client().fatal_error() {
                            return Err(IngestError::Fatal(format!("{code:?}: {reason}")));
                        }
                        // librdkafka retries on its own; note it and go on.
                        ingest.metrics.consumer_errors.inc();
                        warn!(%error, "consumer error");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            _ = ticker.tick() => {
                ingest.apply_assignment_changes(&consumer).await?;
                ingest.look_for_unread().await;
            }
        }
        if let Some(reason) = ingest.policy.check(&ingest.buffers.stats(), Instant::now()) {
            debug!(reason = reason.as_str(), "flush");
            ingest.flush(&consumer).await?;
        }
        if ingest.caught_up(&consumer).await? {
            info!("every partition of the topic is stored up to its start-time end");
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
                    self.publish_assigned();
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
                    self.publish_assigned();
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

    /// Every [`LOOK_EVERY`]: the partitions of the topic nobody alive
    /// reads, into `/metrics` and, when there are any, the log. A look
    /// that fails (the broker away for a moment) is logged and tried again
    /// at the next one: it only informs.
    async fn look_for_unread(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_look) < LOOK_EVERY {
            return;
        }
        self.last_look = now;
        if let Err(error) = self.count_unread().await {
            warn!(%error, "could not look for partitions read by nobody");
        }
    }

    async fn count_unread(&mut self) -> Result<(), IngestError> {
        let held = self.held_here();
        let others: Vec<i32> = self
            .partitions
            .iter()
            .copied()
            .filter(|p| !held.contains(p))
            .collect();
        let marks = {
            let (client, topic, others) =
                (self.metadata.clone(), self.topic.clone(), others.clone());
            tokio::task::spawn_blocking(move || watermarks(&client, &topic, &others))
                .await
                .map_err(|e| IngestError::Metadata(e.to_string()))??
        };
        let stored = self.lake.load_offsets(&self.topic, &others).await?;
        self.publish_committed();
        let unread = unread(&marks, &stored, &self.looked);
        self.looked = stored;
        self.metrics
            .unread
            .with_label_values(&[self.topic.as_str()])
            .set(i64::try_from(unread.len()).unwrap_or(i64::MAX));
        if !unread.is_empty() {
            warn!(
                topic = self.topic,
                partitions = ?unread,
                "partitions behind the broker that no one stored anything of since the last look: read by nobody alive"
            );
        }
        Ok(())
    }

    /// The partitions of the topic this process holds now.
    fn held_here(&self) -> BTreeSet<i32> {
        self.assigned
            .iter()
            .filter(|(topic, _)| *topic == self.topic)
            .map(|(_, partition)| *partition)
            .collect()
    }

    fn publish_assigned(&self) {
        let held = self.held_here().len();
        self.metrics
            .assigned
            .with_label_values(&[self.topic.as_str()])
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// With `until_caught_up`: whether every partition of the topic is
    /// stored up to its start-time high watermark, by this process or any
    /// other. Checked while this process's own partitions are all at their
    /// end (it flushes them first), at most every [`CATCH_UP_CHECK`]; past
    /// the deadline, an error naming the partitions still behind.
    async fn caught_up(&mut self, consumer: &LakeConsumer) -> Result<bool, IngestError> {
        let now = Instant::now();
        if now < self.next_catch_up_look {
            return Ok(false);
        }
        self.next_catch_up_look = now + TICK;
        let Some(catch_up) = self.catch_up.clone() else {
            return Ok(false);
        };
        let reading = self.assigned.iter().any(|key| !self.at_end.contains(key));
        let checked_lately = self
            .last_check
            .is_some_and(|at| now.duration_since(at) < CATCH_UP_CHECK);
        if checked_lately || (reading && !catch_up.expired(now)) {
            return Ok(false);
        }
        self.last_check = Some(now);
        self.flush(consumer).await?;
        let mine = self.held_here();
        let others: Vec<i32> = catch_up
            .partitions()
            .filter(|p| !mine.contains(p))
            .collect();
        if !others.is_empty() {
            // Another member (or an earlier run) may have stored them.
            self.lake.load_offsets(&self.topic, &others).await?;
            self.publish_committed();
        }
        let drained: BTreeSet<i32> = self
            .at_end
            .iter()
            .filter(|(topic, _)| *topic == self.topic)
            .map(|(_, partition)| *partition)
            .filter(|partition| mine.contains(partition))
            .collect();
        let behind = catch_up.behind(
            |partition| self.lake.next_offset(&self.topic, partition),
            &mine,
            &drained,
        );
        if behind.is_empty() {
            return Ok(true);
        }
        if catch_up.expired(now) {
            return Err(IngestError::NotCaughtUp {
                topic: self.topic.clone(),
                seconds: catch_up.deadline().as_secs(),
                behind: describe(&behind),
            });
        }
        if now.duration_since(self.last_report) >= CATCH_UP_REPORT {
            self.last_report = now;
            info!(
                topic = self.topic,
                waiting_for = describe(&behind),
                "not caught up yet"
            );
        }
        Ok(false)
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
