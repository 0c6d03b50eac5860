//! The audit trail's unit tests: format and chain, recovery, durability, rotation, tampering,
//! retention, queries, failures, syslog.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::parse_line;
use super::segment::segment_name;
use super::*;

const NODE: u64 = 7;
const DAY_MS: u64 = 86_400_000;

fn event(i: u64) -> Event {
    Event {
        at_ms: 1_000 + i,
        node_id: NODE,
        region: "ap-guangzhou".into(),
        uin: Some(100 + i % 3),
        principal: Some(format!("user/u{}", i % 2)),
        secret_id: Some(format!("AKID{}", i % 4)),
        source: Some("10.0.0.1:1234".into()),
        dialect: "tencent".into(),
        action: if i.is_multiple_of(2) {
            "kms:Encrypt"
        } else {
            "kms:CreateKey"
        }
        .into(),
        key_ids: vec![format!("key-{}", i % 5)],
        request_id: format!("req-{i}"),
        result: "Success".into(),
        consistency: Some("linearizable".into()),
        latency_us: 10 * i,
        write: i % 2 == 1,
    }
}

/// Waits (boundedly: a bug must fail the test, not hang it) for a ticket's verdict.
async fn on_disk(t: &Ticket) -> Result<(), AuditError> {
    tokio::time::timeout(Duration::from_secs(30), t.durable())
        .await
        .expect("no verdict on the ticket within 30 s")
}

fn options() -> Options {
    Options {
        flush_interval: Duration::from_millis(20),
        ..Options::default()
    }
}

fn seg(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(segment_name(first_seq))
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// A closed trail of `n` records (events 1..=n) in one segment.
fn build(dir: &Path, n: u64) {
    let log = AuditLog::open(dir, NODE, options()).unwrap();
    for i in 1..=n {
        log.append(event(i), false).unwrap();
    }
    log.close().unwrap();
}

fn all_records(dir: &Path) -> Vec<StoredRecord> {
    Reader::open(dir)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

#[test]
fn records_round_trip_and_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, NODE, options()).unwrap();
    let mut sent = Vec::new();
    for i in 1..=30u64 {
        let mut e = event(i);
        // Strings JSON must escape, and a node id the trail replaces.
        e.request_id = format!("req \"{i}\"\n\\ 审计 \u{1}");
        e.uin = (i % 4 != 0).then_some(i);
        e.key_ids = (0..i % 3).map(|k| format!("k{k}")).collect();
        e.node_id = 99;
        let t = log.append(e.clone(), i % 5 == 0).unwrap();
        assert_eq!(t.seq(), i);
        e.node_id = NODE;
        sent.push(e);
    }
    let head = log.head();
    assert_eq!(head.seq, 30);
    log.close().unwrap();
    assert_eq!(log.durable_head(), head);

    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let file = seg(&dir, 1);
    assert_eq!(mode(&file), 0o600);

    let records = all_records(&dir);
    let lines = lines_of(&file);
    assert_eq!(records.len(), 30);
    assert_eq!(lines.len(), 30);
    let mut prev = [0u8; 32];
    for (i, (rec, line)) in records.iter().zip(&lines).enumerate() {
        assert_eq!(rec.seq, i as u64 + 1);
        assert_eq!(rec.event, sent[i]);
        assert_eq!(rec.prev, prev);
        assert_eq!(rec.computed_hash().unwrap(), rec.hash);
        // The stored line is the record's canonical line, and its serde form.
        assert_eq!(rec.to_line().unwrap(), format!("{line}\n").into_bytes());
        assert_eq!(&serde_json::to_string(rec).unwrap(), line);
        prev = rec.hash;
    }
    assert_eq!(prev, head.hash);

    // Reopened, the chain continues.
    let log = AuditLog::open(&dir, NODE, options()).unwrap();
    assert_eq!(log.head(), head);
    assert_eq!(log.durable_head(), head);
    assert_eq!(log.append(event(31), true).unwrap().seq(), 31);
    log.close().unwrap();
    let report = verify(&dir, &[head]).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 31);
    assert_eq!(report.checkpoints_checked, 1);
}

