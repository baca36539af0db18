//! Log records that `run.log_warning()` & co. store in a run's RocksDB chunk.
//!
//! Aim 3.29 keeps each run's sequences in `.aim/seqs/chunks/<run_hash>/`, a RocksDB
//! database. Keys are paths: every path element ends with `0xfe`; a string element is
//! its UTF-8 bytes (which never contain `0xfe`), an integer element is `0xfe` followed by
//! the big-endian `i64`. A log record at step `s` is a custom object stored as
//!
//! ```text
//! seqs\xfechunks\xfe<run_hash>\xfe\xfe<context id: 8 bytes>\xfe__log_records\xfeval\xfe\xfe<s: 8 bytes BE>\xfe             -> 0x0f "aim.log_record"
//! …\xfe__log_records\xfeval\xfe\xfe<s>\xfe__logger_info\xfe…                                                                 -> file name, line
//! …\xfe__log_records\xfeval\xfe\xfe<s>\xfelog_level\xfe                                                                      -> 0x02 + i64 LE
//! …\xfe__log_records\xfeval\xfe\xfe<s>\xfemessage\xfe                                                                        -> 0x04 + UTF-8
//! …\xfe__log_records\xfeval\xfe\xfe<s>\xfetimestamp\xfe                                                                      -> 0x03 + f64 LE
//! ```
//!
//! next to `epoch`/`time` arrays, the captured terminal output (`logs`), metrics
//! (`seqs\xfev2\xfe…`) and blobs (`BLOBS\xfe…`), which the reader must step over.

use std::path::{Path, PathBuf};

use rocksdb::{DBRawIterator, DBRecoveryMode, Options, ReadOptions, DB};

/// One complete log record: both its text and its level have been written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Position in the run's `__log_records` sequence; counts up from 0 per run.
    pub step: u64,
    /// Python `logging` level: 10 debug, 20 info, 30 warning, 40 error.
    pub level: i64,
    /// The text exactly as passed to `run.log_*()`; never formatted, so `{}` survive.
    pub message: String,
}

/// Why the log records of a run could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The run has no chunk database (yet): normal right after `Run()` or for runs that
    /// never tracked anything, so pollers should treat it as "nothing new".
    #[error("run has no chunk database at {}", path.display())]
    NoChunk { path: PathBuf },
    /// The run hash would not name a single directory entry (path traversal, empty).
    #[error("invalid run hash {run_hash:?}")]
    InvalidRunHash { run_hash: String },
    /// RocksDB refused to open the chunk (corrupt, unsupported format, I/O error).
    #[error("cannot open chunk {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    /// Iterating the chunk failed (for example an SST vanished under a compaction).
    #[error("cannot read chunk {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
}

/// The part of a log record a key holds, as far as Runwatch cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `…\xfemessage\xfe` -> [`decode_message`].
    Message,
    /// `…\xfelog_level\xfe` -> [`decode_level`].
    LogLevel,
}

/// Reads the complete log records of `run_hash` with `step > after_step` (all if `None`),
/// ordered by step. `aim_dir` is the `.aim` directory.
///
/// Opens the chunk read-only: works while Aim is still writing (the live write-ahead log
/// is replayed in memory), takes no lock and writes nothing. A record whose message or
/// level is missing is left out and not counted as read; undecodable values are skipped
/// with a warning.
pub fn read_log_records(aim_dir: &Path, run_hash: &str, after_step: Option<u64>) -> Result<Vec<LogRecord>, LogError> {
    let path = chunk_dir(aim_dir, run_hash)?;
    // RocksDB would report a missing CURRENT as a generic open error; a run whose chunk
    // Aim has not created (or not finished creating) is an expected state instead.
    if !path.join("CURRENT").is_file() {
        return Err(LogError::NoChunk { path });
    }
    let first_step = match after_step {
        None => 0,
        Some(step) => match step.checked_add(1) {
            Some(first) => first,
            None => return Ok(Vec::new()),
        },
    };

    // A compaction in the live writer may delete an SST between our reading the MANIFEST
    // and opening the table; a fresh open sees the new file set.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match read_once(&path, run_hash, after_step, first_step) {
            Err(LogError::Open { .. } | LogError::Read { .. }) if attempt < OPEN_ATTEMPTS => {
                tracing::debug!(path = %path.display(), attempt, "retrying chunk read");
            }
            Err(_) if !path.join("CURRENT").is_file() => return Err(LogError::NoChunk { path }),
            result => return result,
        }
    }
}

