//! `gatemeter import`: JSONL files into the lake without Kafka, through the
//! same decoder, buffers, dead letters and commit path as ingest. Each file
//! is a source partition of its own (`import:<file name>`, partition 0, the
//! line number as offset), so importing the same file again stores nothing
//! twice, and two imports of it at once store it once: the one whose commit
//! loses reads the file again from where the winner's commit left it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gatemeter_lake::{Lake, LakeError};
use gatemeter_schema::{PrivacyPolicy, SourcePosition};

use crate::buffer::Buffers;
use crate::error::IngestError;
use crate::metrics::IngestMetrics;
use crate::policy::FlushPolicy;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub stored: u64,
    pub dead_letters: u64,
    /// Lines skipped because the lake already held them: stored by an
    /// earlier import of the same file, by one running at the same time, or
    /// by this import before it lost a commit race and read the file again.
    pub already_imported: u64,
}

/// The source topic name an imported file's rows carry in `_topic`.
pub fn import_topic(path: &Path) -> String {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    format!("import:{name}")
}

/// Imports one JSONL file; `progress` is called with the bytes read so far.
pub async fn import_file(
    lake: &mut Lake,
    path: &Path,
    policy: FlushPolicy,
    privacy: &Arc<PrivacyPolicy>,
    metrics: &IngestMetrics,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, IngestError> {
    let mut report = ImportReport::default();
    // Every lost race means another import of this file moved its offset
    // forward, so the passes end once the file is stored.
    loop {
        let pass = import_pass(
            lake,
            path,
            policy,
            privacy,
            metrics,
            &mut progress,
            &mut report,
        );
        match pass.await {
            Err(IngestError::Lake(LakeError::LostCommitRace { detail })) => {
                tracing::warn!(%detail, file = %path.display(), "another import stored part of this file first; reading it again");
            }
            other => return other.map(|()| report),
        }
    }
}

/// Reads the file from the start, skipping the lines the lake already
/// holds, and commits the rest; counts into `report`.
async fn import_pass(
    lake: &mut Lake,
    path: &Path,
    policy: FlushPolicy,
    privacy: &Arc<PrivacyPolicy>,
    metrics: &IngestMetrics,
    progress: &mut impl FnMut(u64),
    report: &mut ImportReport,
) -> Result<(), IngestError> {
    let input_error = |e: std::io::Error| IngestError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(input_error)?);
    let topic = import_topic(path);
    let committed = lake.load_offsets(&topic, &[0]).await?;
    let mut buffers = Buffers::new(privacy.clone());
    buffers.reset_partition((topic.clone(), 0), committed.get(&0).copied().flatten());
    report.already_imported = 0;
    let mut line = Vec::with_capacity(4096);
    let mut offset: i64 = 0;
    let mut bytes_read: u64 = 0;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(input_error)?;
        if n == 0 {
            break;
        }
        bytes_read += n as u64;
        let payload = line.trim_ascii_end();
        if !payload.is_empty() {
            let source = SourcePosition {
                topic: topic.clone(),
                partition: 0,
                offset,
            };
            let accepted = buffers.accept(source, payload, Instant::now());
            if accepted.replayed {
                report.already_imported += 1;
                metrics.events.with_label_values(&["replayed"]).inc();
            }
            metrics.record_redactions(&accepted.redactions);
        }
        offset += 1;
        let stats = buffers.stats();
        if stats.rows >= policy.max_rows || stats.bytes >= policy.max_bytes {
            commit(lake, &mut buffers, metrics, report).await?;
            progress(bytes_read);
        }
    }
    commit(lake, &mut buffers, metrics, report).await?;
    progress(bytes_read);
    Ok(())
}

async fn commit(
    lake: &mut Lake,
    buffers: &mut Buffers,
    metrics: &IngestMetrics,
    report: &mut ImportReport,
) -> Result<(), IngestError> {
    if !buffers.is_dirty() {
        return Ok(());
    }
    let timer = metrics.flush_duration.start_timer();
    let summary = lake.commit(buffers.take_pending("import")).await?;
    timer.observe_duration();
    metrics.record_commit(&summary);
    report.stored += summary.rows;
    report.dead_letters += summary.dead_letters;
    Ok(())
}
