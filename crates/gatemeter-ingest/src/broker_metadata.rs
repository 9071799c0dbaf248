//! What the broker says of the topic: its partitions and their
//! watermarks, read by a client that never joins the consumer group.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::catch_up::Watermarks;
use crate::error::IngestError;

/// A client reading the topic's metadata and watermarks: it never joins
/// the group, so it must not carry the ingester's static member id.
pub(crate) fn metadata_client(config: &ClientConfig) -> Result<BaseConsumer, IngestError> {
    let mut config = config.clone();
    config.remove("group.instance.id");
    Ok(config.create()?)
}

/// The watermarks of `partitions` of `topic`.
pub(crate) fn watermarks(
    client: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Watermarks>, IngestError> {
    partitions
        .iter()
        .map(|&partition| {
            let (low, high) = client.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
            Ok((partition, Watermarks { low, high }))
        })
        .collect()
}

/// The partition numbers of `topic`, from the broker's metadata.
pub(crate) fn partition_ids(client: &BaseConsumer, topic: &str) -> Result<Vec<i32>, IngestError> {
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}