/// The encoding and hash of two records, computed independently (Python: bincode 2's standard
/// varint encoding written out by hand, hashlib.sha256), pinned.
#[test]
fn known_answer_hashes() {
    let e1 = Event {
        at_ms: 1_700_000_000_000,
        node_id: 3,
        region: "ap-guangzhou".into(),
        uin: Some(100_000_000_001),
        principal: Some("user/alice".into()),
        secret_id: Some("AKIDtest".into()),
        source: Some("10.0.0.7:51234".into()),
        dialect: "tencent".into(),
        action: "kms:Encrypt".into(),
        key_ids: vec!["k-1".into()],
        request_id: "req-1".into(),
        result: "Success".into(),
        consistency: Some("linearizable".into()),
        latency_us: 300,
        write: false,
    };
    let e2 = Event {
        at_ms: 5,
        node_id: 3,
        region: String::new(),
        uin: None,
        principal: None,
        secret_id: None,
        source: None,
        dialect: "tencent".into(),
        action: "x".into(),
        key_ids: vec![],
        request_id: "r".into(),
        result: "E".into(),
        consistency: None,
        latency_us: 0,
        write: true,
    };
    assert_eq!(
        hex::encode(record::encode_event(&e1).unwrap()),
        "01fd0068e5cf8b010000030c61702d6775616e677a686f7501fd01e8764817000000010a757365722f61\
         6c6963650108414b494474657374010e31302e302e302e373a35313233340774656e63656e740b6b6d73\
         3a456e637279707401036b2d31057265712d310753756363657373010c6c696e656172697a61626c65fb\
         2c0100"
    );
    assert_eq!(
        hex::encode(record::encode_event(&e2).unwrap()),
        "01050300000000000774656e63656e7401780001720145000001"
    );
    const H1: &str = "420d7440ccac782a0ca6510132acd935c022da6c2b70e0f2e48d55418cd37fce";
    const H2: &str = "2b0d24a0193b6e55d91c7cedf28ad0f82b65327e2c0b5812598efaa7346f84f4";
    let h1 = record_hash(1, &[0; 32], &e1).unwrap();
    assert_eq!(hex::encode(h1), H1);
    assert_eq!(hex::encode(record_hash(2, &h1, &e2).unwrap()), H2);

    // The trail writes exactly these.
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(tmp.path(), 3, options()).unwrap();
    log.append(e1, false).unwrap();
    log.append(e2, true).unwrap();
    log.close().unwrap();
    let lines = lines_of(&seg(tmp.path(), 1));
    assert_eq!(
        lines[1],
        format!(
            "{{\"v\":1,\"seq\":2,\"prev\":\"{H1}\",\"hash\":\"{H2}\",\"at_ms\":5,\"node_id\":3,\
             \"region\":\"\",\"uin\":null,\"principal\":null,\"secret_id\":null,\"source\":null,\
             \"dialect\":\"tencent\",\"action\":\"x\",\"key_ids\":[],\"request_id\":\"r\",\
             \"result\":\"E\",\"consistency\":null,\"latency_us\":0,\"write\":true}}"
        )
    );
    assert!(lines[0].starts_with(&format!(
        "{{\"v\":1,\"seq\":1,\"prev\":\"{}\",\"hash\":\"{H1}\",\"at_ms\":1700000000000,",
        "0".repeat(64)
    )));
    // Verification does not depend on the JSON's formatting: the same record pretty-printed
    // (on one line) with its fields reordered parses to the same record.
    let rec = parse_line(lines[1].as_bytes()).unwrap();
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&lines[1]).unwrap();
    let hash = v.remove("hash").unwrap();
    v.insert("hash".into(), hash);
    let reformatted = serde_json::to_string(&v).unwrap().replace(",\"", ", \"");
    assert_ne!(reformatted, lines[1]);
    assert_eq!(parse_line(reformatted.as_bytes()).unwrap(), rec);
}

#[test]
fn a_torn_last_line_is_cut_away_on_open() {
    for torn in [
        "{\"v\":1,\"seq\":6,\"prev\":\"00".to_string(), // no newline
        "{\"v\":1,\"seq\":6,\"pr\n".to_string(),        // newline, unparsable
        "\0\0\0\0\0\0\0\0".to_string(),                 // zeros after a crash
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        build(dir, 5);
        let file = seg(dir, 1);
        let good = std::fs::read(&file).unwrap();
        let mut bytes = good.clone();
        bytes.extend_from_slice(torn.as_bytes());
        std::fs::write(&file, &bytes).unwrap();
        // A reader skips an unterminated last line (it may be being written) and reports a
        // terminated one that is not a record.
        let read: Vec<_> = Reader::open(dir).unwrap().collect();
        assert_eq!(read.iter().filter(|r| r.is_ok()).count(), 5);
        assert_eq!(read.len(), 5 + usize::from(torn.ends_with('\n')));

        let log = AuditLog::open(dir, NODE, options()).unwrap();
        assert_eq!(log.head().seq, 5, "{torn:?}");
        assert_eq!(std::fs::read(&file).unwrap(), good, "{torn:?}");
        assert_eq!(log.append(event(6), true).unwrap().seq(), 6);
        log.close().unwrap();
        let report = verify(dir, &[]).unwrap();
        assert!(report.is_ok(), "{torn:?}: {report:?}");
        assert_eq!(report.records, 6);
    }
}

#[test]
fn a_bad_line_before_the_end_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, 5);
    let file = seg(dir, 1);
    let mut lines = lines_of(&file);
    lines[2] = "not a record".into();
    write_lines(&file, &lines);
    match AuditLog::open(dir, NODE, options()) {
        Err(AuditError::Malformed { file: f, line, .. }) => {
            assert_eq!(f, file);
            assert_eq!(line, 3);
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a malformed trail"),
    }
    let report = verify(dir, &[]).unwrap();
    assert_eq!(report.problem, Some(Problem::Malformed { file, line: 3 }));

    // A record numbered out of turn in the current segment is refused too.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, 5);
    let file = seg(dir, 1);
    let mut lines = lines_of(&file);
    lines.swap(1, 2);
    write_lines(&file, &lines);
    let e = AuditLog::open(dir, NODE, options()).err().unwrap();
    assert!(matches!(&e, AuditError::Malformed { line: 2, .. }), "{e}");

    // So is another node's trail.
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), 2);
    let e = AuditLog::open(tmp.path(), NODE + 1, options())
        .err()
        .unwrap();
    assert!(e.to_string().contains("node 7's"), "{e}");
}

