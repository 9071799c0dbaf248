//! The consumer context: on every assignment it seeks each partition to the
//! lake's committed position before any message is fetched, and it turns
//! librdkafka statistics into the lag gauge.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};

use gatemeter_lake::SourceOffsets;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{error, warn};

use crate::buffer::PartitionKey;
use crate::metrics::IngestMetrics;

/// What the rebalance callback tells the ingest loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    Assigned(Vec<PartitionKey>),
    Revoked(Vec<PartitionKey>),
}

pub struct LakeSeekContext {
    /// The lake's committed positions, kept current by the ingest loop.
    pub committed: Arc<Mutex<SourceOffsets>>,
    pub changes: Sender<AssignmentChange>,
    pub metrics: IngestMetrics,
}

fn keys(tpl: &TopicPartitionList) -> Vec<PartitionKey> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for LakeSeekContext {
    fn stats(&self, statistics: Statistics) {
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (topic, topic_stats) in &statistics.topics {
            for (partition, stats) in &topic_stats.partitions {
                if *partition < 0 || stats.hi_offset < 0 {
                    continue;
                }
                let position = committed
                    .get(topic)
                    .and_then(|p| p.get(partition))
                    .copied()
                    .unwrap_or(stats.lo_offset.max(0));
                self.metrics
                    .lag
                    .with_label_values(&[topic.as_str(), &partition.to_string()])
                    .set((stats.hi_offset - position).max(0));
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition is how `--until-caught-up` learns it is done, not
        // a fault.
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            return;
        }
        self.metrics.consumer_errors.inc();
        warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for LakeSeekContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions = keys(tpl);
                {
                    let committed = self
                        .committed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    for (topic, partition) in &partitions {
                        // The lake, not Kafka's group offset, says where to resume.
                        let offset = committed
                            .get(topic)
                            .and_then(|p| p.get(partition))
                            .map_or(Offset::Beginning, |next| Offset::Offset(*next));
                        if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                            error!(%e, topic, partition, "cannot set the start offset");
                        }
                    }
                }
                if let Err(e) = consumer.assign(tpl) {
                    error!(%e, "assign failed");
                }
                let _ = self.changes.send(AssignmentChange::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(e) = consumer.unassign() {
                    error!(%e, "unassign failed");
                }
                let _ = self.changes.send(AssignmentChange::Revoked(keys(tpl)));
            }
            other => {
                self.metrics.consumer_errors.inc();
                error!(?other, "rebalance error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_partition_is_not_counted_as_a_consumer_error_and_other_errors_are() {
        let metrics = IngestMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let (changes, _received) = std::sync::mpsc::channel();
        let context = LakeSeekContext {
            committed: Arc::default(),
            changes,
            metrics: metrics.clone(),
        };
        context.error(KafkaError::PartitionEOF(3), "fetch");
        context.error(KafkaError::Global(RDKafkaErrorCode::PartitionEOF), "fetch");
        assert_eq!(metrics.consumer_errors.get(), 0);
        context.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "down",
        );
        assert_eq!(metrics.consumer_errors.get(), 1);
    }
}
