//! Fault injection with librdkafka's in-process mock cluster: fetch errors
//! and a broker going down and coming back mid-run. Ingest must resume by
//! itself and the lake must hold every message exactly once.

use std::collections::BTreeSet;
use std::fs::File;
use std::time::{Duration, Instant};

use arrow_array::{Array, Int32Array, Int64Array};
use gatemeter_ingest::{run_ingest, FlushPolicy, IngestMetrics, IngestOptions, KafkaSource};
use gatemeter_lake::Lake;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const TOPIC: &str = "attempts";
const MESSAGES: usize = 6_000;

fn event(i: usize) -> String {
    format!(
        r#"{{"schema_version":1,"attempt_id":"att-{i}","request_id":"req-{i}","attempt_index":0,
        "attempt_kind":"initial","is_final":true,"request_start":"2026-11-01T10:00:00Z",
        "attempt_start":"2026-11-01T10:00:00.010Z","attempt_end":"2026-11-01T10:00:01Z",
        "requested_model":"gpt-4o","provider":"openai","api_key_id":"k","environment":"prod","outcome":"success"}}"#
    )
}

async fn produce(brokers: &str, range: std::ops::Range<usize>) -> BTreeSet<(i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut deliveries = Vec::new();
    for i in range {
        let key = format!("req-{i}");
        let payload = event(i);
        let record = FutureRecord::to(TOPIC).key(&key).payload(&payload);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("queued"),
        );
    }
    let mut positions = BTreeSet::new();
    for delivery in deliveries {
        let delivered = delivery.await.expect("not cancelled").expect("delivered");
        positions.insert((delivered.partition, delivered.offset));
    }
    positions
}

fn lake_positions(lake: &Lake, dir: &std::path::Path) -> Vec<(i32, i64)> {
    let mut positions = Vec::new();
    for file in lake.data_files() {
        let reader = ParquetRecordBatchReaderBuilder::try_new(
            File::open(dir.join(&file.path)).expect("open"),
        )
        .expect("parquet")
        .build()
        .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let partitions = batch.column_by_name("_partition").expect("column");
            let partitions = partitions
                .as_any()
                .downcast_ref::<Int32Array>()
                .expect("int32");
            let offsets = batch.column_by_name("_offset").expect("column");
            let offsets = offsets
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64");
            for row in 0..batch.num_rows() {
                positions.push((partitions.value(row), offsets.value(row)));
            }
        }
    }
    positions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors_and_a_broker_outage_lose_nothing_and_duplicate_nothing() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    cluster.create_topic(TOPIC, 4, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let mut expected = produce(&brokers, 0..MESSAGES / 2).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let (lake, _) = Lake::open_local(dir.path(), None).await.expect("lake");
    let metrics = IngestMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let options = IngestOptions {
        source: KafkaSource {
            brokers: brokers.clone(),
            topic: TOPIC.into(),
            group: "faults".into(),
            instance_id: None,
            options: vec![("reconnect.backoff.max.ms".into(), "500".into())],
        },
        policy: FlushPolicy {
            max_rows: 500,
            max_bytes: 1 << 20,
            max_age: Duration::from_millis(300),
        },
        privacy: std::sync::Arc::new(gatemeter_schema::PrivacyPolicy::new(
            b"mock cluster privacy key".to_vec(),
            gatemeter_schema::FieldHandling::KeyedHash,
            gatemeter_schema::FieldHandling::Keep,
        )),
        until_caught_up: false,
        catch_up_deadline: gatemeter_ingest::DEFAULT_CATCH_UP_DEADLINE,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ingest = tokio::spawn(run_ingest(options, lake, metrics.clone(), None, async {
        let _ = stopped.await;
    }));

    // Fetches fail a few times, then a broker that leads some partitions goes
    // away while more traffic arrives, and comes back.
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.broker_down(2).expect("down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.broker_up(2).expect("up");
    expected.extend(produce(&brokers, MESSAGES / 2..MESSAGES).await);
    assert_eq!(expected.len(), MESSAGES);

    let deadline = Instant::now() + Duration::from_secs(90);
    while metrics.totals().0 < MESSAGES as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(());
    let report = ingest.await.expect("joined").expect("ingest ran");
    assert_eq!(
        report.stored, MESSAGES as u64,
        "ingest resumed and stored everything"
    );
    assert!(
        metrics.consumer_errors.get() > 0,
        "the outage was seen by the consumer"
    );

    let (lake, _) = Lake::open_local(dir.path(), None).await.expect("reopen");
    let stored = lake.stored_files().await.expect("list");
    let named = lake.data_files().count() + lake.dead_letter_files().count();
    assert_eq!(
        stored.len(),
        named,
        "every file written was committed: {stored:?}"
    );
    let positions = lake_positions(&lake, dir.path());
    let unique: BTreeSet<(i32, i64)> = positions.iter().copied().collect();
    assert_eq!(positions.len(), unique.len(), "no message stored twice");
    assert_eq!(unique, expected, "every message stored");
    drop(cluster);
}
