//! Tests of the settings: flags, environment and config file, each over
//! the one before, and the errors that name the bad value.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(flatten)]
    flush: FlushOptions,
}

#[test]
fn flags_beat_the_file_which_beats_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gatemeter.toml");
    std::fs::write(
        &path,
        "data_dir = \"/lake\"\n[kafka]\nbrokers = \"file:9092\"\ntopic = \"from-file\"\noptions = { \"client.id\" = \"x\" }\n[ingest]\nflush_rows = 7\n",
    )
    .expect("write");
    let cli = TestCli::parse_from([
        "t",
        "--config",
        path.to_str().expect("utf-8"),
        "--brokers",
        "flag:9092",
        "-X",
        "linger.ms=5",
        "--flush-interval-ms",
        "250",
    ]);
    let settings = Settings::resolve(&cli.global, &cli.flush).expect("resolves");
    assert_eq!(settings.data_dir, PathBuf::from("/lake"));
    assert_eq!(settings.brokers.as_deref(), Some("flag:9092"));
    assert_eq!(settings.topic, "from-file");
    assert_eq!(settings.group, DEFAULT_GROUP);
    assert_eq!(settings.flush.max_rows, 7);
    assert_eq!(settings.flush.max_age, Duration::from_millis(250));
    assert_eq!(
        settings.kafka_options,
        vec![
            ("client.id".into(), "x".into()),
            ("linger.ms".into(), "5".into())
        ]
    );
}

#[test]
fn the_example_config_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/gatemeter.toml");
    let cli = TestCli::parse_from(["t", "--config", path]);
    let settings = Settings::resolve(&cli.global, &cli.flush).expect("example config");
    assert_eq!(settings.topic, DEFAULT_TOPIC);
    assert_eq!(settings.flush, FlushPolicy::default());
    assert_eq!(
        settings.kafka_options,
        vec![("client.id".into(), "gatemeter".into())]
    );
    // Without a total, every query thread may hold one query's limit.
    assert_eq!(settings.query.total_memory_bytes, 2 * (512 << 20));
    let flagged = TestCli::parse_from(["t", "--query-total-memory-mb", "100"]);
    let settings = Settings::resolve(&flagged.global, &flagged.flush).expect("flags");
    assert_eq!(
        settings.query.total_memory_bytes,
        512 << 20,
        "never below one query's limit"
    );
}

#[test]
fn config_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[kafka]\nbrokerz = \"x\"\n").expect("write");
    let cli = TestCli::parse_from(["t", "--config", path.to_str().expect("utf-8")]);
    let err = Settings::resolve(&cli.global, &cli.flush).expect_err("unknown key");
    let text = err.to_string();
    assert!(
        text.contains("bad.toml") && text.contains("brokerz"),
        "{text}"
    );
    let cli = TestCli::parse_from(["t", "-X", "novalue"]);
    let err = Settings::resolve(&cli.global, &cli.flush).expect_err("bad -X");
    assert!(err.to_string().contains("KEY=VALUE"));
}
