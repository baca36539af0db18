//! Property tests for what Runwatch reads from an Aim repository: check-in file names and
//! the keys and values of log records. Nothing a file system or a RocksDB chunk can hold
//! may make a parser panic, and everything Aim (or the fixture writer) encodes decodes
//! back to what was written.
//!
//! Case counts stay small for `make test`; `PROPTEST_CASES=N` raises them (`make soak`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use runwatch_aim::checkins::{CheckIn, Flag};
use runwatch_aim::logs::testing::{write_log_records, ChunkWriter};
use runwatch_aim::logs::{decode_level, decode_message, decode_step_and_field, read_log_records, Field, LogRecord};

/// `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config(default: u32) -> Config {
    Config { cases: cases(default), ..Config::default() }
}

/// The marker in front of a log record's step, as Aim 3.29 lays keys out.
const MARKER: &[u8] = b"\xfe__log_records\xfeval\xfe\xfe";

// ---- check-in names -------------------------------------------------------------------

fn flag() -> impl Strategy<Value = Flag> {
    prop::sample::select(Flag::ALL.to_vec())
}

/// A run hash the parser accepts: letters, digits, '_', '-', '.', not starting with '.'.
fn run_hash() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,40}"
}

/// Every valid check-in. Times have two decimals (what the name keeps) and stay below
/// 2^53 hundredths, where `n / 100.0` is the f64 nearest to the decimal `n / 100`.
fn valid_checkin() -> impl Strategy<Value = CheckIn> {
    (run_hash(), any::<u64>(), flag(), 0u64..(1u64 << 53), any::<u64>()).prop_map(|(run_hash, idx, flag, centis, expect_next_in)| CheckIn {
        run_hash,
        idx,
        flag,
        utc_time: centis as f64 / 100.0,
        expect_next_in,
    })
}

/// One field of a name: usually nearly right, sometimes anything at all.
fn field(valid: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    prop_oneof![
        8 => valid,
        1 => "[0-9.+ eE-]{0,24}",
        1 => ".{0,12}",
        1 => Just(String::new()),
    ]
    .boxed()
}

/// Names assembled from nearly-valid fields: reaches every branch of the parser far more
/// often than uniformly random strings do.
fn near_name() -> impl Strategy<Value = String> {
    (
        field(run_hash().boxed()),
        field("[0-9]{1,22}".boxed()),
        field(flag().prop_map(|f| f.as_str().to_string()).boxed()),
        field("[0-9]{1,12}(\\.[0-9]{0,4})?".boxed()),
        field("[0-9]{1,22}".boxed()),
        prop_oneof![6 => Just("-"), 1 => Just("--"), 1 => Just("_"), 1 => Just("")],
    )
        .prop_map(|(h, i, f, t, e, sep)| [h, i, f, t, e].join(sep))
}