#[test]
fn an_unknown_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, 3);
    let file = seg(dir, 1);
    let pristine = lines_of(&file);
    for replacement in ["{\"v\":2,\"seq\":", "{\"v\":2,\"new_field\":[1],\"seq\":"] {
        let mut lines = pristine.clone();
        lines[1] = lines[1].replacen("{\"v\":1,\"seq\":", replacement, 1);
        write_lines(&file, &lines);
        let errors: Vec<AuditError> = Reader::open(dir).unwrap().filter_map(Result::err).collect();
        assert_eq!(errors.len(), 1);
        assert!(
            matches!(errors[0], AuditError::Version { found: 2 }),
            "{}",
            errors[0]
        );
        assert!(matches!(
            AuditLog::open(dir, NODE, options()),
            Err(AuditError::Version { found: 2 })
        ));
        assert!(matches!(
            verify(dir, &[]),
            Err(AuditError::Version { found: 2 })
        ));
    }
    // An unknown field in a version-1 line is not a record (its hash would not cover it).
    let mut lines = pristine;
    lines[1] = lines[1].replacen("{\"v\":1,", "{\"v\":1,\"extra\":0,", 1);
    write_lines(&file, &lines);
    let report = verify(dir, &[]).unwrap();
    assert_eq!(
        report.problem,
        Some(Problem::Malformed {
            file: file.clone(),
            line: 2
        })
    );
}

#[tokio::test]
async fn a_durable_record_is_on_disk_when_its_ticket_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Nothing but a durable append makes this writer write.
    let log = AuditLog::open(
        dir,
        NODE,
        Options {
            flush_interval: Duration::from_secs(3600),
            ..Options::default()
        },
    )
    .unwrap();
    let early: Vec<Ticket> = (1..=3)
        .map(|i| log.append(event(i), false).unwrap())
        .collect();
    assert!(early[0].is_durable().is_none());
    let t = log.append(event(4), true).unwrap();
    on_disk(&t).await.unwrap();
    // Read back from the file, the log still open: all four rode the same sync.
    let lines = lines_of(&seg(dir, 1));
    assert_eq!(lines.len(), 4);
    let last = parse_line(lines[3].as_bytes()).unwrap();
    assert_eq!(last.seq, 4);
    assert_eq!(last.event.request_id, "req-4");
    assert_eq!(log.durable_head().seq, 4);
    for t in &early {
        assert!(matches!(t.is_durable(), Some(Ok(()))));
        on_disk(t).await.unwrap();
    }
    log.close().unwrap();
}

#[test]
fn other_records_reach_the_disk_within_the_flush_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = AuditLog::open(
        dir,
        NODE,
        Options {
            flush_interval: Duration::from_millis(50),
            ..Options::default()
        },
    )
    .unwrap();
    let t = log.append(event(1), false).unwrap();
    // Bounded wait (no assertion on speed): the record must appear without any other call.
    let deadline = Instant::now() + Duration::from_secs(20);
    let file = seg(dir, 1);
    loop {
        let n = std::fs::read_to_string(&file).map_or(0, |s| s.lines().count());
        if n == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the record never reached the file"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    while t.is_durable().is_none() {
        assert!(Instant::now() < deadline, "never reported durable");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(log.durable_head().seq, 1);
    log.close().unwrap();
}

#[tokio::test]
async fn segments_rotate_and_the_chain_runs_across_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = Options {
        segment_bytes: 1500,
        ..options()
    };
    let log = AuditLog::open(dir, NODE, opts.clone()).unwrap();
    for i in 1..=40 {
        on_disk(&log.append(event(i), true).unwrap()).await.unwrap();
    }
    let checkpoint = log.durable_head();
    log.close().unwrap();
    let paths = segment_paths(dir);
    assert!(paths.len() >= 5, "{paths:?}");
    let mut next = 1;
    for (i, p) in paths.iter().enumerate() {
        let recs: Vec<StoredRecord> = lines_of(p)
            .iter()
            .map(|l| parse_line(l.as_bytes()).unwrap())
            .collect();
        assert_eq!(
            p,
            &seg(dir, recs[0].seq),
            "a segment is named for its first record"
        );
        assert_eq!(recs[0].seq, next);
        next += recs.len() as u64;
        let len = std::fs::metadata(p).unwrap().len();
        if i + 1 < paths.len() {
            assert!((1500..1500 + 600).contains(&len), "{p:?}: {len}");
        }
    }
    let report = verify(dir, &[checkpoint]).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.records, report.segments), (40, paths.len() as u64));

    let log = AuditLog::open(dir, NODE, opts).unwrap();
    for i in 41..=45 {
        on_disk(&log.append(event(i), true).unwrap()).await.unwrap();
    }
    log.close().unwrap();
    let seqs: Vec<u64> = all_records(dir).iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=45).collect::<Vec<_>>());
    assert!(verify(dir, &[checkpoint]).unwrap().is_ok());
}

