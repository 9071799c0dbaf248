//! The broker-and-client ceiling for the ingest benchmark: an rdkafka
//! consumer with the same fetch settings that reads a topic to its end and
//! discards every message. Prints `messages=N bytes=B seconds=S`.
//!
//! usage: bare_consumer BROKERS TOPIC

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(brokers), Some(topic)) = (args.next(), args.next()) else {
        return Err("usage: bare_consumer BROKERS TOPIC".into());
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("bare-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let partitions = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))?
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let mut at_end = BTreeSet::new();
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut started: Option<Instant> = None;
    while at_end.len() < partitions {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                started.get_or_insert_with(Instant::now);
                messages += 1;
                bytes += message.payload().map_or(0, |p| p.len() as u64);
                at_end.remove(&message.partition());
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {}
        }
    }
    let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    println!("messages={messages} bytes={bytes} seconds={seconds:.3}");
    Ok(())
}
