//! The KPIs read from stored rollups plus raw rows equal the KPIs of the
//! raw rows alone: random traffic with duplicates, corrections, late
//! events and a price change, over random windows, groupings, buckets,
//! filters and team scopes. Counts, money and every ratio of them must be
//! identical; percentiles within 1% relative.

use std::io::Write;
use std::path::Path;

use gatemeter_lake::Lake;
use gatemeter_query::engine::VIEWS;
use gatemeter_query::output::json_rows;
use gatemeter_query::stored_rollups::{
    store_rollups, BY_MODEL_OMITS, BY_MODEL_ROLLUPS, DAILY_ROLLUPS, ROLLUP_VIEWS, SLICE_ROWS,
};
use gatemeter_query::{
    kpis, rollup_reads, KpiQuery, KpiSettings, QueryConfig, QueryEngine, RollupGrain, TeamScope,
    Window, DIMENSIONS, KPI_NAMES,
};

/// Stored days the KPI requests read, over every case.
static DAYS_READ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The rollup views SQL read through their own stored files, over all
/// cases.
static VIEWS_READ: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());
/// Files of the rollups by model the KPI requests read, over all cases.
static BY_MODEL_READ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// KPI requests whose window had no raw file left (stored rollups only),
/// over all cases.
static ROLLUPS_ONLY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
use serde_json::{json, Value};

/// 2026-11-02T00:00:00Z in µs.
const DAY_START: i64 = 1_793_577_600_000_000;
const HOUR: i64 = 3_600_000_000;
const HOURS: i64 = 7;

const BOOK_BEFORE: &str = "provider,model,effective_from,input_per_1m,output_per_1m,cache_read_per_1m,cache_write_per_1m,request_fee,web_search_per_1k\n\
acme,m,2026-01-01T00:00:00Z,5,15,0.5,6.25,0,10\n\
acme,m,2026-11-02T03:30:00Z,4,12,0.4,5,0.001,10\n\
beta,x,2026-01-01T00:00:00Z,1,2,0.1,1.25,0,0\n";
/// The same book after a price change: what every stored hour was priced
/// with no longer holds.
const BOOK_AFTER: &str = "provider,model,effective_from,input_per_1m,output_per_1m,cache_read_per_1m,cache_write_per_1m,request_fee,web_search_per_1k\n\
acme,m,2026-01-01T00:00:00Z,5,15,0.5,6.25,0,10\n\
acme,m,2026-11-02T03:30:00Z,4,12,0.4,5,0.001,10\n\
beta,x,2026-01-01T00:00:00Z,1.5,3,0.1,1.25,0,0\n";