#[test]
fn each_kind_of_tampering_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, 20);
    let file = seg(dir, 1);
    let pristine = lines_of(&file);
    let recs: Vec<StoredRecord> = pristine
        .iter()
        .map(|l| parse_line(l.as_bytes()).unwrap())
        .collect();
    let head_at = |seq: u64| Head {
        seq,
        hash: recs[seq as usize - 1].hash,
    };
    let checkpoints = [head_at(5), head_at(15)];
    let check = |lines: Vec<String>, cps: &[Head]| {
        write_lines(&file, &lines);
        verify(dir, cps).unwrap()
    };

    let ok = check(pristine.clone(), &checkpoints);
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(
        (
            ok.records,
            ok.segments,
            ok.checkpoints_checked,
            ok.checkpoints_pruned
        ),
        (20, 1, 2, 0)
    );
    assert_eq!((ok.first_seq, ok.last_seq), (Some(1), Some(20)));

    // One field of a middle record edited.
    let mut l = pristine.clone();
    assert!(l[9].contains("\"result\":\"Success\""));
    l[9] = l[9].replace("\"result\":\"Success\"", "\"result\":\"AccessDenied\"");
    let r = check(l, &checkpoints);
    assert_eq!(r.problem, Some(Problem::Edited { seq: 10 }));
    assert_eq!(r.records, 20);

    // A line deleted.
    let mut l = pristine.clone();
    l.remove(9);
    assert_eq!(
        check(l, &checkpoints).problem,
        Some(Problem::Missing {
            after_seq: 9,
            next_seq: 11
        })
    );

    // Two lines swapped.
    let mut l = pristine.clone();
    l.swap(9, 10);
    assert_eq!(
        check(l, &checkpoints).problem,
        Some(Problem::Reordered { seq: 11 })
    );

    // A record moved far up.
    let mut l = pristine.clone();
    let moved = l.remove(14);
    l.insert(4, moved);
    assert_eq!(
        check(l, &checkpoints).problem,
        Some(Problem::Reordered { seq: 15 })
    );

    // The tail cut after a checkpoint.
    let r = check(pristine[..12].to_vec(), &checkpoints);
    assert_eq!(
        r.problem,
        Some(Problem::Truncated {
            checkpoint_seq: 15,
            last_seq: 12
        })
    );
    assert_eq!(r.last_seq, Some(12));
    // ... which nothing but a checkpoint can tell.
    assert!(check(pristine[..12].to_vec(), &checkpoints[..1]).is_ok());

    // A checkpoint that does not match.
    let mut wrong = checkpoints;
    wrong[0].hash[0] ^= 1;
    assert_eq!(
        check(pristine.clone(), &wrong).problem,
        Some(Problem::CheckpointMismatch { seq: 5 })
    );

    // An edit with the record's hash recomputed: its successor no longer links to it.
    let mut l = pristine.clone();
    let mut edited = recs[9].clone();
    edited.event.result = "AccessDenied".into();
    edited.hash = edited.computed_hash().unwrap();
    l[9] = String::from_utf8(edited.to_line().unwrap())
        .unwrap()
        .trim_end()
        .to_string();
    assert_eq!(
        check(l, &checkpoints).problem,
        Some(Problem::Reordered { seq: 11 })
    );

    // A whole rewritten tail (the chain recomputed) is caught by the checkpoint only.
    let mut l = pristine[..14].to_vec();
    let mut prev = recs[13].hash;
    for r in &recs[14..] {
        let mut r = r.clone();
        r.event.result = "Forged".into();
        r.prev = prev;
        r.hash = r.computed_hash().unwrap();
        prev = r.hash;
        l.push(
            String::from_utf8(r.to_line().unwrap())
                .unwrap()
                .trim_end()
                .to_string(),
        );
    }
    assert!(check(l.clone(), &checkpoints[..1]).is_ok());
    assert_eq!(
        check(l, &checkpoints).problem,
        Some(Problem::CheckpointMismatch { seq: 15 })
    );

    // A forged record with the largest seq (and a right hash), twice: named, no overflow.
    let mut l = pristine.clone();
    let mut forged = recs[19].clone();
    forged.seq = u64::MAX;
    forged.prev = recs[19].hash;
    forged.hash = forged.computed_hash().unwrap();
    let forged_line = String::from_utf8(forged.to_line().unwrap())
        .unwrap()
        .trim_end()
        .to_string();
    l.push(forged_line.clone());
    l.push(forged_line.clone());
    assert_eq!(
        check(l, &checkpoints).problem,
        Some(Problem::Missing {
            after_seq: 20,
            next_seq: u64::MAX
        })
    );
    let e = AuditLog::open(dir, NODE, options()).err().unwrap();
    assert!(matches!(e, AuditError::Malformed { line: 21, .. }), "{e}");

    // Garbage in the middle.
    let mut l = pristine.clone();
    l[6] = "{\"v\":1,".into();
    assert_eq!(
        check(l, &checkpoints).problem,
        Some(Problem::Malformed {
            file: file.clone(),
            line: 7
        })
    );

    // The first lines of the oldest segment deleted: not a pruning (segments are named for
    // their first record, and pruning removes whole segments).
    let r = check(pristine[2..].to_vec(), &[]);
    assert_eq!(
        r.problem,
        Some(Problem::Missing {
            after_seq: 0,
            next_seq: 3
        })
    );

    // Everything deleted, with a checkpoint: truncated to nothing.
    std::fs::write(&file, b"").unwrap();
    assert_eq!(
        verify(dir, &checkpoints).unwrap().problem,
        Some(Problem::Truncated {
            checkpoint_seq: 5,
            last_seq: 0
        })
    );
}

