//! A rejected event as the dead-letter table stores it (schemas/README.md, "Dead letters"): where it
//! came from and why, with a hash and size of the payload but never the
//! payload itself, which may hold personal data.

use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use sha2::{Digest, Sha256};

use crate::error::DecodeError;
use crate::event::{EpochMicros, SourcePosition};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub source: SourcePosition,
    /// Position inside a batch (JSON array) message; `None` for a whole message.
    pub index_in_message: Option<i32>,
    pub error_class: &'static str,
    pub error_message: String,
    pub field: Option<&'static str>,
    pub payload_sha256: String,
    pub payload_size: i64,
}

impl DeadLetter {
    pub fn new(
        source: SourcePosition,
        index_in_message: Option<i32>,
        error: &DecodeError,
        payload: &[u8],
    ) -> Self {
        DeadLetter {
            source,
            index_in_message,
            error_class: error.class(),
            error_message: error.to_string(),
            field: error.field(),
            payload_sha256: hex::encode(Sha256::digest(payload)),
            payload_size: payload.len() as i64,
        }
    }
}

pub fn dead_letters_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("index_in_message", DataType::Int32, true),
        Field::new("error_class", DataType::Utf8, false),
        Field::new("error_message", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("payload_sha256", DataType::Utf8, false),
        Field::new("payload_size", DataType::Int64, false),
        Field::new("ingested_at", ts, false),
    ]))
}

pub fn dead_letters_batch(
    letters: &[DeadLetter],
    ingested_at: EpochMicros,
) -> Result<RecordBatch, ArrowError> {
    let n = letters.len();
    let mut topic = StringBuilder::with_capacity(n, n * 16);
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    let mut index = Int32Builder::with_capacity(n);
    let mut class = StringBuilder::with_capacity(n, n * 16);
    let mut message = StringBuilder::with_capacity(n, n * 64);
    let mut field = StringBuilder::with_capacity(n, n * 16);
    let mut hash = StringBuilder::with_capacity(n, n * 64);
    let mut size = Int64Builder::with_capacity(n);
    let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    for letter in letters {
        topic.append_value(&letter.source.topic);
        partition.append_value(letter.source.partition);
        offset.append_value(letter.source.offset);
        index.append_option(letter.index_in_message);
        class.append_value(letter.error_class);
        message.append_value(&letter.error_message);
        field.append_option(letter.field);
        hash.append_value(&letter.payload_sha256);
        size.append_value(letter.payload_size);
        at.append_value(ingested_at);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(index.finish()),
        Arc::new(class.finish()),
        Arc::new(message.finish()),
        Arc::new(field.finish()),
        Arc::new(hash.finish()),
        Arc::new(size.finish()),
        Arc::new(at.finish()),
    ];
    RecordBatch::try_new(dead_letters_schema(), columns)
}