/// A small deterministic generator (xorshift*), so a failing seed can be
/// replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The events of `requests` random requests over [`HOURS`] hours, as
/// (hour index, event) in the order a gateway would send them.
fn traffic(random: &mut Random, requests: usize) -> Vec<(i64, Value)> {
    let mut events = Vec::new();
    for r in 0..requests {
        let hour = random.below(HOURS as u64) as i64;
        let start = DAY_START + hour * HOUR + random.below(HOUR as u64 - 120_000_000) as i64;
        let team = *random.pick(&["search", "ads", "support"]);
        let key = format!("key-{}", random.below(4));
        let environment = *random.pick(&["prod", "staging"]);
        let app = *random.pick(&[Some("chat"), Some("agent"), None]);
        let org = *random.pick(&[Some("org-1"), None]);
        let key_type = *random.pick(&["platform", "platform", "byok"]);
        let (requested, first_provider) = *random.pick(&[("m", "acme"), ("x", "beta")]);
        let streaming = random.chance(50);
        let attempts = 1 + random.below(3) as i32;
        let mut at = start + random.below(20_000) as i64;
        for index in 0..attempts {
            let last = index == attempts - 1;
            let kind = if index == 0 {
                "initial"
            } else {
                *random.pick(&["retry", "provider_fallback", "model_fallback"])
            };
            let provider = if kind == "provider_fallback" {
                *random.pick(&["beta", "gamma"])
            } else {
                first_provider
            };
            let served = match kind {
                "model_fallback" => Some("x"),
                _ if random.chance(10) => None,
                _ => Some(requested),
            };
            let (outcome, error_class) = if !last {
                (
                    "error",
                    Some(*random.pick(&["timeout", "provider_error", "rate_limited"])),
                )
            } else {
                *random.pick(&[
                    ("success", None),
                    ("success", None),
                    ("success", None),
                    ("success", None),
                    ("partial", Some("stream_interrupted")),
                    ("error", Some("provider_error")),
                    ("error", Some("bad_request")),
                    ("cancelled", None),
                    ("rejected", Some("budget_exceeded")),
                ])
            };
            // Durations from 40 ms to about 40 s, with microseconds.
            let duration =
                40_000 + (random.below(1000).pow(3) / 25) as i64 + random.below(997) as i64;
            let end = at + duration;
            let mut event = json!({
                "schema_version": 1,
                "environment": environment,
                "team": team,
                "api_key_id": key,
                "key_type": key_type,
                "attempt_id": format!("A{r}-{index}"),
                "request_id": format!("R{r}"),
                "attempt_index": index,
                "attempt_kind": kind,
                "is_final": last,
                "request_start": rfc3339(start),
                "attempt_start": rfc3339(at),
                "attempt_end": rfc3339(end),
                "requested_model": requested,
                "provider": provider,
                "outcome": outcome,
                "streaming": streaming,
            });
            let fields = event.as_object_mut().expect("object");
            if let Some(class) = error_class {
                fields.insert("error_class".into(), json!(class));
            }
            if let Some(served) = served {
                fields.insert("served_model".into(), json!(served));
            }
            if let Some(app) = app {
                fields.insert("app".into(), json!(app));
            }
            if let Some(org) = org {
                fields.insert("org_id".into(), json!(org));
            }
            if streaming && outcome != "rejected" {
                let ttft = (random.below(duration as u64 / 1000).max(1)) as f64 + 0.25;
                fields.insert("ttft_ms".into(), json!(ttft));
            }
            if outcome != "rejected" && random.chance(90) {
                fields.insert("input_tokens".into(), json!(random.below(5000)));
                fields.insert("output_tokens".into(), json!(random.below(2000)));
                if random.chance(30) {
                    fields.insert("cache_read_tokens".into(), json!(random.below(3000)));
                }
                if random.chance(10) {
                    fields.insert("web_search_requests".into(), json!(random.below(3)));
                }
            }
            if random.chance(10) {
                fields.insert(
                    "cost_usd".into(),
                    json!(format!("0.{:06}", random.below(1_000_000))),
                );
            }
            events.push((hour, event));
            at = end + random.below(500_000) as i64;
        }
    }
    events
}

/// A copy of `event` with `event_version` 2 and other tokens and outcome:
/// a correction the gateway sends later.
fn corrected(random: &mut Random, event: &Value) -> Value {
    let mut event = event.clone();
    let fields = event.as_object_mut().expect("object");
    fields.insert("event_version".into(), json!(2));
    fields.insert("output_tokens".into(), json!(random.below(4000)));
    if fields.get("is_final") == Some(&json!(true)) && random.chance(50) {
        fields.insert("outcome".into(), json!("success"));
        fields.remove("error_class");
    }
    event
}

fn write_jsonl(path: &Path, events: &[Value]) {
    let mut file = std::fs::File::create(path).expect("jsonl");
    for event in events {
        writeln!(file, "{event}").expect("write");
    }
}

async fn import(dir: &Path, jsonl: &Path) {
    let (mut lake, _) = Lake::open_local(dir, None).await.expect("lake");
    let metrics =
        gatemeter_ingest::IngestMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let report = gatemeter_ingest::import_file(
        &mut lake,
        jsonl,
        gatemeter_ingest::FlushPolicy::default(),
        &super::test_privacy(),
        &metrics,
        |_| {},
    )
    .await
    .expect("import");
    assert_eq!(report.dead_letters, 0, "every generated event is valid");
}

/// An engine over `dir` priced by `book`, keeping `column_cache_bytes` of
/// decoded columns (raw and rollup files alike).
async fn engine(dir: &Path, book: &Path, column_cache_bytes: usize) -> QueryEngine {
    QueryEngine::open(QueryConfig {
        data_dir: dir.to_path_buf(),
        prices: Some(book.to_path_buf()),
        target_partitions: 2,
        column_cache_bytes,
        ..QueryConfig::default()
    })
    .await
    .expect("engine")
}

/// Stores the rollups of every hour, computing each in slices of about
/// `slice_rows` raw rows.
async fn store(engine: &QueryEngine, dir: &Path, slice_rows: u64) -> usize {
    let location = gatemeter_lake::LakeLocation::local(dir).expect("location");
    store_rollups(
        engine,
        &location,
        (i64::MAX, slice_rows),
        chrono::Duration::zero(),
        &mut |_| {},
    )
    .await
    .expect("rollups")
    .hours
}