#[tokio::test]
async fn retention_prunes_whole_old_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = Options {
        segment_bytes: 1500,
        retention_days: 2,
        ..options()
    };
    let log = AuditLog::open(dir, NODE, opts).unwrap();
    let old = |i: u64| Event {
        at_ms: DAY_MS + i,
        ..event(i)
    };
    let new = |i: u64| Event {
        at_ms: 10 * DAY_MS + i,
        ..event(i)
    };
    for i in 1..=20 {
        on_disk(&log.append(old(i), true).unwrap()).await.unwrap();
    }
    let early_checkpoint = Head {
        seq: 3,
        hash: all_records(dir)[2].hash,
    };
    for i in 21..=30 {
        on_disk(&log.append(new(i), true).unwrap()).await.unwrap();
    }
    let before = segment_paths(dir);
    assert!(before.len() >= 6, "{before:?}");

    // Nothing is old enough yet.
    let r = log.prune(2 * DAY_MS).unwrap();
    assert_eq!((r.segments_deleted, r.first_seq), (0, Some(1)));

    let now = 10 * DAY_MS + 1_000;
    let r = log.prune(now).unwrap();
    assert!(r.segments_deleted > 0);
    let after = segment_paths(dir);
    assert_eq!(after.len(), before.len() - r.segments_deleted);
    assert_eq!(after[..], before[r.segments_deleted..]);
    let kept = all_records(dir);
    let first = kept[0].seq;
    assert_eq!(r.first_seq, Some(first));
    assert!(first > 1, "pruning is visible");
    // Only segments with nothing but old records went, and all of them did: the first segment
    // kept holds a new record.
    assert!(kept.iter().filter(|r| r.event.at_ms >= 10 * DAY_MS).count() == 10);
    let first_segment = lines_of(&after[0]);
    assert!(first_segment
        .iter()
        .any(|l| parse_line(l.as_bytes()).unwrap().event.at_ms >= 10 * DAY_MS));

    let checkpoint = log.durable_head();
    let report = verify(dir, &[early_checkpoint, checkpoint]).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.first_seq, Some(first));
    assert_eq!(
        (report.checkpoints_pruned, report.checkpoints_checked),
        (1, 1)
    );

    // Far in the future, everything but the current segment goes.
    let r = log.prune(100 * DAY_MS).unwrap();
    let left = segment_paths(dir);
    assert_eq!(left, vec![after.last().unwrap().clone()], "{r:?}");
    on_disk(&log.append(new(31), true).unwrap()).await.unwrap();
    log.close().unwrap();
    assert!(verify(dir, &[checkpoint]).unwrap().is_ok());
    // And the trail reopens and goes on from there.
    let log = AuditLog::open(dir, NODE, options()).unwrap();
    assert_eq!(log.head().seq, 31);
    log.close().unwrap();

    // Retention 0 keeps everything.
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        tmp.path(),
        NODE,
        Options {
            segment_bytes: 500,
            ..options()
        },
    )
    .unwrap();
    for i in 1..=6 {
        on_disk(&log.append(old(i), true).unwrap()).await.unwrap();
    }
    let n = segment_paths(tmp.path()).len();
    assert!(n >= 2);
    assert_eq!(log.prune(1000 * DAY_MS).unwrap().segments_deleted, 0);
    assert_eq!(segment_paths(tmp.path()).len(), n);
}

/// A segment may be pruned only once its successor holds a durable record: otherwise a crash
/// (or a failed write) could leave a trail whose end is gone.
#[tokio::test]
async fn prune_keeps_the_segment_before_one_not_yet_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = AuditLog::open(
        dir,
        NODE,
        Options {
            segment_bytes: 1000,
            retention_days: 1,
            ..options()
        },
    )
    .unwrap();
    for i in 1..=3 {
        on_disk(&log.append(event(i), true).unwrap()).await.unwrap();
    }
    assert_eq!(segment_paths(dir).len(), 1);
    // The next write starts a new segment and fails in its middle.
    log.fail_writes_after(10);
    assert!(on_disk(&log.append(event(4), true).unwrap()).await.is_err());
    assert_eq!(segment_paths(dir).len(), 2);
    let r = log.prune(1000 * DAY_MS).unwrap();
    assert_eq!(r.segments_deleted, 0);
    log.try_recover().unwrap();
    assert_eq!(segment_paths(dir).len(), 1);
    assert_eq!(log.head().seq, 3);
    on_disk(&log.append(event(5), true).unwrap()).await.unwrap();
    assert_eq!(segment_paths(dir), vec![seg(dir, 1), seg(dir, 4)]);
    // Now the successor is durable: the old segment may go.
    assert_eq!(log.prune(1000 * DAY_MS).unwrap().segments_deleted, 1);
    log.close().unwrap();
    let report = verify(dir, &[]).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.first_seq, Some(4));
}

