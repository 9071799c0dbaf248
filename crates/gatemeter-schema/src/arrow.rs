//! The Arrow schema of the `attempts` table and the row → batch conversion.
//! Column names are the event's field names plus the `_`-prefixed source
//! columns; `schemas/README.md` lists the mapping.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::event::{AttemptRow, EpochMicros, Usd};

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn money_type() -> DataType {
    DataType::Decimal128(Usd::PRECISION, Usd::SCALE as i8)
}

/// Schema of the `attempts` Parquet files (without the Hive `date`/`hour`
/// partition columns, which live in the path).
pub fn attempts_schema() -> SchemaRef {
    use DataType::{Boolean, Float64, Int32, Int64, Utf8};
    let field =
        |name: &str, data_type: DataType, nullable: bool| Field::new(name, data_type, nullable);
    Arc::new(Schema::new(vec![
        field("schema_version", Int32, false),
        field("attempt_id", Utf8, false),
        field("event_version", Int64, false),
        field("request_id", Utf8, false),
        field("attempt_index", Int32, false),
        field("attempt_kind", Utf8, false),
        field("is_final", Boolean, false),
        field("request_start", timestamp_type(), false),
        field("attempt_start", timestamp_type(), false),
        field("attempt_end", timestamp_type(), false),
        field("ttft_ms", Float64, true),
        field("backoff_ms", Float64, true),
        field("operation", Utf8, false),
        field("requested_model", Utf8, false),
        field("served_model", Utf8, true),
        field("provider", Utf8, false),
        field("region", Utf8, true),
        field("org_id", Utf8, true),
        field("team", Utf8, false),
        field("app", Utf8, true),
        field("user_id", Utf8, true),
        field("api_key_id", Utf8, false),
        field("environment", Utf8, false),
        field("key_type", Utf8, false),
        field("streaming", Boolean, false),
        field("outcome", Utf8, false),
        field("http_status", Int32, true),
        field("error_class", Utf8, true),
        field("finish_reason", Utf8, true),
        field("input_tokens", Int64, true),
        field("output_tokens", Int64, true),
        field("cache_read_tokens", Int64, true),
        field("cache_write_tokens", Int64, true),
        field("reasoning_tokens", Int64, true),
        field("tool_calls", Int64, true),
        field("web_search_requests", Int64, true),
        field("cost_usd", money_type(), true),
        field("cost_tools_usd", money_type(), true),
        field("billed", Boolean, false),
        field("tags", Utf8, true),
        field("_topic", Utf8, false),
        field("_partition", Int32, false),
        field("_offset", Int64, false),
        field("_ingested_at", timestamp_type(), false),
        // Added after the first release, so after the source columns: a
        // lake written before has them appended to its table schema, and
        // its older files read them as null (docs/lake.md, "Schema changes").
        field("retry_after_ms", Float64, true),
        field("zero_data_retention", Boolean, true),
    ]))
}

