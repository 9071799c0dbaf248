//! The merge behind compaction (docs/lake.md, "Compaction, checkpoints,
//! vacuum"): the files of one hour become one file holding each attempt's
//! winning copy, sorted by (`request_start`, `attempt_id`), without the
//! hour's rows in memory at once.
//!
//! 1. The keys of every row (the winner order's columns and
//!    `request_start`) are read, and the winners and their output order
//!    decided from them alone.
//! 2. The output is written in chunks of [`CHUNK_ROWS`]: for each chunk,
//!    only the row range of each file that holds its rows is decoded.
//!    Every file the lake writes is sorted by `request_start`, so a
//!    chunk's rows are a short range of each file, and each file is
//!    decoded about once in all.
//!
//! Memory: the keys of the hour (tens of bytes a row), the files' encoded
//! bytes, and one chunk's decoded rows.

use arrow::array::{Array, AsArray, PrimitiveArray, RecordBatch, UInt32Array};
use arrow::compute::{
    concat_batches, interleave_record_batch, lexsort_to_indices, take, SortColumn, SortOptions,
};
use arrow::datatypes::{Schema, UInt32Type};
use arrow::error::ArrowError;
use bytes::Bytes;
use gatemeter_schema::{as_attempts, attempts_schema};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use std::sync::Arc;

use crate::error::LakeError;
use crate::parquet_file::writer_properties;
use crate::stats::StatsBuilder;

/// Rows of the output decoded and written at a time.
pub(crate) const CHUNK_ROWS: usize = 64 * 1024;

/// Which copy of an attempt wins: the same order as the `attempts` view
/// (highest `event_version`, then the latest written).
pub(crate) const WINNER_ORDER: [(&str, bool); 6] = [
    ("attempt_id", false),
    ("event_version", true),
    ("_ingested_at", true),
    ("_topic", true),
    ("_partition", true),
    ("_offset", true),
];

/// The merged file.
pub(crate) struct Merged {
    pub bytes: Vec<u8>,
    /// Its Add action's stats.
    pub stats: String,
    pub rows_read: u64,
    pub rows_written: u64,
}

fn sort_column(batch: &RecordBatch, name: &str, descending: bool) -> Result<SortColumn, LakeError> {
    Ok(SortColumn {
        values: batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))?,
        options: Some(SortOptions {
            descending,
            nulls_first: false,
        }),
    })
}

/// Every row's keys, with the file (`_file`) and row (`_row`) it is in.
fn read_keys(files: &[Bytes]) -> Result<RecordBatch, LakeError> {
    let mut names: Vec<&str> = WINNER_ORDER.iter().map(|(name, _)| *name).collect();
    names.push("request_start");
    let mut batches = Vec::with_capacity(files.len());
    for (file, bytes) in files.iter().enumerate() {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
        let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
        let mut row = 0u32;
        for batch in builder.with_projection(mask).build()? {
            let batch = batch?;
            let rows = batch.num_rows() as u32;
            let mut columns = Vec::with_capacity(names.len() + 2);
            let mut fields = Vec::with_capacity(names.len() + 2);
            for name in &names {
                let index = batch.schema().index_of(name)?;
                columns.push(batch.column(index).clone());
                fields.push(batch.schema().field(index).clone());
            }
            columns.push(Arc::new(UInt32Array::from(vec![
                file as u32;
                rows as usize
            ])));
            columns.push(Arc::new(UInt32Array::from_iter_values(row..row + rows)));
            fields.push(arrow::datatypes::Field::new(
                "_file",
                arrow::datatypes::DataType::UInt32,
                false,
            ));
            fields.push(arrow::datatypes::Field::new(
                "_row",
                arrow::datatypes::DataType::UInt32,
                false,
            ));
            batches.push(RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                columns,
            )?);
            row += rows;
        }
    }
    let Some(first) = batches.first() else {
        return Err(ArrowError::SchemaError("no rows to merge".into()).into());
    };
    Ok(concat_batches(&first.schema(), &batches)?)
}

