//! `gatemeter produce`: synthetic or replayed gateway traffic into Kafka (or
//! a JSONL file), paced, with a progress bar.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::error::CliError;
use crate::settings::Settings;
use crate::synth::replay::parse_trace;
use crate::synth::{Generator, GeneratorConfig, MessageKind, RequestShape, Scenario};

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Client requests per second to send (0 = as fast as possible).
    #[arg(long, env = "GATEMETER_PRODUCE_RATE", default_value_t = 1000.0)]
    pub rate: f64,
    /// Client requests to generate (each is one or more attempt events);
    /// with --replay, at most this many rows of the trace.
    #[arg(long, env = "GATEMETER_PRODUCE_COUNT", default_value_t = 10_000)]
    pub count: u64,
    /// Traffic mix.
    #[arg(long, env = "GATEMETER_PRODUCE_SCENARIO", value_enum, default_value_t = Scenario::Default)]
    pub scenario: Scenario,
    /// Take arrival times and token sizes from an Azure or BurstGPT trace CSV.
    #[arg(long, env = "GATEMETER_PRODUCE_REPLAY")]
    pub replay: Option<PathBuf>,
    /// Mean client requests per second of event time, when it should differ
    /// from the sending rate (e.g. a month of history written to a file)
    /// [default: --rate, or 1000 when --rate is 0].
    #[arg(long, env = "GATEMETER_PRODUCE_SIMULATED_RATE")]
    pub simulated_rate: Option<f64>,
    /// Random seed: the same seed gives the same traffic.
    #[arg(long, env = "GATEMETER_PRODUCE_SEED", default_value_t = 42)]
    pub seed: u64,
    /// `request_start` of the first request, RFC 3339 [default: now].
    #[arg(long, env = "GATEMETER_PRODUCE_START")]
    pub start: Option<DateTime<Utc>>,
    /// Share of events sent twice (producer retries).
    #[arg(long, env = "GATEMETER_PRODUCE_DUPLICATES", default_value_t = 0.0)]
    pub duplicates: f64,
    /// Share of events followed by a corrected version (event_version 1).
    #[arg(long, env = "GATEMETER_PRODUCE_CORRECTIONS", default_value_t = 0.0)]
    pub corrections: f64,
    /// Share of events followed by a malformed message (dead-letter classes in rotation).
    #[arg(long, env = "GATEMETER_PRODUCE_MALFORMED", default_value_t = 0.0)]
    pub malformed: f64,
    /// Write JSON lines to this file (`-` for stdout) instead of Kafka.
    #[arg(long, env = "GATEMETER_PRODUCE_OUTPUT")]
    pub output: Option<PathBuf>,
    /// Create the topic with this many partitions when it does not exist.
    #[arg(long, env = "GATEMETER_PRODUCE_PARTITIONS", default_value_t = 4)]
    pub partitions: i32,
}

/// What was produced, by kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProduceReport {
    pub requests: u64,
    pub events: u64,
    pub duplicates: u64,
    pub corrections: u64,
    pub malformed: u64,
}

impl ProduceReport {
    fn count(&mut self, kind: MessageKind) {
        match kind {
            MessageKind::Event => self.events += 1,
            MessageKind::Duplicate => self.duplicates += 1,
            MessageKind::Correction => self.corrections += 1,
            MessageKind::Malformed(_) => self.malformed += 1,
        }
    }

    pub fn messages(&self) -> u64 {
        self.events + self.duplicates + self.corrections + self.malformed
    }
}

/// Where messages go.
pub enum Sink {
    Kafka {
        producer: BaseProducer,
        topic: String,
    },
    Lines(Box<dyn Write + Send>),
}

impl Sink {
    fn send(&mut self, key: &str, payload: &[u8]) -> Result<(), CliError> {
        match self {
            Sink::Kafka { producer, topic } => {
                let mut record = BaseRecord::to(topic.as_str()).key(key).payload(payload);
                loop {
                    match producer.send(record) {
                        Ok(()) => return Ok(()),
                        Err((
                            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                            returned,
                        )) => {
                            producer.poll(Duration::from_millis(50));
                            record = returned;
                        }
                        Err((error, _)) => return Err(error.into()),
                    }
                }
            }
            Sink::Lines(out) => out
                .write_all(payload)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| CliError::io("output", e)),
        }
    }

    fn finish(self) -> Result<(), CliError> {
        match self {
            Sink::Kafka { producer, .. } => Ok(producer.flush(Duration::from_secs(60))?),
            Sink::Lines(mut out) => out.flush().map_err(|e| CliError::io("output", e)),
        }
    }
}

