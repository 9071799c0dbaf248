//! The lake: two Delta tables (`attempts`, `dead_letters`) under one root,
//! the committed state read from their logs, and the one write path (data
//! files first, then one Delta commit per table). docs/lake.md describes the
//! format and the rules for many writers.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use chrono::Utc;
use deltalake_core::kernel::{Action, Add};
use deltalake_core::protocol::{DeltaOperation, OutputMode};
use gatemeter_schema::{
    attempts_batch, attempts_schema, dead_letters_schema, AttemptRow, DeadLetter,
};
use object_store::{ObjectStoreExt, PutPayload};

use crate::actions::{
    add_action, app_id, commit_metadata, file_entry, live_file, partition_columns,
    partition_values, txn_actions,
};
use crate::error::LakeError;
use crate::location::LakeLocation;
use crate::manifest::{FileEntry, SourceOffsets};
use crate::parquet_file;
use crate::paths::{object_path, DataFilePath, HourPartition, ATTEMPTS_DIR, DEAD_LETTERS_DIR};
use crate::stats::file_stats;
use crate::table::{Attempt, LiveFile, Table};

mod dead_letters;

/// A deliberate crash inside the write path, for crash-consistency tests.
/// `after_data_files@N` aborts the process on the N-th commit of this
/// process after its data files are written and before its Delta commit;
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
    /// Next offsets of every partition the writer holds: those the rows and
    /// dead letters came from, and the others at their committed position
    /// (so a commit fails if another writer moved any of them).
    pub offsets: SourceOffsets,
}

/// What a commit wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    /// The `attempts` table version this commit made.
    pub version: i64,
    pub files: usize,
    pub rows: u64,
    pub dead_letters: u64,
    /// The dead letters this commit stored, by error class (none that an
    /// earlier commit had stored already).
    pub dead_letters_by_class: BTreeMap<&'static str, u64>,
    pub bytes: u64,
}

/// What opening the lake found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The `attempts` table version (-1 for a new, empty table).
    pub version: i64,
    pub data_files: usize,
    pub dead_letter_files: usize,
}

pub struct Lake {
    location: LakeLocation,
    attempts: Table,
    dead_letters: Table,
    /// Committed next offsets of the partitions this process asked about
    /// ([`Lake::load_offsets`]) or committed.
    offsets: SourceOffsets,
    data_files: BTreeMap<String, FileEntry>,
    dead_letter_files: BTreeMap<String, FileEntry>,
    /// The attempts table's files as its log names them (for Remove actions).
    live: BTreeMap<String, LiveFile>,
    /// The table versions the file maps above were read at.
    attempt_files_at: i64,
    dead_letter_files_at: i64,
    /// The `attempts` version at which every position in `offsets` that a
    /// commit of this process holds was last known to match the log.
    positions_checked_at: i64,
    fail_point: Option<FailPoint>,
    commits_by_this_process: u64,
}

impl Lake {
    /// Opens the lake in a local folder, creating it if needed.
    pub async fn open_local(
        dir: &std::path::Path,
        fail_point: Option<FailPoint>,
    ) -> Result<(Lake, OpenReport), LakeError> {
        Lake::open(&LakeLocation::local(dir)?, fail_point).await
    }

    /// Opens the lake at `location`, creating its tables if needed. Nothing
    /// is deleted: a file no commit names may belong to a writer that has
    /// not committed yet, and only vacuum removes such files once old.
    pub async fn open(
        location: &LakeLocation,
        fail_point: Option<FailPoint>,
    ) -> Result<(Lake, OpenReport), LakeError> {
        crate::legacy::refuse_legacy(location)?;
        let (attempts, dead_letters) = Lake::create_tables(location).await?;
        let mut lake = Lake::with_tables(location.clone(), attempts, dead_letters)?;
        lake.fail_point = fail_point;
        let report = OpenReport {
            version: lake.attempts.version(),
            data_files: lake.data_files.len(),
            dead_letter_files: lake.dead_letter_files.len(),
        };
        Ok((lake, report))
    }

    /// Both tables at `location`, created if missing.
    pub(crate) async fn create_tables(
        location: &LakeLocation,
    ) -> Result<(Table, Table), LakeError> {
        crate::storage::register_object_stores()?;
        let options = location.storage_options();
        let attempts = Table::open_or_create(
            ATTEMPTS_DIR,
            location.table_url(ATTEMPTS_DIR)?,
            options,
            &attempts_schema(),
            &partition_columns(),
        )
        .await?;
        let dead_letters = Lake::create_dead_letters(location).await?;
        Ok((attempts, dead_letters))
    }