/// A random KPI request: window, grouping, bucket, filter, scope, settings.
fn random_request(random: &mut Random) -> (Window, KpiQuery, KpiSettings) {
    // Ends on whole hours or anywhere in an hour, or open.
    let edge = |random: &mut Random| -> Option<i64> {
        match random.below(5) {
            0 => None,
            1 | 2 => Some(DAY_START + random.below(HOURS as u64 + 1) as i64 * HOUR),
            _ => Some(DAY_START + random.below((HOURS * HOUR) as u64) as i64),
        }
    };
    let (mut from, mut to) = (edge(random), edge(random));
    if let (Some(a), Some(b)) = (from, to) {
        if a == b {
            to = None;
        } else if a > b {
            (from, to) = (Some(b), Some(a));
        }
    }
    let mut query = KpiQuery::default();
    for _ in 0..random.below(3) {
        let dimension = random.pick(DIMENSIONS).to_string();
        if !query.group_by.contains(&dimension) {
            query.group_by.push(dimension);
        }
    }
    query.bucket = random
        .pick(&[None, None, Some("1h"), Some("6h"), Some("1d"), Some("15m")])
        .map(str::to_owned);
    if random.chance(25) {
        query.filters.push((
            random.pick(&["team", "provider", "key_type"]).to_string(),
            random
                .pick(&["search", "acme", "beta", "byok", "platform"])
                .to_string(),
        ));
    }
    if random.chance(25) {
        query.scope = TeamScope::only(["ads".to_owned(), "support".to_owned()]);
    }
    if random.chance(30) {
        for _ in 0..=random.below(2) {
            let kpi = random.pick(KPI_NAMES).to_string();
            if !query.kpis.contains(&kpi) {
                query.kpis.push(kpi);
            }
        }
    }
    let mut settings = KpiSettings::default();
    if random.chance(50) {
        settings.allowed_providers = Some(vec!["acme".to_owned(), "beta".to_owned()]);
    }
    if random.chance(30) {
        settings.tpm_limit = Some(50_000.0);
    }
    (Window { from, to }, query, settings)
}

/// Each row of a request for some KPIs holds what the same group's row
/// of the request for all of them holds, and no group of all's rows with
/// a figure of a chosen KPI is missing.
fn same_as_in_every_kpi(chosen: &[Value], all: &[Value], query: &KpiQuery, context: &str) {
    let keys = query.keys();
    let key_of = |row: &Value| -> Vec<Value> { keys.iter().map(|k| row[k].clone()).collect() };
    let by_key: std::collections::HashMap<String, &Value> = all
        .iter()
        .map(|row| (format!("{:?}", key_of(row)), row))
        .collect();
    for row in chosen {
        let whole = by_key
            .get(&format!("{:?}", key_of(row)))
            .unwrap_or_else(|| panic!("{context}: no group {row:?} among all KPIs"));
        let fields = row.as_object().expect("row");
        let names: Vec<&String> = fields.keys().filter(|k| !keys.contains(k)).collect();
        assert_eq!(names.len(), query.kpis.len(), "{context}: {row:?}");
        for name in names {
            assert_eq!(fields[name], whole[name], "{name}\n{context}");
        }
    }
    // Groups left out have none of the chosen KPIs' figures.
    let chosen_keys: std::collections::HashSet<String> = chosen
        .iter()
        .map(|row| format!("{:?}", key_of(row)))
        .collect();
    for row in all {
        if chosen_keys.contains(&format!("{:?}", key_of(row))) {
            continue;
        }
        for kpi in &query.kpis {
            let value = &row[kpi.as_str()];
            assert!(
                value.is_null()
                    || value.as_f64() == Some(0.0)
                    || value.as_str().and_then(|text| text.parse::<f64>().ok()) == Some(0.0),
                "{context}: group {row:?} left out with {kpi} = {value}"
            );
        }
    }
}

fn is_percentile(column: &str) -> bool {
    ["_p50_ms", "_p95_ms", "_p99_ms"]
        .iter()
        .any(|suffix| column.ends_with(suffix))
}