/// Decodes a log-record key with any prefix: the step and which field it holds, or
/// `None` for other keys (other fields, other sequences, malformed keys).
pub fn decode_step_and_field(key: &[u8]) -> Option<(u64, Field)> {
    // Keep the marker's last byte: it is the step's integer flag `split_step` expects.
    let start = find(key, RECORDS_MARKER)? + RECORDS_MARKER.len() - 1;
    let (step, field_path) = split_step(&key[start..])?;
    Some((step, field_kind(field_path)?))
}

/// Decodes a message value: type byte `0x04` and UTF-8 text (invalid bytes replaced).
pub fn decode_message(value: &[u8]) -> Option<String> {
    match value.split_first() {
        Some((&TYPE_STRING, text)) => Some(String::from_utf8_lossy(text).into_owned()),
        _ => None,
    }
}

/// Decodes a level value: type byte `0x02` and a little-endian `i64`.
pub fn decode_level(value: &[u8]) -> Option<i64> {
    match value.split_first() {
        Some((&TYPE_INT, bytes)) => Some(i64::from_le_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

/// Builds chunks the way Aim 3.29 lays them out, for tests in this and other crates.
pub mod testing {
    use std::io;
    use std::path::Path;

    use rocksdb::{DBCompressionType, Options, WriteBatch, DB};

    use super::{chunk_dir, EMPTY_CONTEXT_ID, SEP, TYPE_INT, TYPE_STRING};

    /// Writes a closed chunk at `aim_dir/seqs/chunks/<run_hash>/` holding `records`
    /// (`(step, level, message)`) plus the unrelated keys a real run has (terminal output,
    /// metrics, blobs, another context), flushed to a Snappy-compressed SST like Aim's.
    pub fn write_log_records(aim_dir: &Path, run_hash: &str, records: &[(u64, i64, &str)]) -> io::Result<()> {
        let writer = ChunkWriter::create(aim_dir, run_hash)?;
        writer.put_unrelated()?;
        for &(step, level, message) in records {
            writer.put_record(step, level, message)?;
        }
        writer.flush()
    }

    /// An open, writable chunk, as a live Aim run holds it: later writes land in the
    /// write-ahead log until [`ChunkWriter::flush`].
    pub struct ChunkWriter {
        db: DB,
        run_hash: String,
    }

    impl ChunkWriter {
        /// Creates (or reopens) the chunk of `run_hash`; holds RocksDB's lock like Aim.
        pub fn create(aim_dir: &Path, run_hash: &str) -> io::Result<Self> {
            let path = chunk_dir(aim_dir, run_hash).map_err(io::Error::other)?;
            std::fs::create_dir_all(&path)?;
            let mut opts = Options::default();
            opts.create_if_missing(true);
            // Aim's OPTIONS file says kSnappyCompression; the reader must decompress it.
            opts.set_compression_type(DBCompressionType::Snappy);
            let db = DB::open(&opts, &path).map_err(io::Error::other)?;
            Ok(Self { db, run_hash: run_hash.to_owned() })
        }

        /// Writes one complete record in one batch, as Aim does (`ContainerTreeView.set`).
        pub fn put_record(&self, step: u64, level: i64, message: &str) -> io::Result<()> {
            let mut batch = WriteBatch::default();
            let object = record_key(&self.run_hash, step, &[]);
            // Aim replaces the whole object: delete the subtree, then write every field.
            let mut end = object.clone();
            end.push(0xff);
            batch.delete_range(&object, &end);
            batch.put(&object, custom_object("aim.log_record"));
            batch.put(record_key(&self.run_hash, step, &[b"__logger_info"]), [TYPE_ARRAY]);
            batch.put(record_key(&self.run_hash, step, &[b"__logger_info", &int_key(0)]), string_value("train.py"));
            batch.put(record_key(&self.run_hash, step, &[b"__logger_info", &int_key(1)]), int_value(42));
            batch.put(record_key(&self.run_hash, step, &[b"log_level"]), int_value(level));
            batch.put(record_key(&self.run_hash, step, &[b"message"]), string_value(message));
            let timestamp = float_value(1_795_268_411.25 + step as f64);
            batch.put(record_key(&self.run_hash, step, &[b"timestamp"]), &timestamp);
            // The epoch (None) and time arrays sort before `val`: a reader must skip them.
            for (array, value) in [("epoch", vec![TYPE_NONE]), ("time", timestamp)] {
                let mut key = sequence_prefix(&self.run_hash, EMPTY_CONTEXT_ID, "__log_records");
                key.extend_from_slice(array.as_bytes());
                key.push(SEP);
                batch.put(&key, [TYPE_ARRAY]);
                key.extend_from_slice(&int_key(step as i64));
                key.push(SEP);
                batch.put(&key, value);
            }
            // Aim marks each array itself too; the reader's seek must land past this key.
            let mut array = sequence_prefix(&self.run_hash, EMPTY_CONTEXT_ID, "__log_records");
            array.extend_from_slice(b"val\xfe");
            batch.put(&array, [TYPE_ARRAY]);
            self.db.write(batch).map_err(io::Error::other)
        }

        /// Writes only the message of `step`: a record Aim has not finished writing.
        pub fn put_message_only(&self, step: u64, message: &str) -> io::Result<()> {
            self.put_raw(&record_key(&self.run_hash, step, &[b"message"]), &string_value(message))
        }

        /// Writes only the level of `step`, e.g. to complete a [`Self::put_message_only`].
        pub fn put_level_only(&self, step: u64, level: i64) -> io::Result<()> {
            self.put_raw(&record_key(&self.run_hash, step, &[b"log_level"]), &int_value(level))
        }

        /// Writes any key/value, for corrupt or unusual layouts.
        pub fn put_raw(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
            self.db.put(key, value).map_err(io::Error::other)
        }

        /// The key of `field` of the record at `step` (`b"message"`, `b"log_level"`).
        pub fn field_key(&self, step: u64, field: &[u8]) -> Vec<u8> {
            record_key(&self.run_hash, step, &[field])
        }

        /// Writes the keys that are not log records but share the chunk: captured
        /// terminal output (same context, sorts after `__log_records`), a text sequence
        /// under another context, metrics in the `v2` tree and the blob domain.
        pub fn put_unrelated(&self) -> io::Result<()> {
            let mut batch = WriteBatch::default();
            let hash = &self.run_hash;
            let mut blob = b"BLOBS\xfe".to_vec();
            blob.extend_from_slice(&sequence_prefix(hash, EMPTY_CONTEXT_ID, "logs"));
            blob.extend_from_slice(b"val\xfe");
            blob.extend_from_slice(&int_key(0));
            blob.extend_from_slice(b"\xfedata\xfe");
            batch.put(&blob, string_value("epoch 1/10"));

            let mut logs = sequence_prefix(hash, EMPTY_CONTEXT_ID, "logs");
            logs.extend_from_slice(b"val\xfe");
            logs.extend_from_slice(&int_key(0));
            logs.push(SEP);
            batch.put(&logs, custom_object("aim.log_line"));
            logs.extend_from_slice(b"data\xfe");
            batch.put(&logs, b"");

            // A context sorting before the empty one, with a name sorting before
            // `__log_records`, holding a `message` field: must not be mistaken for a record.
            let mut texts = sequence_prefix(hash, OTHER_CONTEXT_ID, "Notes");
            texts.extend_from_slice(b"val\xfe");
            texts.extend_from_slice(&int_key(0));
            texts.extend_from_slice(b"\xfemessage\xfe");
            batch.put(&texts, string_value("not a log record"));

            for (ctx, name, value) in [(EMPTY_CONTEXT_ID, "loss", 0.5), (OTHER_CONTEXT_ID, "Acc", 0.9)] {
                let mut metric = b"seqs\xfev2\xfechunks\xfe".to_vec();
                metric.extend_from_slice(hash.as_bytes());
                metric.push(SEP);
                metric.extend_from_slice(&ctx);
                metric.push(SEP);
                metric.extend_from_slice(name.as_bytes());
                metric.extend_from_slice(b"\xfeval\xfe");
                batch.put(&metric, [TYPE_ARRAY]);
                // v2 steps are hashed; this is the hash Aim 3.29 wrote for step 0.
                metric.extend_from_slice(b"\xfe\x06\xc4E%r\x86\xa3\x92\xfe");
                batch.put(&metric, float_value(value));
            }
            self.db.write(batch).map_err(io::Error::other)
        }

        /// Moves the memtable into an SST, as Aim's RocksDB does when its buffer fills.
        pub fn flush(&self) -> io::Result<()> {
            self.db.flush().map_err(io::Error::other)
        }
    }

    /// A context id Aim 3.29 computed for `{'subset': 'train'}`.
    const OTHER_CONTEXT_ID: [u8; 9] = *b"\xfe\x87t\x98\xe1\rAo\x95";

    const TYPE_NONE: u8 = 0x00;
    const TYPE_FLOAT: u8 = 0x03;
    const TYPE_ARRAY: u8 = 0x06;
    const TYPE_CUSTOM_OBJECT: u8 = 0x0f;

    fn sequence_prefix(run_hash: &str, context: [u8; 9], name: &str) -> Vec<u8> {
        let mut key = b"seqs\xfechunks\xfe".to_vec();
        key.extend_from_slice(run_hash.as_bytes());
        key.push(SEP);
        key.extend_from_slice(&context);
        key.push(SEP);
        key.extend_from_slice(name.as_bytes());
        key.push(SEP);
        key
    }

    fn record_key(run_hash: &str, step: u64, path: &[&[u8]]) -> Vec<u8> {
        let mut key = sequence_prefix(run_hash, EMPTY_CONTEXT_ID, "__log_records");
        key.extend_from_slice(b"val\xfe\xfe");
        key.extend_from_slice(&step.to_be_bytes());
        key.push(SEP);
        for element in path {
            key.extend_from_slice(element);
            key.push(SEP);
        }
        key
    }

    fn int_key(value: i64) -> [u8; 9] {
        let mut key = [SEP; 9];
        key[1..].copy_from_slice(&value.to_be_bytes());
        key
    }

    fn string_value(text: &str) -> Vec<u8> {
        let mut value = vec![TYPE_STRING];
        value.extend_from_slice(text.as_bytes());
        value
    }

    fn int_value(number: i64) -> Vec<u8> {
        let mut value = vec![TYPE_INT];
        value.extend_from_slice(&number.to_le_bytes());
        value
    }

    fn float_value(number: f64) -> Vec<u8> {
        let mut value = vec![TYPE_FLOAT];
        value.extend_from_slice(&number.to_le_bytes());
        value
    }

    fn custom_object(name: &str) -> Vec<u8> {
        let mut value = vec![TYPE_CUSTOM_OBJECT];
        value.extend_from_slice(name.as_bytes());
        value
    }
}

/// Aim's path separator; never part of UTF-8 text.
const SEP: u8 = 0xfe;
const TYPE_INT: u8 = 0x02;
const TYPE_STRING: u8 = 0x04;
/// From the end of the context element to the step's integer flag.
const RECORDS_MARKER: &[u8] = b"\xfe__log_records\xfeval\xfe\xfe";
/// Context id (integer path element incl. its flag) Aim 3.29 computes for `{}`, the
/// context of every `run.log_*()` record. Only the fixture relies on it; the reader
/// discovers contexts so a different hashing cannot hide records.
const EMPTY_CONTEXT_ID: [u8; 9] = *b"\xfe\xc1{\x82\xeb\xc8\xde\xa3\x92";
const OPEN_ATTEMPTS: u32 = 3;

fn chunk_dir(aim_dir: &Path, run_hash: &str) -> Result<PathBuf, LogError> {
    let single_component = !run_hash.is_empty() && run_hash != "." && run_hash != ".." && !run_hash.contains(['/', '\\', '\0']);
    if !single_component {
        return Err(LogError::InvalidRunHash { run_hash: run_hash.to_owned() });
    }
    Ok(aim_dir.join("seqs").join("chunks").join(run_hash))
}

fn read_once(path: &Path, run_hash: &str, after_step: Option<u64>, first_step: u64) -> Result<Vec<LogRecord>, LogError> {
    let mut opts = Options::default();
    // Point-in-time recovery stops at a half-written tail record of the live WAL instead
    // of failing the open.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    // Opening every SST up front (the default, -1) costs more than the one or two seeks
    // a poll does.
    opts.set_max_open_files(16);
    opts.set_skip_stats_update_on_db_open(true);
    let db = DB::open_for_read_only(&opts, path, false).map_err(|source| LogError::Open { path: path.to_owned(), source })?;
    let mut read_opts = ReadOptions::default();
    read_opts.fill_cache(false);
    let mut iter = db.raw_iterator_opt(read_opts);

    let records = match find_records_prefix(&mut iter, run_hash) {
        Some(prefix) => collect_records(&mut iter, &prefix, after_step, first_step, path),
        None => Vec::new(),
    };
    iter.status().map_err(|source| LogError::Read { path: path.to_owned(), source })?;
    Ok(records)
}

/// Finds `seqs\xfechunks\xfe<hash>\xfe<context>\xfe__log_records\xfeval\xfe` by visiting
/// each context of the run with two seeks, instead of scanning the sequences that sort
/// before `__log_records` (uppercase names, other contexts).
fn find_records_prefix(iter: &mut DBRawIterator<'_>, run_hash: &str) -> Option<Vec<u8>> {
    let mut base = b"seqs\xfechunks\xfe".to_vec();
    base.extend_from_slice(run_hash.as_bytes());
    base.push(SEP);
    iter.seek(&base);
    while let Some(key) = iter.key() {
        let rest = key.strip_prefix(base.as_slice())?;
        let Some(context_len) = path_element_len(rest) else {
            tracing::warn!(key = ?Bytes(key), "unexpected key layout in Aim chunk");
            return None;
        };
        let context_end = base.len() + context_len;
        let mut prefix = key[..context_end].to_vec();
        prefix.extend_from_slice(&RECORDS_MARKER[1..RECORDS_MARKER.len() - 1]);
        iter.seek(&prefix);
        if iter.key().is_some_and(|k| k.starts_with(&prefix)) {
            return Some(prefix);
        }
        // Every key of this context starts with `prefix[..context_end]`, which ends in
        // SEP; appending 0xff (never in UTF-8 names) jumps past all of them.
        prefix.truncate(context_end);
        prefix.push(0xff);
        iter.seek(&prefix);
    }
    None
}

/// Length of the first path element incl. its trailing separator.
fn path_element_len(path: &[u8]) -> Option<usize> {
    if path.first() == Some(&SEP) {
        (path.get(9) == Some(&SEP)).then_some(10)
    } else {
        path.iter().position(|&b| b == SEP).map(|end| end + 1)
    }
}

/// Record fields seen so far for one step.
struct Pending {
    step: u64,
    message: Option<String>,
    level: Option<i64>,
}

fn collect_records(iter: &mut DBRawIterator<'_>, prefix: &[u8], after_step: Option<u64>, first_step: u64, path: &Path) -> Vec<LogRecord> {
    let mut start = prefix.to_vec();
    start.push(SEP);
    start.extend_from_slice(&first_step.to_be_bytes());
    iter.seek(&start);

    let mut records = Vec::new();
    let mut pending: Option<Pending> = None;
    while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
        let Some(tail) = key.strip_prefix(prefix) else {
            break;
        };
        let Some((step, field_path)) = split_step(tail) else {
            tracing::warn!(chunk = %path.display(), key = ?Bytes(key), "malformed log record key");
            iter.next();
            continue;
        };
        if after_step.is_some_and(|after| step <= after) {
            iter.next();
            continue;
        }
        if pending.as_ref().is_some_and(|p| p.step != step) {
            finish(pending.take(), &mut records, false, path);
        }
        let current = pending.get_or_insert(Pending { step, message: None, level: None });
        match field_kind(field_path) {
            Some(Field::Message) => match decode_message(value) {
                Some(message) => current.message = Some(message),
                None => {
                    tracing::warn!(chunk = %path.display(), step, value = ?Bytes(value), "undecodable log message");
                }
            },
            Some(Field::LogLevel) => match decode_level(value) {
                Some(level) => current.level = Some(level),
                None => {
                    tracing::warn!(chunk = %path.display(), step, value = ?Bytes(value), "undecodable log level");
                }
            },
            None => {}
        }
        iter.next();
    }
    finish(pending, &mut records, true, path);
    records
}

fn finish(pending: Option<Pending>, records: &mut Vec<LogRecord>, last: bool, path: &Path) {
    let Some(Pending { step, message, level }) = pending else {
        return;
    };
    match (message, level) {
        (Some(message), Some(level)) => records.push(LogRecord { step, level, message }),
        // Only the newest record can still be in the middle of being written.
        _ if last => {
            tracing::debug!(chunk = %path.display(), step, "log record incomplete, not read yet");
        }
        _ => tracing::warn!(chunk = %path.display(), step, "incomplete log record skipped"),
    }
}

/// Splits `\xfe<step: 8 bytes BE>\xfe<field path>` by position: the step bytes may
/// themselves be 0xfe.
fn split_step(tail: &[u8]) -> Option<(u64, &[u8])> {
    let (&flag, rest) = tail.split_first()?;
    if flag != SEP || rest.len() < 9 || rest[8] != SEP {
        return None;
    }
    let step = u64::from_be_bytes(rest[..8].try_into().ok()?);
    Some((step, &rest[9..]))
}

fn field_kind(field_path: &[u8]) -> Option<Field> {
    match field_path {
        b"message\xfe" => Some(Field::Message),
        b"log_level\xfe" => Some(Field::LogLevel),
        _ => None,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Shows keys and values like Python's `repr(bytes)`, which is how Aim's keys are
/// usually discussed.
struct Bytes<'a>(&'a [u8]);

impl std::fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}
