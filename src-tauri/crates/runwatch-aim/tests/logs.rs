//! Reading log records from run chunks laid out like Aim 3.29 writes them.

use std::path::Path;
use std::time::SystemTime;

use runwatch_aim::logs::testing::{write_log_records, ChunkWriter};
use runwatch_aim::logs::{decode_level, decode_message, decode_step_and_field, read_log_records, Field, LogError, LogRecord};

const HASH: &str = "be0ebd0ce55b452d85f692cf";

/// Copied from a chunk real Aim 3.29 wrote for `run.log_warning("disk {almost} full")`.
const REAL_HASH: &str = "6245f79dba744cd7a00a13be";
const REAL_MESSAGE_KEY: &[u8] = b"seqs\xfechunks\xfe6245f79dba744cd7a00a13be\xfe\xfe\xc1{\x82\xeb\xc8\xde\xa3\x92\xfe__log_records\xfeval\xfe\xfe\x00\x00\x00\x00\x00\x00\x00\x00\xfemessage\xfe";
const REAL_LEVEL_KEY: &[u8] = b"seqs\xfechunks\xfe6245f79dba744cd7a00a13be\xfe\xfe\xc1{\x82\xeb\xc8\xde\xa3\x92\xfe__log_records\xfeval\xfe\xfe\x00\x00\x00\x00\x00\x00\x00\x00\xfelog_level\xfe";
const REAL_MESSAGE_VALUE: &[u8] = b"\x04disk {almost} full";
const REAL_LEVEL_VALUE: &[u8] = b"\x02\x1e\x00\x00\x00\x00\x00\x00\x00";

fn record(step: u64, level: i64, message: &str) -> LogRecord {
    LogRecord { step, level, message: message.to_owned() }
}

fn read(aim: &Path, after_step: Option<u64>) -> Vec<LogRecord> {
    read_log_records(aim, HASH, after_step).expect("read log records")
}

