//! Encoding a record batch as one Parquet file the way every outside reader
//! expects it: zstd, page statistics, sorted by `request_start` and saying so.

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::LakeError;

/// Rows per row group: large enough for good compression, small enough that
/// a one-hour drill-down can skip most of a file by statistics.
const ROW_GROUP_ROWS: usize = 256 * 1024;

pub(crate) fn writer_properties(
    schema: &Schema,
    sort_column: Option<&str>,
) -> Result<WriterProperties, LakeError> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("gatemeter {}", env!("CARGO_PKG_VERSION")));
    if let Some(name) = sort_column {
        let index = schema.index_of(name)?;
        builder = builder.set_sorting_columns(Some(vec![SortingColumn {
            column_idx: index as i32,
            descending: false,
            nulls_first: false,
        }]));
    }
    // Sorted and nearly sorted integer columns compress far better as deltas
    // than through a dictionary.
    for column in [
        "request_start",
        "attempt_start",
        "attempt_end",
        "_offset",
        "_ingested_at",
    ] {
        if schema.index_of(column).is_ok() {
            let path = ColumnPath::from(column);
            builder = builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        }
    }
    Ok(builder.build())
}

/// Encodes `batch` into Parquet bytes, declaring `sort_column` as the order.
pub fn encode(batch: &RecordBatch, sort_column: Option<&str>) -> Result<Vec<u8>, LakeError> {
    let properties = writer_properties(&batch.schema(), sort_column)?;
    let mut buffer = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(properties))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(buffer)
}