/// The (file, row) of each winning copy, in output order.
fn winners_in_order(keys: &RecordBatch) -> Result<Vec<(u32, u32)>, LakeError> {
    let by_winner = WINNER_ORDER
        .iter()
        .map(|(name, descending)| sort_column(keys, name, *descending))
        .collect::<Result<Vec<_>, _>>()?;
    let order = lexsort_to_indices(&by_winner, None)?;
    let ids = keys
        .column_by_name("attempt_id")
        .ok_or_else(|| ArrowError::SchemaError("no column attempt_id".into()))?
        .as_string::<i32>();
    let mut winners: Vec<u32> = Vec::new();
    let mut previous: Option<&str> = None;
    for index in order.values() {
        let id = ids.value(*index as usize);
        if previous != Some(id) {
            winners.push(*index);
            previous = Some(id);
        }
    }
    let winners = PrimitiveArray::<UInt32Type>::from(winners);
    let column = |name: &str| -> Result<Arc<dyn Array>, LakeError> {
        let values = keys
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))?;
        Ok(take(values.as_ref(), &winners, None)?)
    };
    let (start, id, file, row) = (
        column("request_start")?,
        column("attempt_id")?,
        column("_file")?,
        column("_row")?,
    );
    let ascending = Some(SortOptions {
        descending: false,
        nulls_first: false,
    });
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: start,
                options: ascending,
            },
            SortColumn {
                values: id,
                options: ascending,
            },
        ],
        None,
    )?;
    let (file, row) = (
        file.as_primitive::<UInt32Type>(),
        row.as_primitive::<UInt32Type>(),
    );
    Ok(order
        .values()
        .iter()
        .map(|i| (file.value(*i as usize), row.value(*i as usize)))
        .collect())
}

/// Rows `first..=last` of a file, as the lake's schema.
fn read_rows(bytes: &Bytes, first: u32, last: u32) -> Result<RecordBatch, LakeError> {
    let count = (last - first + 1) as usize;
    let selection = RowSelection::from(vec![
        RowSelector::skip(first as usize),
        RowSelector::select(count),
    ]);
    let mut batches = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?
        .with_row_selection(selection)
        .with_batch_size(count.min(CHUNK_ROWS))
        .build()?
    {
        // The lake's schema, so that every file's rows interleave (an
        // older file's missing columns as nulls).
        batches.push(as_attempts(&batch?)?);
    }
    Ok(concat_batches(&attempts_schema(), &batches)?)
}

/// Merges `files` (the encoded Parquet files of one hour) into one file of
/// each attempt's winning copy, sorted by `request_start` and `attempt_id`.
pub(crate) fn merge(files: &[Bytes]) -> Result<Merged, LakeError> {
    merge_in_chunks(files, CHUNK_ROWS)
}