#[tokio::test]
async fn queries_filter_order_and_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = AuditLog::open(
        dir,
        NODE,
        Options {
            segment_bytes: 3000,
            ..options()
        },
    )
    .unwrap();
    for i in 1..=60 {
        on_disk(&log.append(event(i), true).unwrap()).await.unwrap();
    }
    log.close().unwrap();
    assert!(segment_paths(dir).len() > 3);
    let seqs = |f: &Filter, order: Order, limit: usize| -> Vec<u64> {
        query(dir, f, order, limit)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect()
    };
    let all = Filter::default();
    assert_eq!(
        seqs(&all, Order::OldestFirst, 1000),
        (1..=60).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(&all, Order::NewestFirst, 1000),
        (1..=60).rev().collect::<Vec<_>>()
    );
    assert_eq!(seqs(&all, Order::NewestFirst, 3), vec![60, 59, 58]);
    assert_eq!(seqs(&all, Order::OldestFirst, 3), vec![1, 2, 3]);
    assert!(seqs(&all, Order::OldestFirst, 0).is_empty());

    // Event i has at_ms 1000 + i: the range is inclusive at both ends.
    let range = Filter {
        from_ms: Some(1_010),
        to_ms: Some(1_014),
        ..Filter::default()
    };
    assert_eq!(
        seqs(&range, Order::OldestFirst, 100),
        vec![10, 11, 12, 13, 14]
    );
    let key = Filter {
        key_id: Some("key-3".into()),
        ..Filter::default()
    };
    assert_eq!(
        seqs(&key, Order::NewestFirst, 100),
        (1..=60).rev().filter(|i| i % 5 == 3).collect::<Vec<_>>()
    );
    let uin = Filter {
        uin: Some(101),
        ..Filter::default()
    };
    assert_eq!(
        seqs(&uin, Order::OldestFirst, 100),
        (1..=60).filter(|i| i % 3 == 1).collect::<Vec<_>>()
    );
    let principal = Filter {
        principal: Some("user/u0".into()),
        ..Filter::default()
    };
    assert_eq!(
        seqs(&principal, Order::OldestFirst, 100),
        (1..=60).filter(|i| i % 2 == 0).collect::<Vec<_>>()
    );
    let secret = Filter {
        secret_id: Some("AKID3".into()),
        ..Filter::default()
    };
    assert_eq!(
        seqs(&secret, Order::OldestFirst, 100),
        (1..=60).filter(|i| i % 4 == 3).collect::<Vec<_>>()
    );
    let action = Filter {
        action: Some("kms:CreateKey".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&action, Order::NewestFirst, 4), vec![59, 57, 55, 53]);
    // Conditions combine.
    let both = Filter {
        action: Some("kms:Encrypt".into()),
        key_id: Some("key-0".into()),
        to_ms: Some(1_040),
        ..Filter::default()
    };
    assert_eq!(seqs(&both, Order::OldestFirst, 100), vec![10, 20, 30, 40]);
    assert_eq!(seqs(&both, Order::NewestFirst, 2), vec![40, 30]);
    let none = Filter {
        uin: Some(5),
        ..Filter::default()
    };
    assert!(seqs(&none, Order::NewestFirst, 100).is_empty());

    let t: Vec<u64> = tail(dir, 5).unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(t, vec![56, 57, 58, 59, 60]);
    assert_eq!(tail(dir, 100).unwrap().len(), 60);

    // Export: the selected records as stored lines, oldest first.
    let mut out = Vec::new();
    assert_eq!(export(dir, &uin, &mut out).unwrap(), 20);
    let exported: Vec<StoredRecord> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| parse_line(l.as_bytes()).unwrap())
        .collect();
    assert_eq!(
        exported,
        query(dir, &uin, Order::OldestFirst, 1000).unwrap()
    );
    let mut everything = Vec::new();
    export(dir, &all, &mut everything).unwrap();
    let stored: Vec<u8> = segment_paths(dir)
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(everything, stored);

    // The limit is capped.
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), MAX_QUERY_LIMIT as u64 + 5);
    let r = query(tmp.path(), &all, Order::NewestFirst, 5000).unwrap();
    assert_eq!(r.len(), MAX_QUERY_LIMIT);
    assert_eq!(r[0].seq, MAX_QUERY_LIMIT as u64 + 5);
}

#[tokio::test]
async fn a_full_disk_fails_the_trail_and_it_recovers_when_it_can() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A real fault: the segment is /dev/full, where every write fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", seg(dir, 1)).unwrap();
    let slow = Options {
        flush_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let log = AuditLog::open(dir, NODE, slow).unwrap();
    assert!(log.is_healthy());
    let early = log.append(event(1), false).unwrap();
    let t = log.append(event(2), true).unwrap();
    let e = on_disk(&t).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, AuditError::Unavailable(_)), "{msg}");
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(msg.contains("records 1..=2"), "{msg}");
    assert!(on_disk(&early).await.is_err());
    assert!(!log.is_healthy());
    let e = log.append(event(3), true).unwrap_err();
    assert!(matches!(e, AuditError::Unavailable(_)), "{e}");
    log.note_refusal();
    log.note_refusal();
    assert_eq!(log.refusals(), 2);
    assert_eq!(log.durable_head().seq, 0);

    // The failed segment holds nothing durable: recovery drops it and starts again at seq 1.
    log.try_recover().unwrap();
    assert!(log.is_healthy());
    assert!(std::fs::symlink_metadata(seg(dir, 1)).is_err());
    let again = log.append(event(4), true).unwrap();
    assert_eq!(again.seq(), 1);
    on_disk(&again).await.unwrap();
    // The lost record's ticket does not mistake the new seq 1 for its own.
    assert!(on_disk(&early).await.is_err());
    assert!(matches!(early.is_durable(), Some(Err(_))));
    log.close().unwrap();
    let recs = all_records(dir);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].event.request_id, "req-4");
    assert!(verify(dir, &[]).unwrap().is_ok());
}