pub fn producer_config(brokers: &str, options: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "200000");
    for (key, value) in options {
        config.set(key, value);
    }
    config
}

/// Creates the topic if it is missing (an existing topic is left as it is).
pub async fn ensure_topic(
    brokers: &str,
    options: &[(String, String)],
    topic: &str,
    partitions: i32,
) -> Result<(), CliError> {
    let admin: AdminClient<DefaultClientContext> = producer_config(brokers, options).create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(CliError::Usage(format!(
                    "cannot create topic {name}: {code}"
                )))
            }
        }
    }
    Ok(())
}

pub async fn open_sink(settings: &Settings, args: &ProduceArgs) -> Result<Sink, CliError> {
    match &args.output {
        Some(path) if path.as_os_str() == "-" => Ok(Sink::Lines(Box::new(
            std::io::BufWriter::new(std::io::stdout()),
        ))),
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| CliError::io(path.display(), e))?;
            Ok(Sink::Lines(Box::new(std::io::BufWriter::new(file))))
        }
        None => {
            let source = settings.kafka_source()?;
            ensure_topic(
                &source.brokers,
                &source.options,
                &source.topic,
                args.partitions,
            )
            .await?;
            Ok(Sink::Kafka {
                producer: producer_config(&source.brokers, &source.options).create()?,
                topic: source.topic,
            })
        }
    }
}

pub fn generator_for(args: &ProduceArgs) -> Generator {
    Generator::new(GeneratorConfig {
        seed: args.seed,
        scenario: args.scenario,
        start_micros: args.start.unwrap_or_else(Utc::now).timestamp_micros(),
        requests_per_second: match args.simulated_rate {
            Some(rate) => rate,
            None if args.rate > 0.0 => args.rate,
            None => 1000.0,
        },
        duplicate_share: args.duplicates,
        correction_share: args.corrections,
        malformed_share: args.malformed,
    })
}

fn load_replay(args: &ProduceArgs) -> Result<Option<Vec<RequestShape>>, CliError> {
    let Some(path) = &args.replay else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path.display(), e))?;
    let start = args.start.unwrap_or_else(Utc::now).timestamp_micros();
    parse_trace(&text, start)
        .map(Some)
        .map_err(|source| CliError::Trace {
            path: path.display().to_string(),
            source,
        })
}

/// Sends `args.count` requests' messages into `sink`, paced at `args.rate`.
pub async fn produce_into(
    sink: &mut Sink,
    generator: &mut Generator,
    args: &ProduceArgs,
    progress: &ProgressBar,
) -> Result<ProduceReport, CliError> {
    let replay = load_replay(args)?;
    let total = replay
        .as_ref()
        .map_or(args.count, |rows| args.count.min(rows.len() as u64));
    progress.set_length(total);
    let started = Instant::now();
    let mut report = ProduceReport::default();
    for index in 0..total {
        let shape = replay
            .as_ref()
            .and_then(|rows| rows.get(index as usize).copied());
        for message in generator.next_request(shape) {
            sink.send(&message.key, &message.payload)?;
            report.count(message.kind);
        }
        report.requests += 1;
        progress.inc(1);
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(report.requests as f64 / args.rate);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        if let Sink::Kafka { producer, .. } = sink {
            producer.poll(Duration::ZERO);
        }
    }
    Ok(report)
}

pub async fn run(settings: &Settings, args: &ProduceArgs) -> Result<(), CliError> {
    if !(0.0..=1.0).contains(&args.duplicates)
        || !(0.0..=1.0).contains(&args.corrections)
        || !(0.0..=1.0).contains(&args.malformed)
    {
        return Err(CliError::Usage(
            "--duplicates, --corrections and --malformed are shares between 0 and 1".into(),
        ));
    }
    if args
        .simulated_rate
        .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
    {
        return Err(CliError::Usage(
            "--simulated-rate must be a positive number of requests per second".into(),
        ));
    }
    let mut sink = open_sink(settings, args).await?;
    let mut generator = generator_for(args);
    let to_stdout = args.output.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let progress = if to_stdout {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.count)
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} requests  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = produce_into(&mut sink, &mut generator, args, &progress).await?;
    sink.finish()?;
    progress.finish_and_clear();
    eprintln!(
        "produced {} requests: {} events, {} duplicates, {} corrections, {} malformed ({} messages)",
        report.requests,
        report.events,
        report.duplicates,
        report.corrections,
        report.malformed,
        report.messages()
    );
    Ok(())
}