/// `batch` (rows of an attempts file, of this or an earlier release) as
/// [`attempts_schema`]: its columns by name, and a column it lacks (added
/// since its file was written) as nulls.
pub fn as_attempts(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = attempts_schema();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => Ok(Arc::clone(column)),
            None if field.is_nullable() => Ok(arrow_array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
            None => Err(ArrowError::SchemaError(format!(
                "an attempts file without its column {}",
                field.name()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

/// Column builders for one batch, in schema order.
struct Columns {
    schema_version: Int32Builder,
    attempt_id: StringBuilder,
    event_version: Int64Builder,
    request_id: StringBuilder,
    attempt_index: Int32Builder,
    attempt_kind: StringBuilder,
    is_final: BooleanBuilder,
    request_start: TimestampMicrosecondBuilder,
    attempt_start: TimestampMicrosecondBuilder,
    attempt_end: TimestampMicrosecondBuilder,
    ttft_ms: Float64Builder,
    backoff_ms: Float64Builder,
    operation: StringBuilder,
    requested_model: StringBuilder,
    served_model: StringBuilder,
    provider: StringBuilder,
    region: StringBuilder,
    org_id: StringBuilder,
    team: StringBuilder,
    app: StringBuilder,
    user_id: StringBuilder,
    api_key_id: StringBuilder,
    environment: StringBuilder,
    key_type: StringBuilder,
    streaming: BooleanBuilder,
    outcome: StringBuilder,
    http_status: Int32Builder,
    error_class: StringBuilder,
    finish_reason: StringBuilder,
    input_tokens: Int64Builder,
    output_tokens: Int64Builder,
    cache_read_tokens: Int64Builder,
    cache_write_tokens: Int64Builder,
    reasoning_tokens: Int64Builder,
    tool_calls: Int64Builder,
    web_search_requests: Int64Builder,
    cost_usd: Decimal128Builder,
    cost_tools_usd: Decimal128Builder,
    billed: BooleanBuilder,
    tags: StringBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    ingested_at: TimestampMicrosecondBuilder,
    retry_after_ms: Float64Builder,
    zero_data_retention: BooleanBuilder,
}

impl Columns {
    fn with_capacity(rows: usize) -> Self {
        let s = || StringBuilder::with_capacity(rows, rows * 16);
        let i32b = || Int32Builder::with_capacity(rows);
        let i64b = || Int64Builder::with_capacity(rows);
        let f64b = || Float64Builder::with_capacity(rows);
        let bool_b = || BooleanBuilder::with_capacity(rows);
        let ts = || TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
        let money = || {
            Decimal128Builder::with_capacity(rows)
                .with_precision_and_scale(Usd::PRECISION, Usd::SCALE as i8)
                .unwrap_or_else(|_| Decimal128Builder::with_capacity(rows))
        };
        Columns {
            schema_version: i32b(),
            attempt_id: s(),
            event_version: i64b(),
            request_id: s(),
            attempt_index: i32b(),
            attempt_kind: s(),
            is_final: bool_b(),
            request_start: ts(),
            attempt_start: ts(),
            attempt_end: ts(),
            ttft_ms: f64b(),
            backoff_ms: f64b(),
            operation: s(),
            requested_model: s(),
            served_model: s(),
            provider: s(),
            region: s(),
            org_id: s(),
            team: s(),
            app: s(),
            user_id: s(),
            api_key_id: s(),
            environment: s(),
            key_type: s(),
            streaming: bool_b(),
            outcome: s(),
            http_status: i32b(),
            error_class: s(),
            finish_reason: s(),
            input_tokens: i64b(),
            output_tokens: i64b(),
            cache_read_tokens: i64b(),
            cache_write_tokens: i64b(),
            reasoning_tokens: i64b(),
            tool_calls: i64b(),
            web_search_requests: i64b(),
            cost_usd: money(),
            cost_tools_usd: money(),
            billed: bool_b(),
            tags: s(),
            topic: s(),
            partition: i32b(),
            offset: i64b(),
            ingested_at: ts(),
            retry_after_ms: f64b(),
            zero_data_retention: bool_b(),
        }
    }

    fn append(&mut self, row: &AttemptRow, ingested_at: EpochMicros) {
        let e = &row.event;
        self.schema_version.append_value(e.schema_version);
        self.attempt_id.append_value(&e.attempt_id);
        self.event_version.append_value(e.event_version);
        self.request_id.append_value(&e.request_id);
        self.attempt_index.append_value(e.attempt_index);
        self.attempt_kind.append_value(e.attempt_kind.as_str());
        self.is_final.append_value(e.is_final);
        self.request_start.append_value(e.request_start);
        self.attempt_start.append_value(e.attempt_start);
        self.attempt_end.append_value(e.attempt_end);
        self.ttft_ms.append_option(e.ttft_ms);
        self.backoff_ms.append_option(e.backoff_ms);
        self.operation.append_value(&e.operation);
        self.requested_model.append_value(&e.requested_model);
        self.served_model.append_option(e.served_model.as_deref());
        self.provider.append_value(&e.provider);
        self.region.append_option(e.region.as_deref());
        self.org_id.append_option(e.org_id.as_deref());
        self.team.append_value(&e.team);
        self.app.append_option(e.app.as_deref());
        self.user_id.append_option(e.user_id.as_deref());
        self.api_key_id.append_value(&e.api_key_id);
        self.environment.append_value(&e.environment);
        self.key_type.append_value(e.key_type.as_str());
        self.streaming.append_value(e.streaming);
        self.outcome.append_value(e.outcome.as_str());
        self.http_status.append_option(e.http_status);
        self.error_class
            .append_option(e.error_class.map(|c| c.as_str()));
        self.finish_reason.append_option(e.finish_reason.as_deref());
        self.input_tokens.append_option(e.input_tokens);
        self.output_tokens.append_option(e.output_tokens);
        self.cache_read_tokens.append_option(e.cache_read_tokens);
        self.cache_write_tokens.append_option(e.cache_write_tokens);
        self.reasoning_tokens.append_option(e.reasoning_tokens);
        self.tool_calls.append_option(e.tool_calls);
        self.web_search_requests
            .append_option(e.web_search_requests);
        self.cost_usd.append_option(e.cost_usd.map(|u| u.0));
        self.cost_tools_usd
            .append_option(e.cost_tools_usd.map(|u| u.0));
        self.billed.append_value(e.billed);
        self.tags.append_option(e.tags.as_deref());
        self.topic.append_value(&row.source.topic);
        self.partition.append_value(row.source.partition);
        self.offset.append_value(row.source.offset);
        self.ingested_at.append_value(ingested_at);
        self.retry_after_ms.append_option(e.retry_after_ms);
        self.zero_data_retention
            .append_option(e.zero_data_retention);
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.schema_version.finish()),
            Arc::new(self.attempt_id.finish()),
            Arc::new(self.event_version.finish()),
            Arc::new(self.request_id.finish()),
            Arc::new(self.attempt_index.finish()),
            Arc::new(self.attempt_kind.finish()),
            Arc::new(self.is_final.finish()),
            Arc::new(self.request_start.finish()),
            Arc::new(self.attempt_start.finish()),
            Arc::new(self.attempt_end.finish()),
            Arc::new(self.ttft_ms.finish()),
            Arc::new(self.backoff_ms.finish()),
            Arc::new(self.operation.finish()),
            Arc::new(self.requested_model.finish()),
            Arc::new(self.served_model.finish()),
            Arc::new(self.provider.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.org_id.finish()),
            Arc::new(self.team.finish()),
            Arc::new(self.app.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.api_key_id.finish()),
            Arc::new(self.environment.finish()),
            Arc::new(self.key_type.finish()),
            Arc::new(self.streaming.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(self.error_class.finish()),
            Arc::new(self.finish_reason.finish()),
            Arc::new(self.input_tokens.finish()),
            Arc::new(self.output_tokens.finish()),
            Arc::new(self.cache_read_tokens.finish()),
            Arc::new(self.cache_write_tokens.finish()),
            Arc::new(self.reasoning_tokens.finish()),
            Arc::new(self.tool_calls.finish()),
            Arc::new(self.web_search_requests.finish()),
            Arc::new(self.cost_usd.finish()),
            Arc::new(self.cost_tools_usd.finish()),
            Arc::new(self.billed.finish()),
            Arc::new(self.tags.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.ingested_at.finish()),
            Arc::new(self.retry_after_ms.finish()),
            Arc::new(self.zero_data_retention.finish()),
        ]
    }
}

/// Builds one record batch from rows, in the order given.
pub fn attempts_batch<'a>(
    rows: impl ExactSizeIterator<Item = &'a AttemptRow>,
    ingested_at: EpochMicros,
) -> Result<RecordBatch, ArrowError> {
    let mut columns = Columns::with_capacity(rows.len());
    for row in rows {
        columns.append(row, ingested_at);
    }
    RecordBatch::try_new(attempts_schema(), columns.finish())
}