/// Names, sizes and modification times of the chunk's files: what a writing reader
/// would change.
fn snapshot(aim: &Path) -> Vec<(String, u64, SystemTime)> {
    let dir = aim.join("seqs").join("chunks").join(HASH);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            (entry.file_name().to_string_lossy().into_owned(), meta.len(), meta.modified().unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn reads_texts_levels_and_steps_in_order() {
    let aim = tempfile::tempdir().unwrap();
    write_log_records(aim.path(), HASH, &[(2, 20, "hi"), (0, 30, "disk almost full"), (1, 40, "boom")]).unwrap();
    assert_eq!(read(aim.path(), None), [record(0, 30, "disk almost full"), record(1, 40, "boom"), record(2, 20, "hi")]);
}

#[test]
fn after_step_returns_only_later_records() {
    let aim = tempfile::tempdir().unwrap();
    write_log_records(aim.path(), HASH, &[(0, 30, "a"), (1, 40, "b"), (2, 20, "c"), (7, 30, "d")]).unwrap();
    assert_eq!(read(aim.path(), Some(0)), [record(1, 40, "b"), record(2, 20, "c"), record(7, 30, "d")]);
    assert_eq!(read(aim.path(), Some(3)), [record(7, 30, "d")]);
    assert_eq!(read(aim.path(), Some(7)), []);
    assert_eq!(read(aim.path(), Some(u64::MAX)), []);
}

#[test]
fn after_step_near_the_end_of_many_records() {
    let aim = tempfile::tempdir().unwrap();
    let texts: Vec<String> = (0..3000).map(|i| format!("line {i}")).collect();
    let records: Vec<(u64, i64, &str)> = texts.iter().enumerate().map(|(i, text)| (i as u64, 30, text.as_str())).collect();
    write_log_records(aim.path(), HASH, &records).unwrap();
    let tail = read(aim.path(), Some(2990));
    let steps: Vec<u64> = tail.iter().map(|r| r.step).collect();
    assert_eq!(steps, (2991..3000).collect::<Vec<_>>());
    assert_eq!(tail[0].message, "line 2991");
    assert_eq!(read(aim.path(), None).len(), 3000);
}

#[test]
fn braces_and_format_markers_pass_through_untouched() {
    let aim = tempfile::tempdir().unwrap();
    let text = "disk {almost} full {run.hash} {} {{x}} %s %(name)s";
    write_log_records(aim.path(), HASH, &[(0, 30, text)]).unwrap();
    assert_eq!(read(aim.path(), None), [record(0, 30, text)]);
}

#[test]
fn unicode_and_empty_messages() {
    let aim = tempfile::tempdir().unwrap();
    let text = "ünïcødé ✓ 日本語 🚀\nsecond line\ttab";
    write_log_records(aim.path(), HASH, &[(0, 40, text), (1, 30, "")]).unwrap();
    assert_eq!(read(aim.path(), None), [record(0, 40, text), record(1, 30, "")]);
}

#[test]
fn steps_whose_bytes_contain_the_separator() {
    let aim = tempfile::tempdir().unwrap();
    let steps = [253, 254, 255, 0xfe00, 0xfefe, 0xfe00_0000_0000_00fe];
    let records: Vec<(u64, i64, &str)> = steps.iter().map(|&s| (s, 30, "x")).collect();
    write_log_records(aim.path(), HASH, &records).unwrap();
    let read_steps = |after| -> Vec<u64> { read(aim.path(), after).iter().map(|r| r.step).collect() };
    assert_eq!(read_steps(None), steps);
    assert_eq!(read_steps(Some(253)), steps[1..]);
    assert_eq!(read_steps(Some(254)), steps[2..]);
    assert_eq!(read_steps(Some(0xfdff)), steps[3..]);
    assert_eq!(read_steps(Some(0xfe00)), steps[4..]);
}

#[test]
fn incomplete_newest_record_waits_until_complete() {
    let aim = tempfile::tempdir().unwrap();
    let writer = ChunkWriter::create(aim.path(), HASH).unwrap();
    writer.put_record(0, 30, "done").unwrap();
    writer.put_message_only(1, "half written").unwrap();
    assert_eq!(read(aim.path(), None), [record(0, 30, "done")]);
    assert_eq!(read(aim.path(), Some(0)), []);

    writer.put_level_only(1, 40).unwrap();
    assert_eq!(read(aim.path(), Some(0)), [record(1, 40, "half written")]);
}

#[test]
fn incomplete_record_before_complete_ones_is_skipped() {
    let aim = tempfile::tempdir().unwrap();
    let writer = ChunkWriter::create(aim.path(), HASH).unwrap();
    writer.put_record(0, 30, "a").unwrap();
    writer.put_level_only(1, 30).unwrap();
    writer.put_message_only(2, "no level").unwrap();
    writer.put_record(3, 40, "d").unwrap();
    assert_eq!(read(aim.path(), None), [record(0, 30, "a"), record(3, 40, "d")]);
}

#[test]
fn garbage_values_and_keys_are_skipped_without_panicking() {
    let aim = tempfile::tempdir().unwrap();
    let writer = ChunkWriter::create(aim.path(), HASH).unwrap();
    for step in 0..5 {
        writer.put_record(step, 30, "ok").unwrap();
    }
    // Wrong type byte, truncated integer, empty value.
    writer.put_raw(&writer.field_key(1, b"message"), b"\x02\x1e\x00\x00\x00\x00\x00\x00\x00").unwrap();
    writer.put_raw(&writer.field_key(2, b"log_level"), b"\x02\x1e\x00").unwrap();
    writer.put_raw(&writer.field_key(3, b"message"), b"").unwrap();
    // Invalid UTF-8 is replaced, not dropped.
    writer.put_raw(&writer.field_key(4, b"message"), b"\x04bad \xff byte").unwrap();
    // A key under the sequence whose step is cut short.
    let object = writer.field_key(0, b"message");
    let marker = b"__log_records\xfeval\xfe";
    let at = object.windows(marker.len()).position(|w| w == marker).unwrap() + marker.len();
    let mut short = object[..at].to_vec();
    short.extend_from_slice(b"\xfe\x00\x01\xfe");
    writer.put_raw(&short, b"\x04junk").unwrap();

    assert_eq!(read(aim.path(), None), [record(0, 30, "ok"), record(4, 30, "bad \u{fffd} byte")]);
}

#[test]
fn run_without_chunk_is_no_chunk() {
    let aim = tempfile::tempdir().unwrap();
    let err = read_log_records(aim.path(), HASH, None).unwrap_err();
    assert!(matches!(err, LogError::NoChunk { .. }), "{err:?}");

    // Aim has created the directory but not yet the database in it.
    std::fs::create_dir_all(aim.path().join("seqs/chunks").join(HASH)).unwrap();
    let err = read_log_records(aim.path(), HASH, Some(3)).unwrap_err();
    assert!(matches!(err, LogError::NoChunk { .. }), "{err:?}");
}

#[test]
fn chunk_without_log_records_is_empty() {
    let aim = tempfile::tempdir().unwrap();
    write_log_records(aim.path(), HASH, &[]).unwrap();
    assert_eq!(read(aim.path(), None), []);
}

#[test]
fn other_runs_records_are_not_mixed_in() {
    let aim = tempfile::tempdir().unwrap();
    write_log_records(aim.path(), HASH, &[(0, 30, "mine")]).unwrap();
    write_log_records(aim.path(), REAL_HASH, &[(0, 40, "other")]).unwrap();
    assert_eq!(read(aim.path(), None), [record(0, 30, "mine")]);
}

#[test]
fn broken_database_is_an_open_error() {
    let aim = tempfile::tempdir().unwrap();
    let dir = aim.path().join("seqs/chunks").join(HASH);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("CURRENT"), "MANIFEST-000099\n").unwrap();
    let err = read_log_records(aim.path(), HASH, None).unwrap_err();
    assert!(matches!(err, LogError::Open { .. }), "{err:?}");
}

#[test]
fn run_hash_cannot_escape_the_chunks_directory() {
    let aim = tempfile::tempdir().unwrap();
    for hash in ["", ".", "..", "../chunks", "a/b"] {
        let err = read_log_records(aim.path(), hash, None).unwrap_err();
        assert!(matches!(err, LogError::InvalidRunHash { .. }), "{hash:?}: {err:?}");
    }
}

#[test]
fn reads_a_live_chunk_without_writing_to_it() {
    let aim = tempfile::tempdir().unwrap();
    // Holds RocksDB's lock and keeps new records in the write-ahead log, like a live run.
    let writer = ChunkWriter::create(aim.path(), HASH).unwrap();
    writer.put_unrelated().unwrap();
    writer.put_record(0, 30, "first").unwrap();
    writer.flush().unwrap();
    writer.put_record(1, 40, "in the log only").unwrap();

    let before = snapshot(aim.path());
    assert_eq!(read(aim.path(), None), [record(0, 30, "first"), record(1, 40, "in the log only")]);
    assert_eq!(snapshot(aim.path()), before, "the reader changed the chunk");

    writer.put_record(2, 30, "later").unwrap();
    assert_eq!(read(aim.path(), Some(1)), [record(2, 30, "later")]);
    // The writer is unaffected by the reads.
    writer.put_record(3, 30, "still writing").unwrap();
    assert_eq!(read(aim.path(), Some(2)), [record(3, 30, "still writing")]);
}

#[test]
fn reads_a_closed_chunk_without_writing_to_it() {
    let aim = tempfile::tempdir().unwrap();
    write_log_records(aim.path(), HASH, &[(0, 30, "a")]).unwrap();
    let before = snapshot(aim.path());
    read(aim.path(), None);
    read(aim.path(), Some(0));
    assert_eq!(snapshot(aim.path()), before, "the reader changed the chunk");
}

#[test]
fn decodes_keys_and_values_real_aim_wrote() {
    assert_eq!(decode_step_and_field(REAL_MESSAGE_KEY), Some((0, Field::Message)));
    assert_eq!(decode_step_and_field(REAL_LEVEL_KEY), Some((0, Field::LogLevel)));
    assert_eq!(decode_message(REAL_MESSAGE_VALUE).as_deref(), Some("disk {almost} full"));
    assert_eq!(decode_level(REAL_LEVEL_VALUE), Some(30));
}

#[test]
fn fixture_keys_match_real_aim_keys() {
    let aim = tempfile::tempdir().unwrap();
    let writer = ChunkWriter::create(aim.path(), REAL_HASH).unwrap();
    assert_eq!(writer.field_key(0, b"message"), REAL_MESSAGE_KEY);
    assert_eq!(writer.field_key(0, b"log_level"), REAL_LEVEL_KEY);
}

#[test]
fn decode_step_and_field_by_position() {
    let key = |step: u64, field: &[u8]| {
        let mut key = b"any prefix\xfe\xfe\xfe\xfe\xfe\xfe\xfe\xfe\xfe\xfe__log_records\xfeval\xfe\xfe".to_vec();
        key.extend_from_slice(&step.to_be_bytes());
        key.push(0xfe);
        key.extend_from_slice(field);
        key
    };
    for step in [0, 254, 0xfe00, 0xfefe_fefe_fefe_fefe, u64::MAX] {
        assert_eq!(decode_step_and_field(&key(step, b"message\xfe")), Some((step, Field::Message)));
        assert_eq!(decode_step_and_field(&key(step, b"log_level\xfe")), Some((step, Field::LogLevel)));
        // The object marker, other fields and nested fields are not records' text/level.
        assert_eq!(decode_step_and_field(&key(step, b"")), None);
        assert_eq!(decode_step_and_field(&key(step, b"timestamp\xfe")), None);
        assert_eq!(decode_step_and_field(&key(step, b"message")), None);
        assert_eq!(decode_step_and_field(&key(step, b"message\xfex\xfe")), None);
    }
    assert_eq!(decode_step_and_field(b""), None);
    assert_eq!(decode_step_and_field(b"\xfe__log_records\xfeval\xfe\xfe\x00\x01\xfemessage\xfe"), None);
    assert_eq!(decode_step_and_field(b"seqs\xfechunks\xfeh\xfe\xfe\x00\x00\x00\x00\x00\x00\x00\x00\xfelogs\xfeval\xfe\xfe\x00\x00\x00\x00\x00\x00\x00\x00\xfemessage\xfe"), None);
}

#[test]
fn decode_values() {
    assert_eq!(decode_message(b"\x04").as_deref(), Some(""));
    assert_eq!(decode_message(b"\x04{}").as_deref(), Some("{}"));
    assert_eq!(decode_message(b"\x04a\xffb").as_deref(), Some("a\u{fffd}b"));
    assert_eq!(decode_message(b""), None);
    assert_eq!(decode_message(b"\x02abc"), None);

    assert_eq!(decode_level(&[&[2u8][..], &40i64.to_le_bytes()].concat()), Some(40));
    assert_eq!(decode_level(&[&[2u8][..], &(-5i64).to_le_bytes()].concat()), Some(-5));
    assert_eq!(decode_level(b""), None);
    assert_eq!(decode_level(b"\x02\x1e"), None);
    assert_eq!(decode_level(b"\x02\x1e\x00\x00\x00\x00\x00\x00\x00\x00"), None);
    assert_eq!(decode_level(b"\x04\x1e\x00\x00\x00\x00\x00\x00\x00"), None);
}