#[tokio::test]
async fn a_failed_write_cuts_back_to_the_durable_record_on_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = AuditLog::open(dir, NODE, options()).unwrap();
    let mut tickets = Vec::new();
    for i in 1..=5 {
        let t = log.append(event(i), true).unwrap();
        on_disk(&t).await.unwrap();
        tickets.push(t);
    }
    let durable = log.durable_head();
    let file = seg(dir, 1);
    let good_len = std::fs::metadata(&file).unwrap().len();

    // The next write stops after 30 bytes, as on a full disk: half a line is left.
    log.fail_writes_after(30);
    let lost = log.append(event(6), true).unwrap();
    assert!(on_disk(&lost).await.is_err());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), good_len + 30);
    assert!(!log.is_healthy());
    assert!(log.append(event(7), false).is_err());
    assert_eq!(log.durable_head(), durable);

    log.try_recover().unwrap();
    assert!(log.is_healthy());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), good_len);
    assert_eq!(log.head(), durable);
    // Records durable before the failure stay durable; the lost one stays lost even though
    // seq 6 is given again.
    let t6 = log.append(event(8), true).unwrap();
    assert_eq!(t6.seq(), 6);
    on_disk(&t6).await.unwrap();
    on_disk(&tickets[2]).await.unwrap();
    assert!(on_disk(&lost).await.is_err());
    assert_eq!(
        log.try_recover().ok(),
        Some(()),
        "a healthy trail recovers trivially"
    );

    // A sync that fails after its write went through: the complete line it leaves is not
    // known to be on disk, and recovery cuts it away too.
    let durable = log.durable_head();
    let good_len = std::fs::metadata(&file).unwrap().len();
    log.fail_next_sync();
    let unsynced = log.append(event(9), true).unwrap();
    let e = on_disk(&unsynced).await.unwrap_err();
    assert!(e.to_string().contains("Input/output error"), "{e}");
    assert!(e.to_string().contains("records 7..=7"), "{e}");
    assert_eq!(lines_of(&file).len(), 7);
    log.try_recover().unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), good_len);
    assert_eq!(log.head(), durable);
    on_disk(&log.append(event(10), true).unwrap())
        .await
        .unwrap();
    log.close().unwrap();

    let recs = all_records(dir);
    assert_eq!(recs.len(), 7);
    assert_eq!(recs[5].event.request_id, "req-8");
    assert_eq!(recs[6].event.request_id, "req-10");
    let report = verify(dir, &[durable]).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(AuditLog::open(dir, NODE, options())
        .unwrap()
        .close()
        .is_ok());
}

#[test]
fn written_lines_are_forwarded_to_syslog() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(
        &dir,
        NODE,
        Options {
            syslog: Some(sock_path.clone()),
            ..options()
        },
    )
    .unwrap();
    for i in 1..=3 {
        log.append(event(i), i == 3).unwrap();
    }
    log.close().unwrap();
    assert_eq!((log.syslog_sent(), log.syslog_failures()), (3, 0));
    let lines = lines_of(&seg(&dir, 1));
    let mut buf = vec![0u8; 65536];
    for line in &lines {
        let n = sock.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        // <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
        let parts: Vec<&str> = msg.splitn(8, ' ').collect();
        assert_eq!(parts[0], "<86>1", "{msg}");
        assert!(parts[1].ends_with('Z') && parts[1].len() == 24, "{msg}");
        assert_eq!(parts[3], "raftkms");
        assert_eq!(parts[4], std::process::id().to_string());
        assert_eq!((parts[5], parts[6]), ("audit", "-"));
        assert_eq!(parts[7], line);
    }

    // No one listening: counted, and the trail goes on.
    drop(sock);
    std::fs::remove_file(&sock_path).unwrap();
    let log = AuditLog::open(
        &dir,
        NODE,
        Options {
            syslog: Some(sock_path),
            ..options()
        },
    )
    .unwrap();
    log.append(event(4), true).unwrap();
    log.close().unwrap();
    assert_eq!((log.syslog_sent(), log.syslog_failures()), (0, 1));
    assert_eq!(all_records(&dir).len(), 4);
}

