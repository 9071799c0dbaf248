//! The lake: committed state loaded from the commit log, recovery of orphans,
//! and the one write path (data files first, then the create-only record).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use futures::TryStreamExt;
use gatemeter_schema::{attempts_batch, dead_letters_batch, AttemptRow, DeadLetter};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::LakeError;
use crate::manifest::{
    CommitRecord, FileEntry, SourceOffsets, ADD_ONLY_FORMAT_VERSION, COMMIT_FORMAT_VERSION,
};
use crate::parquet_file;
use crate::paths::{
    object_path, CommitPath, DataFilePath, DeadLetterPath, HourPartition, ATTEMPTS_DIR,
    COMMITS_DIR, DEAD_LETTERS_DIR,
};

/// A deliberate crash inside the write path, for crash-consistency tests.
/// `after_data_files@N` aborts the process on the N-th commit of this
/// process after its data files are written and before its commit record;
/// `mid_data_files@N` aborts after the first of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    AfterDataFiles { on_commit: u64 },
    MidDataFiles { on_commit: u64 },
}

impl FromStr for FailPoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, n) = text
            .split_once('@')
            .ok_or_else(|| format!("fail point `{text}` must look like after_data_files@3"))?;
        let on_commit: u64 = n
            .parse()
            .map_err(|_| format!("fail point `{text}`: `{n}` is not a number"))?;
        match name {
            "after_data_files" => Ok(FailPoint::AfterDataFiles { on_commit }),
            "mid_data_files" => Ok(FailPoint::MidDataFiles { on_commit }),
            other => Err(format!(
                "unknown fail point `{other}` (known: after_data_files, mid_data_files)"
            )),
        }
    }
}

/// What one flush hands to the lake.
#[derive(Debug, Default)]
pub struct PendingCommit {
    pub writer: String,
    pub rows: Vec<AttemptRow>,
    pub dead_letters: Vec<DeadLetter>,
    /// Next offsets of the partitions the rows and dead letters came from.
    pub offsets: SourceOffsets,
}

/// What a commit wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    pub sequence: u64,
    pub files: usize,
    pub rows: u64,
    pub dead_letters: u64,
    pub bytes: u64,
}

/// What opening the lake found and cleaned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub commits: u64,
    pub data_files: usize,
    pub dead_letter_files: usize,
    pub orphans_deleted: Vec<String>,
}

pub struct Lake {
    store: Arc<dyn ObjectStore>,
    next_sequence: u64,
    offsets: SourceOffsets,
    data_files: BTreeMap<String, FileEntry>,
    dead_letter_files: BTreeMap<String, FileEntry>,
    /// Data files a commit took out of the table, with that commit's time:
    /// not orphans, and deleted only by [`Lake::vacuum`].
    retired: BTreeMap<String, String>,
    fail_point: Option<FailPoint>,
    commits_by_this_process: u64,
}