    /// The dead letters table at `location`, created if missing.
    pub(crate) async fn create_dead_letters(location: &LakeLocation) -> Result<Table, LakeError> {
        Table::open_or_create(
            DEAD_LETTERS_DIR,
            location.table_url(DEAD_LETTERS_DIR)?,
            location.storage_options(),
            &dead_letters_schema(),
            &[],
        )
        .await
    }

    /// The lake at `location` for a reader, or `None` while no writer has
    /// created its tables; never creates or deletes anything.
    pub async fn open_existing(location: &LakeLocation) -> Result<Option<Lake>, LakeError> {
        crate::legacy::refuse_legacy(location)?;
        crate::storage::register_object_stores()?;
        let options = location.storage_options();
        let Some(attempts) =
            Table::open(ATTEMPTS_DIR, location.table_url(ATTEMPTS_DIR)?, options).await?
        else {
            return Ok(None);
        };
        let Some(dead_letters) = Table::open(
            DEAD_LETTERS_DIR,
            location.table_url(DEAD_LETTERS_DIR)?,
            options,
        )
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(Lake::with_tables(
            location.clone(),
            attempts,
            dead_letters,
        )?))
    }

    fn with_tables(
        location: LakeLocation,
        attempts: Table,
        dead_letters: Table,
    ) -> Result<Lake, LakeError> {
        let mut lake = Lake {
            location,
            attempts,
            dead_letters,
            offsets: SourceOffsets::new(),
            data_files: BTreeMap::new(),
            dead_letter_files: BTreeMap::new(),
            live: BTreeMap::new(),
            attempt_files_at: -1,
            dead_letter_files_at: -1,
            positions_checked_at: -1,
            fail_point: None,
            commits_by_this_process: 0,
        };
        lake.read_attempt_files()?;
        lake.read_dead_letter_files()?;
        Ok(lake)
    }

    pub(crate) fn read_attempt_files(&mut self) -> Result<(), LakeError> {
        self.attempt_files_at = self.attempts.version();
        let live = self.attempts.live_files()?;
        self.data_files = live
            .iter()
            .map(|file| {
                let entry = file_entry(ATTEMPTS_DIR, file);
                (entry.path.clone(), entry)
            })
            .collect();
        self.live = live
            .into_iter()
            .map(|file| (file.path.clone(), file))
            .collect();
        Ok(())
    }

    fn read_dead_letter_files(&mut self) -> Result<(), LakeError> {
        self.dead_letter_files_at = self.dead_letters.version();
        self.dead_letter_files = self
            .dead_letters
            .live_files()?
            .iter()
            .map(|file| {
                let entry = file_entry(DEAD_LETTERS_DIR, file);
                (entry.path.clone(), entry)
            })
            .collect();
        Ok(())
    }

    pub fn location(&self) -> &LakeLocation {
        &self.location
    }

    /// The `attempts` table version this lake has loaded.
    pub fn version(&self) -> i64 {
        self.attempts.version()
    }

    /// Loads commits made since the last look, by any writer; returns how
    /// many versions of the two tables were new.
    pub async fn reload(&mut self) -> Result<u64, LakeError> {
        let attempts = self.attempts.refresh().await?;
        if self.attempts.version() != self.attempt_files_at {
            self.read_attempt_files()?;
        }
        let dead_letters = self.dead_letters.refresh().await?;
        if self.dead_letters.version() != self.dead_letter_files_at {
            self.read_dead_letter_files()?;
        }
        Ok(attempts + dead_letters)
    }

    /// Reloads the log and reads the committed next offset of each of
    /// `partitions` of `topic` (`None`: nothing of it committed yet).
    pub async fn load_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Option<i64>>, LakeError> {
        self.reload().await?;
        let mut found = BTreeMap::new();
        for &partition in partitions {
            let next = self.attempts.app_version(&app_id(topic, partition)).await?;
            let known = self.offsets.entry(topic.to_owned()).or_default();
            match next {
                Some(next) => known.insert(partition, next),
                None => known.remove(&partition),
            };
            found.insert(partition, next);
        }
        Ok(found)
    }

    /// Next offsets per topic and partition, as of the last commit this
    /// process made or [`Lake::load_offsets`] read.
    pub fn offsets(&self) -> &SourceOffsets {
        &self.offsets
    }

    /// The next offset of one partition, if known to be committed.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(topic)?.get(&partition).copied()
    }

    /// Committed data files of the `attempts` table.
    pub fn data_files(&self) -> impl Iterator<Item = &FileEntry> {
        self.data_files.values()
    }

    /// Committed dead-letter files.
    pub fn dead_letter_files(&self) -> impl Iterator<Item = &FileEntry> {
        self.dead_letter_files.values()
    }

    pub(crate) fn attempts_table(&mut self) -> &mut Table {
        &mut self.attempts
    }

    pub(crate) fn live_file(&self, path: &str) -> Option<&LiveFile> {
        let in_table = path.strip_prefix(ATTEMPTS_DIR)?.strip_prefix('/')?;
        self.live.get(in_table)
    }

    /// Deletes, in both tables, files no version within `retention` names:
    /// files compaction replaced, and files of flushes that never committed
    /// (a crash, a lost race). Returns their lake-relative paths.
    pub async fn vacuum(&mut self, retention: chrono::Duration) -> Result<Vec<String>, LakeError> {
        let mut deleted = Vec::new();
        for file in self.attempts.vacuum(retention).await? {
            deleted.push(format!("{ATTEMPTS_DIR}/{file}"));
        }
        for file in self.dead_letters.vacuum(retention).await? {
            deleted.push(format!("{DEAD_LETTERS_DIR}/{file}"));
        }
        self.reload().await?;
        Ok(deleted)
    }

    /// Writes a checkpoint of both tables and drops log files past their
    /// retention, so opening the lake reads one checkpoint and the commits
    /// after it.
    pub async fn checkpoint(&mut self) -> Result<(), LakeError> {
        self.reload().await?;
        if self.attempts.version() > 0 {
            self.attempts.checkpoint().await?;
        }
        if self.dead_letters.version() > 0 {
            self.dead_letters.checkpoint().await?;
        }
        Ok(())
    }

    /// Every object in the two table folders but their logs, lake-relative.
    pub async fn stored_files(&self) -> Result<Vec<String>, LakeError> {
        let mut all = Vec::new();
        for (dir, table) in [
            (ATTEMPTS_DIR, &self.attempts),
            (DEAD_LETTERS_DIR, &self.dead_letters),
        ] {
            all.extend(
                table
                    .list_objects()
                    .await?
                    .into_iter()
                    .map(|p| format!("{dir}/{p}")),
            );
        }
        all.sort();
        Ok(all)
    }

    /// Writes the data and dead-letter files of a flush, then commits them.
    /// Dead letters go first, each only if its offset is past what the
    /// dead-letter table already holds for its partition; then one
    /// `attempts` commit names the data files and every held partition's
    /// next offset. If another writer moved any of those partitions first,
    /// nothing of the rows is visible and this fails with
    /// [`LakeError::LostCommitRace`]: the caller re-reads from the offsets
    /// the log now holds.
    pub async fn commit(&mut self, pending: PendingCommit) -> Result<CommitSummary, LakeError> {
        self.begin_commit();
        let ingested_at = Utc::now().timestamp_micros();
        let (dead_letters_by_class, dead_letter_bytes) =
            self.commit_dead_letters(&pending, ingested_at).await?;
        let dead_letters = dead_letters_by_class.values().sum::<u64>();

        let mut by_partition: BTreeMap<HourPartition, Vec<&AttemptRow>> = BTreeMap::new();
        for row in &pending.rows {
            by_partition
                .entry(HourPartition::of(row.event.request_start))
                .or_default()
                .push(row);
        }
        let mut adds = Vec::with_capacity(by_partition.len());
        let mut bytes_written = 0u64;
        for (partition, mut rows) in by_partition {
            rows.sort_by_key(|row| row.event.request_start);
            let batch = attempts_batch(rows.iter().copied(), ingested_at)?;
            let path = DataFilePath::new(partition, false);
            let add = self
                .write_data_file(&batch, &path.in_table(), Some(partition))
                .await?;
            bytes_written += add.size as u64;
            adds.push(add);
            self.maybe_crash(|fp| matches!(fp, FailPoint::MidDataFiles { on_commit } if on_commit == self.commits_by_this_process));
        }
        self.maybe_crash_after_data_files();

        let expected: Vec<(String, i32, Option<i64>)> = pending
            .offsets
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .keys()
                    .map(|p| (topic.clone(), *p, self.next_offset(topic, *p)))
            })
            .collect();
        let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
        actions.extend(txn_actions(&pending.offsets));
        let files = actions
            .iter()
            .filter(|a| matches!(a, Action::Add(_)))
            .count();
        if self.attempts.version() != self.positions_checked_at {
            // The snapshot moved since this process last knew every held
            // position to match it (a reload for an assignment, a reader's
            // look): check them against it before committing on it.
            self.check_positions(&expected).await?;
        }
        let version = loop {
            match self
                .attempts
                .try_commit(
                    actions.clone(),
                    self.streaming_update(&pending.writer),
                    commit_metadata(&pending.writer),
                )
                .await?
            {
                Attempt::Committed { version } => break version,
                Attempt::Conflict => {
                    self.attempts.refresh().await?;
                    self.read_attempt_files()?;
                    self.check_positions(&expected).await?;
                }
            }
        };
        self.positions_checked_at = version;
        if self.attempt_files_at == version - 1 {
            // Only this commit happened since the maps were read: add its
            // files rather than reading every file of the log again.
            for action in &actions {
                if let Action::Add(add) = action {
                    let live = live_file(add);
                    let entry = file_entry(ATTEMPTS_DIR, &live);
                    self.data_files.insert(entry.path.clone(), entry);
                    self.live.insert(live.path.clone(), live);
                }
            }
            self.attempt_files_at = version;
        } else {
            self.read_attempt_files()?;
        }
        for (topic, partitions) in &pending.offsets {
            self.offsets
                .entry(topic.clone())
                .or_default()
                .extend(partitions);
        }
        Ok(CommitSummary {
            version,
            files: files + usize::from(dead_letters > 0),
            rows: pending.rows.len() as u64,
            dead_letters,
            dead_letters_by_class,
            bytes: bytes_written + dead_letter_bytes,
        })
    }

    /// Fails with [`LakeError::LostCommitRace`] when the loaded snapshot
    /// holds another position than `expected` for one of the partitions:
    /// another writer owns it now, and the caller reads the positions of
    /// what it holds again.
    async fn check_positions(
        &mut self,
        expected: &[(String, i32, Option<i64>)],
    ) -> Result<(), LakeError> {
        for (topic, partition, before) in expected {
            let now = self
                .attempts
                .app_version(&app_id(topic, *partition))
                .await?;
            if now != *before {
                return Err(LakeError::LostCommitRace {
                    detail: format!("{topic} partition {partition} is at {now:?}, not {before:?}"),
                });
            }
        }
        self.positions_checked_at = self.attempts.version();
        Ok(())
    }

    /// Writes `batch` as a data file of the attempts table and returns its
    /// Add action.
    pub(crate) async fn write_data_file(
        &self,
        batch: &arrow_array::RecordBatch,
        in_table: &str,
        partition: Option<HourPartition>,
    ) -> Result<Add, LakeError> {
        let bytes = parquet_file::encode(batch, Some("request_start"))?;
        self.put_data_file(bytes, in_table, partition, file_stats(batch))
            .await
    }

    /// Stores an encoded data file and returns its Add action.
    pub(crate) async fn put_data_file(
        &self,
        bytes: Vec<u8>,
        in_table: &str,
        partition: Option<HourPartition>,
        stats: String,
    ) -> Result<Add, LakeError> {
        put_file(
            &self.attempts,
            bytes,
            in_table,
            partition_values(partition),
            stats,
        )
        .await
    }

    /// The `after_data_files` fail point, for every writer of this lake.
    pub(crate) fn maybe_crash_after_data_files(&self) {
        self.maybe_crash(|fp| matches!(fp, FailPoint::AfterDataFiles { on_commit } if on_commit == self.commits_by_this_process));
    }

    /// The operation a flush's commits record: an append by `writer`, the
    /// epoch being this process's commit count.
    fn streaming_update(&self, writer: &str) -> DeltaOperation {
        DeltaOperation::StreamingUpdate {
            output_mode: OutputMode::Append,
            query_id: writer.to_owned(),
            epoch_id: self.commits_by_this_process as i64,
        }
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

/// Stores an encoded file in `table` and returns its Add action.
async fn put_file(
    table: &Table,
    bytes: Vec<u8>,
    in_table: &str,
    partition_values: HashMap<String, Option<String>>,
    stats: String,
) -> Result<Add, LakeError> {
    let size = bytes.len() as i64;
    table
        .store()
        .put(&object_path(&in_table), PutPayload::from(bytes))
        .await?;
    Ok(add_action(in_table, size, partition_values, stats))
}