/// Parses `name`; checks the error names the input, and that an accepted name describes
/// a check-in whose own name parses to the same fields (the time is rounded to 2 places).
fn check_name(name: &str) -> Result<(), TestCaseError> {
    match CheckIn::parse(name) {
        Err(e) => prop_assert_eq!(e.name, name),
        Ok(c) => {
            prop_assert!(!c.run_hash.is_empty() && !c.run_hash.starts_with('.'));
            prop_assert!(c.utc_time.is_finite() && c.utc_time >= 0.0);
            let again = CheckIn::parse(&c.file_name()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!((&again.run_hash, again.idx, again.flag, again.expect_next_in), (&c.run_hash, c.idx, c.flag, c.expect_next_in));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn checkin_parse_never_panics_on_any_string(name in any::<String>()) {
        check_name(&name)?;
    }

    #[test]
    fn checkin_parse_never_panics_on_nearly_valid_names(name in near_name()) {
        check_name(&name)?;
    }

    #[test]
    fn every_valid_checkin_round_trips_through_its_file_name(c in valid_checkin()) {
        let name = c.file_name();
        prop_assert_eq!(CheckIn::parse(&name).map_err(|e| TestCaseError::fail(e.to_string()))?, c);
    }

    // ---- log record keys and values ---------------------------------------------------

    #[test]
    fn log_decoders_never_panic_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_step_and_field(&bytes);
        let _ = decode_message(&bytes);
        let _ = decode_level(&bytes);
    }

    #[test]
    fn key_decoder_never_panics_near_the_marker(
        prefix in prop::collection::vec(any::<u8>(), 0..40),
        tail in prop::collection::vec(prop_oneof![3 => any::<u8>(), 1 => Just(0xfeu8)], 0..40),
    ) {
        let key = [&prefix[..], MARKER, &tail[..]].concat();
        if let Some((step, field)) = decode_step_and_field(&key) {
            // Whatever decodes names one of the two fields Runwatch reads.
            prop_assert!(matches!(field, Field::Message | Field::LogLevel));
            let _ = step;
        }
    }

    #[test]
    fn keys_decode_by_position_with_any_prefix(
        prefix in prop::collection::vec(0u8..0xfe, 0..40),
        step in any::<u64>(),
        which in 0usize..4,
    ) {
        let (field_path, expected): (&[u8], Option<Field>) =
            [(&b"message\xfe"[..], Some(Field::Message)), (b"log_level\xfe", Some(Field::LogLevel)),
             (b"timestamp\xfe", None), (b"__logger_info\xfe\xfe\x00\x00\x00\x00\x00\x00\x00\x00\xfe", None)][which];
        let mut key = [&prefix[..], MARKER].concat();
        key.extend_from_slice(&step.to_be_bytes());
        key.push(0xfe);
        key.extend_from_slice(field_path);
        prop_assert_eq!(decode_step_and_field(&key), expected.map(|f| (step, f)));
    }

    #[test]
    fn values_round_trip(level in any::<i64>(), message in any::<String>()) {
        let mut level_value = vec![0x02u8];
        level_value.extend_from_slice(&level.to_le_bytes());
        prop_assert_eq!(decode_level(&level_value), Some(level));
        // A wrong length or type byte is not a level.
        prop_assert_eq!(decode_level(&level_value[..level_value.len() - 1]), None);
        level_value[0] = 0x03;
        prop_assert_eq!(decode_level(&level_value), None);

        let mut message_value = vec![0x04u8];
        message_value.extend_from_slice(message.as_bytes());
        prop_assert_eq!(decode_message(&message_value), Some(message.clone()));
        message_value[0] = 0x05;
        prop_assert_eq!(decode_message(&message_value), None);
    }
}

/// Keys the fixture writer builds (the same layout as the keys real Aim wrote, see
/// tests/logs.rs) decode to their step and field, for every step.
#[test]
fn fixture_writer_keys_decode_to_their_step_and_field() {
    let aim = tempfile::tempdir().unwrap();
    let writer = ChunkWriter::create(aim.path(), "be0ebd0ce55b452d85f692cf").unwrap();
    let mut runner = TestRunner::new(config(2_000));
    runner
        .run(&any::<u64>(), |step| {
            prop_assert_eq!(decode_step_and_field(&writer.field_key(step, b"message")), Some((step, Field::Message)));
            prop_assert_eq!(decode_step_and_field(&writer.field_key(step, b"log_level")), Some((step, Field::LogLevel)));
            prop_assert_eq!(decode_step_and_field(&writer.field_key(step, b"timestamp")), None);
            Ok(())
        })
        .unwrap();
}

/// Whole records through a real RocksDB chunk: what the fixture writer stores (the way
/// Aim 3.29 does), `read_log_records` returns, step for step. Each case opens a database,
/// so this one runs a thousandth of `PROPTEST_CASES` (at least 16).
#[test]
fn fixture_writer_records_round_trip_through_a_chunk() {
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse::<u32>().ok()).map_or(16, |c| (c / 1000).max(16));
    let mut runner = TestRunner::new(Config { cases: n, ..Config::default() });
    let records = prop::collection::btree_map(any::<u64>(), (any::<i64>(), any::<String>()), 0..12);
    runner
        .run(&("[A-Za-z0-9_-]{1,32}", records), |(hash, records): (String, BTreeMap<u64, (i64, String)>)| {
            let aim = tempfile::tempdir().unwrap();
            let input: Vec<(u64, i64, &str)> = records.iter().map(|(s, (l, m))| (*s, *l, m.as_str())).collect();
            write_log_records(aim.path(), &hash, &input).unwrap();
            let read = read_log_records(aim.path(), &hash, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected: Vec<LogRecord> =
                records.iter().map(|(s, (l, m))| LogRecord { step: *s, level: *l, message: m.clone() }).collect();
            prop_assert_eq!(read, expected);
            Ok(())
        })
        .unwrap();
}