#[test]
fn concurrent_appends_make_one_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = Arc::new(
        AuditLog::open(
            dir,
            NODE,
            Options {
                segment_bytes: 64 << 10,
                flush_interval: Duration::from_millis(5),
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..250u64 {
                    log.append(event(t * 1000 + i), i % 50 == 0).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    log.close().unwrap();
    let report = verify(dir, &[log.durable_head()]).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 1000);
    let mut ids: Vec<String> = all_records(dir)
        .into_iter()
        .map(|r| r.event.request_id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
}

#[test]
fn close_and_drop_flush_and_a_closed_trail_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let slow = Options {
        flush_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let log = AuditLog::open(dir, NODE, slow.clone()).unwrap();
    for i in 1..=3 {
        log.append(event(i), false).unwrap();
    }
    drop(log);
    assert_eq!(lines_of(&seg(dir, 1)).len(), 3);

    let log = AuditLog::open(dir, NODE, slow).unwrap();
    log.append(event(4), false).unwrap();
    log.close().unwrap();
    assert_eq!(lines_of(&seg(dir, 1)).len(), 4);
    assert!(!log.is_healthy());
    assert!(matches!(
        log.append(event(5), true),
        Err(AuditError::Unavailable(_))
    ));
    assert!(log.try_recover().is_err());
    assert!(log.close().is_ok());
}

#[test]
fn an_empty_last_segment_is_continued_if_its_name_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, 4);
    // A crash right after a rotation created the next segment.
    std::fs::write(seg(dir, 5), b"").unwrap();
    let log = AuditLog::open(dir, NODE, options()).unwrap();
    assert_eq!(log.head().seq, 4);
    log.append(event(5), true).unwrap();
    log.close().unwrap();
    assert_eq!(lines_of(&seg(dir, 5)).len(), 1);
    assert!(verify(dir, &[]).unwrap().is_ok());

    // One named for another seq cannot be continued.
    std::fs::write(seg(dir, 9), b"").unwrap();
    let e = AuditLog::open(dir, NODE, options()).err().unwrap();
    assert!(matches!(e, AuditError::Malformed { .. }), "{e}");
}

#[test]
fn an_oversized_event_is_refused_and_the_trail_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(tmp.path(), NODE, options()).unwrap();
    let mut e = event(1);
    e.key_ids = vec!["k".repeat(MAX_LINE_BYTES)];
    assert!(matches!(
        log.append(e, true),
        Err(AuditError::Unavailable(_))
    ));
    assert!(log.is_healthy());
    assert_eq!(log.append(event(2), true).unwrap().seq(), 1);
    log.close().unwrap();
}

#[test]
fn the_largest_seq_ends_the_trail_without_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rec = StoredRecord {
        seq: u64::MAX,
        prev: [7; 32],
        hash: [0; 32],
        event: event(1),
    };
    rec.hash = rec.computed_hash().unwrap();
    let line = String::from_utf8(rec.to_line().unwrap()).unwrap();
    let file = seg(dir, u64::MAX);
    std::fs::write(&file, &line).unwrap();
    let log = AuditLog::open(dir, NODE, options()).unwrap();
    assert_eq!(log.head().seq, u64::MAX);
    let e = log.append(event(2), true).unwrap_err();
    assert!(e.to_string().contains("exhausted"), "{e}");
    log.close().unwrap();
    // A record after it cannot be numbered: refused, not an overflow.
    std::fs::write(&file, format!("{line}{line}")).unwrap();
    let e = AuditLog::open(dir, NODE, options()).err().unwrap();
    assert!(matches!(e, AuditError::Malformed { line: 2, .. }), "{e}");
    assert!(verify(dir, &[]).unwrap().problem.is_some());
}

#[tokio::test]
async fn sync_puts_every_appended_record_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Without sync, these would wait an hour for the writer.
    let slow = Options {
        flush_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let log = AuditLog::open(dir, NODE, slow).unwrap();
    for i in 1..=3 {
        log.append(event(i), false).unwrap();
    }
    assert!(all_records(dir).is_empty(), "written before any flush");
    tokio::time::timeout(Duration::from_secs(10), log.sync())
        .await
        .expect("sync hung")
        .unwrap();
    assert_eq!(all_records(dir).len(), 3);
    assert_eq!(log.durable_head().seq, 3);
    // Nothing pending: returns at once.
    tokio::time::timeout(Duration::from_secs(10), log.sync())
        .await
        .expect("sync hung")
        .unwrap();
    log.close().unwrap();
}

#[test]
fn request_id_result_and_source_ip_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = AuditLog::open(dir, NODE, options()).unwrap();
    for i in 1..=4 {
        let mut e = event(i);
        if i == 3 {
            e.result = "UnauthorizedOperation".into();
            e.source = Some("[2001:db8::7]:443".into());
        }
        log.append(e, true).unwrap();
    }
    log.close().unwrap();
    let ids = |f: Filter| -> Vec<String> {
        query(dir, &f, Order::OldestFirst, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.event.request_id)
            .collect()
    };
    let by_id = Filter {
        request_id: Some("req-2".into()),
        ..Filter::default()
    };
    assert_eq!(ids(by_id), ["req-2"]);
    let by_result = Filter {
        result: Some("UnauthorizedOperation".into()),
        ..Filter::default()
    };
    assert_eq!(ids(by_result), ["req-3"]);
    let by_ip = Filter {
        source_ip: Some("2001:db8::7".into()),
        ..Filter::default()
    };
    assert_eq!(ids(by_ip), ["req-3"]);
    let v4 = Filter {
        source_ip: Some("10.0.0.1".into()),
        ..Filter::default()
    };
    assert_eq!(ids(v4), ["req-1", "req-2", "req-4"]);
}