/// Runs `queries` random KPI requests both ways and compares them, then
/// the rolled-up views; returns how many requests, and how many views,
/// read at least one stored hour.
async fn compare(
    engine: &QueryEngine,
    random: &mut Random,
    queries: usize,
    stage: &str,
) -> (usize, usize) {
    let mut rolled_up = 0;
    // The random requests, and one over the whole lake (its day whole).
    let mut requests: Vec<_> = (0..queries).map(|_| random_request(random)).collect();
    requests.push((
        Window::default(),
        KpiQuery {
            group_by: vec!["team".to_owned()],
            ..KpiQuery::default()
        },
        KpiSettings::default(),
    ));
    for (window, query, settings) in requests {
        let context = format!("{stage}: {window:?} {query:?} {settings:?}");
        let (_, rolled) = engine
            .rollup_session(window, &query.scope, rollup_reads(&query))
            .await
            .expect("session");
        rolled_up += usize::from(!rolled.is_empty());
        DAYS_READ.fetch_add(rolled.days.len(), std::sync::atomic::Ordering::Relaxed);
        let by_model = rolled.files.iter().flatten();
        let by_model = by_model
            .filter(|file| file.path.contains("_by_model/"))
            .count();
        BY_MODEL_READ.fetch_add(by_model, std::sync::atomic::Ordering::Relaxed);
        ROLLUPS_ONLY.fetch_add(
            usize::from(rolled.rollups_only),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mixed = json_rows(
            &kpis(engine, window, &query, &settings)
                .await
                .expect(&context),
        )
        .expect("rows");
        let exact_query = KpiQuery {
            exact_percentiles: true,
            ..query.clone()
        };
        let exact = json_rows(
            &kpis(engine, window, &exact_query, &settings)
                .await
                .expect(&context),
        )
        .expect("rows");
        assert_eq!(mixed.len(), exact.len(), "{context}\n{mixed:?}\n{exact:?}");
        if !query.kpis.is_empty() {
            let every_kpi = KpiQuery {
                kpis: Vec::new(),
                ..query.clone()
            };
            let all = json_rows(
                &kpis(engine, window, &every_kpi, &settings)
                    .await
                    .expect(&context),
            )
            .expect("rows");
            same_as_in_every_kpi(&mixed, &all, &query, &context);
        }
        for (m, e) in mixed.iter().zip(&exact) {
            let (m, e) = (m.as_object().expect("row"), e.as_object().expect("row"));
            assert_eq!(
                m.keys().collect::<Vec<_>>(),
                e.keys().collect::<Vec<_>>(),
                "{context}"
            );
            for (column, exact_value) in e {
                let value = &m[column];
                if is_percentile(column) {
                    match (value.as_f64(), exact_value.as_f64()) {
                        (Some(v), Some(x)) => assert!(
                            (v - x).abs() <= 0.01 * x.abs() + 1e-9,
                            "{column}: {v} against {x}\n{context}"
                        ),
                        _ => assert_eq!(value, exact_value, "{column}\n{context}"),
                    }
                } else {
                    assert_eq!(value, exact_value, "{column}\n{context}\n{m:?}\n{e:?}");
                }
            }
        }
    }
    (rolled_up, compare_views(engine, random, stage).await)
}

/// The columns of `view` for comparing: each sketch as its count, median
/// and 99th percentile, everything else as it is; and an ORDER BY of the
/// latter.
async fn comparable(engine: &QueryEngine, view: &str) -> (String, String) {
    let session = engine.session(Window::default()).await.expect("session");
    let schema = session.table(view).await.expect("view").schema().clone();
    let (mut columns, mut order) = (Vec::new(), Vec::new());
    for field in schema.fields() {
        let name = field.name();
        if field.data_type() == &datafusion::arrow::datatypes::DataType::Binary {
            columns.push(format!(
                "ddsketch_count({name}) AS {name}_count, \
                 ddsketch_quantile({name}, 0.5) AS {name}_p50_ms, \
                 ddsketch_quantile({name}, 0.99) AS {name}_p99_ms"
            ));
        } else {
            columns.push(name.to_string());
            order.push(name.to_string());
        }
    }
    (columns.join(", "), order.join(", "))
}

/// Every rollup view SQL can read, with its definition over the raw rows:
/// the two hourly views, and the daily and by-model views derived from
/// them, spelled out here as docs/lake.md defines them (hours merged into
/// their UTC day; rows merged over all but the API key, environment, app
/// and org).
async fn rollup_views_in_sql(engine: &QueryEngine) -> Vec<(String, String)> {
    let mut views = Vec::new();
    for (position, (view, body)) in VIEWS
        .iter()
        .filter(|(name, _)| ROLLUP_VIEWS.contains(name))
        .enumerate()
    {
        views.push((view.to_string(), body.to_string()));
        let session = engine.session(Window::default()).await.expect("session");
        let schema = session.table(*view).await.expect("view").schema().clone();
        let derived = [
            (DAILY_ROLLUPS[position], true, false),
            (BY_MODEL_ROLLUPS[position], false, true),
            (BY_MODEL_ROLLUPS[position + 2], true, true),
        ];
        for (name, days, by_model) in derived {
            let (mut select, mut groups) = (Vec::new(), Vec::new());
            for field in schema.fields() {
                let column = field.name();
                if by_model && BY_MODEL_OMITS.contains(&column.as_str()) {
                    continue;
                }
                use datafusion::arrow::datatypes::DataType;
                match (column.as_str(), field.data_type()) {
                    ("first_request_start", _) => select.push(format!("min({column})")),
                    ("last_attempt_end", _) => select.push(format!("max({column})")),
                    (_, DataType::Binary) => select.push(format!("ddsketch_merge({column})")),
                    (_, DataType::Int64 | DataType::Decimal128(..)) => {
                        select.push(format!("sum({column})"))
                    }
                    ("hour", _) if days => {
                        select.push("date_trunc('day', hour)".to_owned());
                        groups.push("date_trunc('day', hour)".to_owned());
                    }
                    _ => {
                        select.push(column.to_string());
                        groups.push(column.to_string());
                    }
                }
                let last = select.len() - 1;
                select[last] = format!("{} AS {column}", select[last]);
            }
            let body = format!(
                "SELECT {} FROM ({body}) GROUP BY {}",
                select.join(", "),
                groups.join(", ")
            );
            views.push((name.to_owned(), body));
        }
    }
    views
}

/// Every rollup view as SQL reads it (stored rows for the periods whose
/// stamps hold, in a window's session or PostgreSQL's live one) equals its
/// definition over the raw rows; returns how many of the views read their
/// own stored files.
async fn compare_views(engine: &QueryEngine, random: &mut Random, stage: &str) -> usize {
    let (window, query, _) = random_request(random);
    let live = random.chance(40);
    let session = if live {
        let template = engine.live_session().await.expect("live session");
        let (session, slot) = engine.fork_session(&template).expect("fork");
        slot.set(query.scope.clone());
        session
    } else {
        engine
            .scoped_session(window, &query.scope)
            .await
            .expect("session")
    };
    let mut read_stored = 0;
    for (view, body) in rollup_views_in_sql(engine).await {
        let view = view.as_str();
        let context = format!(
            "{stage}: {view}, live {live}, {window:?}, {:?}",
            query.scope
        );
        let (columns, order) = comparable(engine, view).await;
        let rows = |sql: String| {
            let session = session.clone();
            async move {
                let batches = session
                    .sql(&sql)
                    .await
                    .expect(&sql)
                    .collect()
                    .await
                    .expect(&sql);
                json_rows(&batches).expect("rows")
            }
        };
        let read = rows(format!("SELECT {columns} FROM {view} ORDER BY {order}")).await;
        let raw = rows(format!(
            "WITH raw AS ({body}) SELECT {columns} FROM raw ORDER BY {order}"
        ))
        .await;
        assert_eq!(read.len(), raw.len(), "{context}");
        for (r, x) in read.iter().zip(&raw) {
            for (column, expected) in x.as_object().expect("row") {
                let value = &r[column];
                match (is_percentile(column), value.as_f64(), expected.as_f64()) {
                    (true, Some(v), Some(e)) => assert!(
                        (v - e).abs() <= 0.01 * e.abs() + 1e-9,
                        "{column}: {v} against {e}\n{context}"
                    ),
                    _ => assert_eq!(value, expected, "{column}\n{context}\n{r:?}\n{x:?}"),
                }
            }
        }
        let plan = rows(format!("EXPLAIN SELECT * FROM {view}")).await;
        let own_files = plan.iter().any(|row| {
            row.to_string()
                .contains(&format!("{}/{view}/", gatemeter_lake::ROLLUPS_DIR))
        });
        if own_files {
            read_stored += 1;
            VIEWS_READ
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(view.to_owned());
        }
    }
    read_stored
}

async fn one_case(seed: u64, column_cache_bytes: usize) {
    let mut random = Random(seed | 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let books = [BOOK_BEFORE, BOOK_AFTER].map(|text| {
        let path = work.path().join(format!("prices-{}.csv", text.len()));
        std::fs::write(&path, text).expect("book");
        path
    });
    let events = traffic(&mut random, 400);
    // The first delivery: hours 0–4, with some copies sent twice.
    let mut first = Vec::new();
    for (_, event) in events.iter().filter(|(hour, _)| *hour < 5) {
        first.push(event.clone());
        if random.chance(8) {
            first.push(event.clone());
        }
    }
    write_jsonl(&work.path().join("first.jsonl"), &first);
    import(dir.path(), &work.path().join("first.jsonl")).await;
    let before = engine(dir.path(), &books[0], column_cache_bytes).await;
    // Small slices: each hour's rows are computed in several parts and
    // merged, as a big hour's are.
    assert!(store(&before, dir.path(), 40).await >= 5, "seed {seed}");
    let (mut used, mut views_used) = (0, 0);
    let mut tally = |(requests, views): (usize, usize)| {
        used += requests;
        views_used += views;
    };
    let before = engine(dir.path(), &books[0], column_cache_bytes).await;
    tally(compare(&before, &mut random, 12, &format!("seed {seed}, stored")).await);

    // Late: corrections and copies into hours 1 and 3, and hours 5–6.
    let mut late = Vec::new();
    for (hour, event) in &events {
        match hour {
            1 | 3 if random.chance(6) => late.push(corrected(&mut random, event)),
            1 | 3 if random.chance(4) => late.push(event.clone()),
            5 | 6 => late.push(event.clone()),
            _ => {}
        }
    }
    write_jsonl(&work.path().join("late.jsonl"), &late);
    import(dir.path(), &work.path().join("late.jsonl")).await;
    before.refresh().await.expect("refresh");
    tally(
        compare(
            &before,
            &mut random,
            12,
            &format!("seed {seed}, late events"),
        )
        .await,
    );
    assert_eq!(
        store(&before, dir.path(), SLICE_ROWS).await,
        4,
        "seed {seed}: hours 1, 3, 5 and 6 again"
    );
    before.refresh().await.expect("refresh");
    tally(
        compare(
            &before,
            &mut random,
            12,
            &format!("seed {seed}, stored again"),
        )
        .await,
    );

    // Compaction rewrites every hour's files: raw until stored again.
    let (mut lake, _) = Lake::open_local(dir.path(), None).await.expect("lake");
    for plan in lake.compaction_plans(i64::MAX) {
        lake.compact(&plan).await.expect("compact");
    }
    before.refresh().await.expect("refresh");
    tally(compare(&before, &mut random, 8, &format!("seed {seed}, compacted")).await);
    store(&before, dir.path(), SLICE_ROWS).await;
    before.refresh().await.expect("refresh");
    tally(
        compare(
            &before,
            &mut random,
            8,
            &format!("seed {seed}, compacted, stored"),
        )
        .await,
    );

    // Another price book: no stored hour holds for it until stored again.
    let after = engine(dir.path(), &books[1], column_cache_bytes).await;
    let (_, rolled) = after
        .rollup_session(Window::default(), &TeamScope::all(), RollupGrain::Days)
        .await
        .expect("session");
    assert!(
        rolled.is_empty(),
        "seed {seed}: hours priced with the old book"
    );
    assert_eq!(
        store(&after, dir.path(), SLICE_ROWS).await as i64,
        HOURS,
        "seed {seed}"
    );
    after.refresh().await.expect("refresh");
    tally(compare(&after, &mut random, 12, &format!("seed {seed}, new prices")).await);
    assert!(
        used >= 20,
        "seed {seed}: only {used} requests read stored hours"
    );
    assert!(
        views_used >= 4,
        "seed {seed}: only {views_used} views read stored hours"
    );
}

#[test]
fn kpis_from_rollups_and_raw_rows_equal_kpis_from_raw_rows() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // One case reads every file from Parquet, the other through the
    // column cache.
    for (seed, column_cache_bytes) in [(20_261_203_u64, 0), (31_337, 16 << 20)] {
        runtime.block_on(one_case(seed, column_cache_bytes));
    }
    let days = DAYS_READ.load(std::sync::atomic::Ordering::Relaxed);
    assert!(days >= 4, "only {days} stored days were read");
    let by_model = BY_MODEL_READ.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        by_model >= 20,
        "only {by_model} files of the rollups by model were read"
    );
    let rollups_only = ROLLUPS_ONLY.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        rollups_only >= 2,
        "only {rollups_only} requests read stored rollups alone"
    );
    let views = VIEWS_READ
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let expected: std::collections::BTreeSet<String> = ROLLUP_VIEWS
        .iter()
        .chain(&DAILY_ROLLUPS)
        .chain(&BY_MODEL_ROLLUPS)
        .map(|view| view.to_string())
        .collect();
    assert_eq!(views, expected, "views that read their own stored files");
}