fn merge_in_chunks(files: &[Bytes], chunk_rows: usize) -> Result<Merged, LakeError> {
    let keys = read_keys(files)?;
    let rows_read = keys.num_rows() as u64;
    let order = winners_in_order(&keys)?;
    drop(keys);
    let schema = attempts_schema();
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(
        &mut buffer,
        schema.clone(),
        Some(writer_properties(&schema, Some("request_start"))?),
    )?;
    let mut stats = StatsBuilder::default();
    for chunk in order.chunks(chunk_rows.max(1)) {
        // The range of each file's rows this chunk takes.
        let mut ranges: Vec<Option<(u32, u32)>> = vec![None; files.len()];
        for (file, row) in chunk {
            let range = &mut ranges[*file as usize];
            *range = Some(match range {
                Some((low, high)) => ((*low).min(*row), (*high).max(*row)),
                None => (*row, *row),
            });
        }
        let mut sources = Vec::new();
        let mut source_of = vec![usize::MAX; files.len()];
        for (file, range) in ranges.iter().enumerate() {
            if let Some((first, last)) = range {
                source_of[file] = sources.len();
                sources.push(read_rows(&files[file], *first, *last)?);
            }
        }
        let indices: Vec<(usize, usize)> = chunk
            .iter()
            .map(|(file, row)| {
                let first = ranges[*file as usize].map_or(0, |(first, _)| first);
                (source_of[*file as usize], (row - first) as usize)
            })
            .collect();
        let sources: Vec<&RecordBatch> = sources.iter().collect();
        let rows = interleave_record_batch(&sources, &indices)?;
        stats.add(&rows);
        writer.write(&rows)?;
    }
    writer.close()?;
    Ok(Merged {
        bytes: buffer,
        stats: stats.finish(),
        rows_read,
        rows_written: order.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use arrow::compute::take_record_batch;
    use gatemeter_schema::{attempts_batch, AttemptRow};

    use super::*;
    use crate::lake_tests::row_from_json;
    use crate::parquet_file::encode;
    use crate::stats::file_stats;

    /// The winners the simple way: every row in memory, sorted by the
    /// winner order, the first of each attempt kept, sorted for output.
    fn oracle(files: &[Bytes]) -> RecordBatch {
        let mut batches = Vec::new();
        for bytes in files {
            for batch in ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .expect("parquet")
                .build()
                .expect("reader")
            {
                let columns = batch.expect("batch").columns().to_vec();
                batches.push(RecordBatch::try_new(attempts_schema(), columns).expect("schema"));
            }
        }
        let all = concat_batches(&attempts_schema(), &batches).expect("concat");
        let by_winner: Vec<SortColumn> = WINNER_ORDER
            .iter()
            .map(|(name, descending)| sort_column(&all, name, *descending).expect("column"))
            .collect();
        let order = lexsort_to_indices(&by_winner, None).expect("sort");
        let ids = all
            .column_by_name("attempt_id")
            .expect("id")
            .as_string::<i32>();
        let mut winners = Vec::new();
        let mut previous = None;
        for index in order.values() {
            let id = ids.value(*index as usize);
            if previous != Some(id) {
                winners.push(*index);
                previous = Some(id);
            }
        }
        let winners = take_record_batch(&all, &UInt32Array::from(winners)).expect("take");
        let order = lexsort_to_indices(
            &[
                sort_column(&winners, "request_start", false).expect("column"),
                sort_column(&winners, "attempt_id", false).expect("column"),
            ],
            None,
        )
        .expect("sort");
        take_record_batch(&winners, &order).expect("take")
    }

    fn event(attempt: u64, version: u64, second: u64, tokens: u64, offset: i64) -> AttemptRow {
        let start = format!(
            "2026-11-01T10:{:02}:{:02}.{:06}Z",
            second / 60,
            second % 60,
            attempt % 7
        );
        let json = format!(
            r#"{{"schema_version":1,"attempt_id":"a{attempt}","event_version":{version},"request_id":"r{attempt}",
            "attempt_index":0,"attempt_kind":"initial","is_final":true,"request_start":"{start}",
            "attempt_start":"{start}","attempt_end":"{start}","requested_model":"m","provider":"p",
            "api_key_id":"k","environment":"prod","outcome":"success","output_tokens":{tokens}}}"#
        );
        row_from_json(&json, offset)
    }

    /// Files as the lake writes them (rows sorted by `request_start`):
    /// attempts spread over the hour, some sent again, some corrected.
    fn files(seed: u64, count: usize, rows: u64) -> Vec<Bytes> {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut offset = 0;
        (0..count)
            .map(|file| {
                let mut rows: Vec<AttemptRow> = (0..rows)
                    .map(|_| {
                        let attempt = next() % 600;
                        offset += 1;
                        // A copy keeps its attempt's start; later files
                        // bring corrections.
                        event(
                            attempt,
                            1 + next() % (file as u64 + 1),
                            attempt * 5 % 3600,
                            next() % 1000,
                            offset,
                        )
                    })
                    .collect();
                rows.sort_by_key(|row| row.event.request_start);
                let batch = attempts_batch(rows.iter(), 1_000 + file as i64).expect("batch");
                Bytes::from(encode(&batch, Some("request_start")).expect("encode"))
            })
            .collect()
    }

    fn decode(bytes: Vec<u8>) -> RecordBatch {
        let batches: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
                .expect("parquet")
                .build()
                .expect("reader")
                .map(|batch| {
                    RecordBatch::try_new(
                        attempts_schema(),
                        batch.expect("batch").columns().to_vec(),
                    )
                    .expect("schema")
                })
                .collect();
        concat_batches(&attempts_schema(), &batches).expect("concat")
    }

    #[test]
    fn chunked_merge_equals_merging_everything_in_memory() {
        for (seed, count, rows, chunk) in [
            (1, 1, 50, 7),
            (2, 4, 300, 64),
            (3, 9, 200, 1000),
            (4, 3, 400, 1),
        ] {
            let files = files(seed, count, rows);
            let expected = oracle(&files);
            let merged = merge_in_chunks(&files, chunk).expect("merge");
            assert_eq!(merged.rows_read, count as u64 * rows);
            assert_eq!(merged.rows_written, expected.num_rows() as u64);
            assert!(expected.num_rows() < (count as u64 * rows) as usize || count == 1);
            assert_eq!(merged.stats, file_stats(&expected), "seed {seed}");
            let written = decode(merged.bytes);
            assert_eq!(written, expected, "seed {seed}, chunks of {chunk}");
        }
    }
}