impl Lake {
    /// Opens a lake on local disk, creating the folder if needed.
    pub async fn open_local(
        dir: &std::path::Path,
        fail_point: Option<FailPoint>,
    ) -> Result<(Lake, RecoveryReport), LakeError> {
        std::fs::create_dir_all(dir).map_err(|e| LakeError::DataDir {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Lake::open(Arc::new(store), fail_point).await
    }

    /// Opens a lake on any object store: loads the commit log and deletes
    /// every file under the table folders that no commit record names (the
    /// leftovers of a crash between data files and commit record).
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        fail_point: Option<FailPoint>,
    ) -> Result<(Lake, RecoveryReport), LakeError> {
        let mut lake = Lake::load(store).await?;
        lake.fail_point = fail_point;
        let commits = lake.next_sequence;
        let orphans_deleted = lake.delete_orphans().await?;
        let report = RecoveryReport {
            commits,
            data_files: lake.data_files.len(),
            dead_letter_files: lake.dead_letter_files.len(),
            orphans_deleted,
        };
        Ok((lake, report))
    }

    /// [`Lake::load`] of a lake on local disk, for writers that must not
    /// delete other writers' in-flight files either (compaction).
    pub async fn load_local(
        dir: &std::path::Path,
        fail_point: Option<FailPoint>,
    ) -> Result<Lake, LakeError> {
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
            LakeError::DataDir {
                path: dir.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let mut lake = Lake::load(Arc::new(store)).await?;
        lake.fail_point = fail_point;
        Ok(lake)
    }

    /// Loads the committed state without touching any file: for readers
    /// (the query layer) that must not delete a concurrent writer's
    /// in-flight files.
    pub async fn load(store: Arc<dyn ObjectStore>) -> Result<Lake, LakeError> {
        let mut lake = Lake {
            store,
            next_sequence: 0,
            offsets: SourceOffsets::new(),
            data_files: BTreeMap::new(),
            dead_letter_files: BTreeMap::new(),
            retired: BTreeMap::new(),
            fail_point: None,
            commits_by_this_process: 0,
        };
        lake.reload().await?;
        Ok(lake)
    }

    /// Reads commit records newer than the ones already applied; returns how
    /// many it applied.
    pub async fn reload(&mut self) -> Result<u64, LakeError> {
        let mut sequences: Vec<(u64, Path)> = self
            .store
            .list(Some(&Path::from(COMMITS_DIR)))
            .try_filter_map(|meta| async move {
                Ok(CommitPath::parse(meta.location.as_ref()).map(|c| (c.sequence, meta.location)))
            })
            .try_collect()
            .await?;
        sequences.sort();
        let mut applied = 0;
        for (sequence, path) in sequences {
            if sequence < self.next_sequence {
                continue;
            }
            let bytes = self.store.get(&path).await?.bytes().await?;
            let record: CommitRecord =
                serde_json::from_slice(&bytes).map_err(|e| LakeError::CorruptCommit {
                    path: path.to_string(),
                    reason: e.to_string(),
                })?;
            if record.sequence != sequence || record.format_version > COMMIT_FORMAT_VERSION {
                return Err(LakeError::CorruptCommit {
                    path: path.to_string(),
                    reason: format!(
                        "sequence {} / format {} does not match its name",
                        record.sequence, record.format_version
                    ),
                });
            }
            self.apply(record);
            applied += 1;
        }
        Ok(applied)
    }

    fn apply(&mut self, record: CommitRecord) {
        for file in record.files {
            self.data_files.insert(file.path.clone(), file);
        }
        for file in record.dead_letter_files {
            self.dead_letter_files.insert(file.path.clone(), file);
        }
        for path in record.removed {
            self.data_files.remove(&path);
            self.retired.insert(path, record.committed_at.clone());
        }
        for (topic, partitions) in record.offsets {
            self.offsets.entry(topic).or_default().extend(partitions);
        }
        self.next_sequence = record.sequence + 1;
    }

    async fn delete_orphans(&self) -> Result<Vec<String>, LakeError> {
        let mut deleted = Vec::new();
        for dir in [ATTEMPTS_DIR, DEAD_LETTERS_DIR] {
            for path in self.list(dir).await? {
                let name = path.to_string();
                if !self.data_files.contains_key(&name)
                    && !self.dead_letter_files.contains_key(&name)
                    && !self.retired.contains_key(&name)
                {
                    self.store.delete(&path).await?;
                    deleted.push(name);
                }
            }
        }
        Ok(deleted)
    }

    /// Next offsets per topic and partition, as of the last commit.
    pub fn offsets(&self) -> &SourceOffsets {
        &self.offsets
    }

    /// The next offset of one partition, if any commit named it.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(topic)?.get(&partition).copied()
    }

    /// Committed data files of the `attempts` table.
    pub fn data_files(&self) -> impl Iterator<Item = &FileEntry> {
        self.data_files.values()
    }

    /// Deletes the files compaction took out of the table by a commit made
    /// before `removed_before` (readers that listed them earlier have had
    /// time to finish); returns their paths. Files no record names are left
    /// alone: they may be another writer's, not yet committed.
    pub async fn vacuum(
        &mut self,
        removed_before: chrono::DateTime<Utc>,
    ) -> Result<Vec<String>, LakeError> {
        let mut deleted = Vec::new();
        for path in self.list(ATTEMPTS_DIR).await? {
            let name = path.to_string();
            let Some(removed_at) = self.retired.get(&name) else {
                continue;
            };
            let old_enough = chrono::DateTime::parse_from_rfc3339(removed_at)
                .is_ok_and(|at| at < removed_before);
            if old_enough {
                match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted.push(name),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(deleted)
    }

    /// Every object under `dir`.
    async fn list(&self, dir: &str) -> Result<Vec<Path>, LakeError> {
        Ok(self
            .store
            .list(Some(&Path::from(dir)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?)
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Committed dead-letter files.
    pub fn dead_letter_files(&self) -> impl Iterator<Item = &FileEntry> {
        self.dead_letter_files.values()
    }

    /// Writes the data and dead-letter files of a flush, then its commit
    /// record. Until the record exists nothing of the flush is visible; if
    /// another writer took the sequence number first, the lake reloads and
    /// the caller must re-seek from [`Lake::offsets`].
    pub async fn commit(&mut self, pending: PendingCommit) -> Result<CommitSummary, LakeError> {
        let sequence = self.next_sequence;
        self.begin_commit();
        let ingested_at = Utc::now().timestamp_micros();

        let mut by_partition: BTreeMap<HourPartition, Vec<&AttemptRow>> = BTreeMap::new();
        for row in &pending.rows {
            by_partition
                .entry(HourPartition::of(row.event.request_start))
                .or_default()
                .push(row);
        }
        let mut files = Vec::with_capacity(by_partition.len());
        for (n, (partition, mut rows)) in by_partition.into_iter().enumerate() {
            rows.sort_by_key(|row| row.event.request_start);
            let batch = attempts_batch(rows.iter().copied(), ingested_at)?;
            let bytes = parquet_file::encode(&batch, Some("request_start"))?;
            let path = DataFilePath {
                partition,
                commit: sequence,
                n: n as u32,
            };
            files.push(FileEntry {
                path: path.to_string(),
                rows: rows.len() as u64,
                bytes: bytes.len() as u64,
                min_request_start: rows.first().map(|r| r.event.request_start),
                max_request_start: rows.last().map(|r| r.event.request_start),
                deduplicated: false,
            });
            self.store
                .put(&object_path(&path), PutPayload::from(bytes))
                .await?;
            self.maybe_crash(|fp| matches!(fp, FailPoint::MidDataFiles { on_commit } if on_commit == self.commits_by_this_process));
        }

        let mut dead_letter_files = Vec::new();
        if !pending.dead_letters.is_empty() {
            let batch = dead_letters_batch(&pending.dead_letters, ingested_at)?;
            let bytes = parquet_file::encode(&batch, None)?;
            let path = DeadLetterPath {
                commit: sequence,
                n: 0,
            };
            dead_letter_files.push(FileEntry {
                path: path.to_string(),
                rows: pending.dead_letters.len() as u64,
                bytes: bytes.len() as u64,
                min_request_start: None,
                max_request_start: None,
                deduplicated: false,
            });
            self.store
                .put(&object_path(&path), PutPayload::from(bytes))
                .await?;
        }
        self.maybe_crash_after_data_files();

        let summary = CommitSummary {
            sequence,
            files: files.len() + dead_letter_files.len(),
            rows: pending.rows.len() as u64,
            dead_letters: pending.dead_letters.len() as u64,
            bytes: files
                .iter()
                .chain(&dead_letter_files)
                .map(|f| f.bytes)
                .sum(),
        };
        let record = CommitRecord {
            format_version: ADD_ONLY_FORMAT_VERSION,
            sequence,
            committed_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            writer: pending.writer,
            files,
            dead_letter_files,
            offsets: pending.offsets,
            removed: Vec::new(),
        };
        self.write_record(record).await?;
        Ok(summary)
    }

    /// Writes `record` create-only under its sequence number and applies it.
    /// If another writer took that number first, the lake reloads and the
    /// files the record names stay orphans (deleted at the next recovery).
    pub(crate) async fn write_record(&mut self, record: CommitRecord) -> Result<(), LakeError> {
        let sequence = record.sequence;
        let body = serde_json::to_vec_pretty(&record).map_err(|e| LakeError::CorruptCommit {
            path: CommitPath { sequence }.to_string(),
            reason: e.to_string(),
        })?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(
                &object_path(&CommitPath { sequence }),
                PutPayload::from(body),
                options,
            )
            .await
        {
            Ok(_) => {
                self.apply(record);
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                self.reload().await?;
                Err(LakeError::LostCommitRace { sequence })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The `after_data_files` fail point, for every writer of this lake.
    pub(crate) fn maybe_crash_after_data_files(&self) {
        self.maybe_crash(|fp| matches!(fp, FailPoint::AfterDataFiles { on_commit } if on_commit == self.commits_by_this_process));
    }

    /// Counts a commit this process is about to write (for fail points).
    pub(crate) fn begin_commit(&mut self) {
        self.commits_by_this_process += 1;
    }

    fn maybe_crash(&self, hit: impl Fn(FailPoint) -> bool) {
        if let Some(fail_point) = self.fail_point {
            if hit(fail_point) {
                eprintln!("gatemeter: fail point {fail_point:?} reached, aborting");
                std::process::abort();
            }
        }
    }
}
