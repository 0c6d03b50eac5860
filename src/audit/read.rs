//! The reading side: [`Reader`] streams records in order; [`verify`] checks the chain and the
//! checkpoints; [`query`], [`tail`] and [`export`] select records. All of them read the files
//! directly (a trail being written may be read: each segment is read up to its length when the
//! reader reaches it, and an unfinished last line is left for later).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{parse_line, Event, StoredRecord, ZERO_HASH};
use super::segment::{line_error, list_segments, Line, Lines, Segment};
use super::{AuditError, Head};

/// The most records one [`query`] returns.
pub const MAX_QUERY_LIMIT: usize = 1000;

/// Streams the records of a trail, oldest first, without holding more than one line in memory.
/// Yields an error for a line that is not a record and goes on with the next; an I/O error ends
/// the segment it happened in. The last line of the last segment is skipped if it has no
/// newline yet (being written, or torn by a crash that the next open cuts away).
pub struct Reader {
    segments: Vec<Segment>,
    next_segment: usize,
    current: Option<(usize, Lines)>,
    first_in_segment: bool,
    /// The last of `segments` is the trail's last segment.
    live_end: bool,
}

/// Where a record was read.
pub(super) struct Pos {
    pub segment: usize,
    pub first_in_segment: bool,
}

type Located = (Result<StoredRecord, AuditError>, Pos);

impl Reader {
    /// A reader over the trail in `dir`, as its segments are now.
    pub fn open(dir: impl AsRef<Path>) -> Result<Reader, AuditError> {
        Ok(Reader::over(list_segments(dir.as_ref())?, true))
    }

    fn over(segments: Vec<Segment>, live_end: bool) -> Reader {
        Reader {
            segments,
            next_segment: 0,
            current: None,
            first_in_segment: false,
            live_end,
        }
    }

    /// How many segment files the trail had when the reader was opened.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn next_located(&mut self) -> Option<Located> {
        loop {
            let (i, lines) = match &mut self.current {
                Some((i, lines)) => (*i, lines),
                None => {
                    let i = self.next_segment;
                    let seg = self.segments.get(i)?;
                    self.next_segment += 1;
                    let pos = Pos {
                        segment: i,
                        first_in_segment: true,
                    };
                    match Lines::open(&seg.path) {
                        Ok(lines) => {
                            self.first_in_segment = true;
                            self.current = Some((i, lines));
                            continue;
                        }
                        Err(e) => return Some((Err(e), pos)),
                    }
                }
            };
            let is_last = i + 1 == self.segments.len();
            let (result, number) = match lines.next_line() {
                Err(e) => (Err(e), 0),
                Ok(Line::End) => {
                    self.current = None;
                    continue;
                }
                Ok(Line::Unterminated { number }) => {
                    if is_last && self.live_end {
                        self.current = None;
                        continue;
                    }
                    let e = AuditError::Malformed {
                        file: lines.path().to_path_buf(),
                        line: number,
                        why: "the segment's last line has no newline".to_string(),
                    };
                    (Err(e), 0)
                }
                Ok(Line::Complete { number, bytes }) => (
                    parse_line(bytes).map_err(|e| line_error(e, lines.path(), number)),
                    number,
                ),
            };
            if number == 0 {
                // An error that ends this segment.
                self.current = None;
            }
            let pos = Pos {
                segment: i,
                first_in_segment: std::mem::replace(&mut self.first_in_segment, false),
            };
            return Some((result, pos));
        }
    }
}

impl Iterator for Reader {
    type Item = Result<StoredRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_located().map(|(r, _)| r)
    }
}

/// The first problem [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Problem {
    /// The record's hash does not match its contents: it was changed.
    Edited { seq: u64 },
    /// Records between these two are missing (deleted).
    Missing { after_seq: u64, next_seq: u64 },
    /// The record's seq goes backwards, or its `prev` is not the hash of the record before it
    /// although its own hash is right (records swapped or moved, or spliced from elsewhere).
    Reordered { seq: u64 },
    /// A checkpoint names a record past the trail's end: records were cut from the end.
    Truncated { checkpoint_seq: u64, last_seq: u64 },
    /// The record at a checkpoint's seq is not the one checkpointed (or is missing).
    CheckpointMismatch { seq: u64 },
    /// A line that is not a record.
    Malformed { file: PathBuf, line: u64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Edited { seq } => write!(
                f,
                "record {seq} was changed: its hash does not match its contents"
            ),
            Problem::Missing {
                after_seq,
                next_seq,
            } => write!(
                f,
                "records {}..={} are missing (deleted): seq {next_seq} follows seq {after_seq}",
                after_seq.saturating_add(1),
                next_seq.saturating_sub(1)
            ),
            Problem::Reordered { seq } => write!(
                f,
                "record {seq} is out of place: it does not follow the record before it"
            ),
            Problem::Truncated {
                checkpoint_seq,
                last_seq,
            } => write!(
                f,
                "the trail ends at seq {last_seq} but a checkpoint names seq {checkpoint_seq}: \
                 records were cut from its end"
            ),
            Problem::CheckpointMismatch { seq } => {
                write!(
                    f,
                    "record {seq} is not the record checkpointed at seq {seq}"
                )
            }
            Problem::Malformed { file, line } => {
                write!(f, "{} line {line} is not an audit record", file.display())
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The first problem, in trail order (`None`: the trail is intact).
    pub problem: Option<Problem>,
    /// Records read.
    pub records: u64,
    /// Segment files.
    pub segments: u64,
    /// The oldest record's seq: above 1 when old segments were pruned.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Checkpoints compared with a record.
    pub checkpoints_checked: u64,
    /// Checkpoints older than the oldest record (pruned, not failures).
    pub checkpoints_pruned: u64,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Walks the whole trail in `dir`: recomputes every record's hash, checks that each seq follows
/// the one before by exactly 1 and that each `prev` is the hash of the record before it, and
/// that every checkpoint from the oldest record on names a record of the trail (the oldest
/// record present is the anchor: its `prev` is trusted; older checkpoints count as pruned).
/// The report names the first problem. An error only when the trail cannot be read (I/O) or
/// holds a record of a format version this build does not know.
pub fn verify(dir: impl AsRef<Path>, checkpoints: &[Head]) -> Result<VerifyReport, AuditError> {
    let mut reader = Reader::open(dir)?;
    let mut report = VerifyReport {
        segments: reader.segment_count() as u64,
        ..VerifyReport::default()
    };
    let mut checkpoints: Vec<Head> = checkpoints.iter().filter(|c| c.seq > 0).copied().collect();
    checkpoints.sort_by_key(|c| c.seq);
    let mut cp = checkpoints.iter().peekable();
    let mut problem: Option<Problem> = None;
    let mut note = |p: Problem| {
        problem.get_or_insert(p);
    };
    let mut last: Option<(u64, [u8; 32])> = None;
    let mut peeked: Option<Located> = None;
    while let Some((result, pos)) = peeked.take().or_else(|| reader.next_located()) {
        let rec = match result {
            Ok(rec) => rec,
            Err(AuditError::Malformed { file, line, .. }) => {
                note(Problem::Malformed { file, line });
                continue;
            }
            Err(e) => return Err(e),
        };
        report.records += 1;
        if report.first_seq.is_none() {
            report.first_seq = Some(rec.seq);
            while cp.next_if(|c| c.seq < rec.seq).is_some() {
                report.checkpoints_pruned += 1;
            }
            // Segments are named for their first record: lines cut from the start of the
            // oldest segment are not a pruning (pruning removes whole segments).
            let named = reader.segments[pos.segment].first_seq;
            if pos.first_in_segment && rec.seq > named {
                note(Problem::Missing {
                    after_seq: named.saturating_sub(1),
                    next_seq: rec.seq,
                });
            }
        }
        if rec.computed_hash()? != rec.hash {
            note(Problem::Edited { seq: rec.seq });
        } else if let Some((last_seq, last_hash)) = last {
            if Some(rec.seq) == last_seq.checked_add(1) {
                if rec.prev != last_hash {
                    note(Problem::Reordered { seq: rec.seq });
                }
            } else if rec.seq <= last_seq {
                note(Problem::Reordered { seq: rec.seq });
            } else {
                // A gap: records deleted, or a later record moved up (then an earlier one
                // follows it).
                peeked = reader.next_located();
                let goes_back = matches!(&peeked, Some((Ok(next), _)) if next.seq < rec.seq);
                note(if goes_back {
                    Problem::Reordered { seq: rec.seq }
                } else {
                    Problem::Missing {
                        after_seq: last_seq,
                        next_seq: rec.seq,
                    }
                });
            }
        } else if rec.seq == 1 && rec.prev != ZERO_HASH {
            note(Problem::Reordered { seq: 1 });
        }
        while let Some(c) = cp.next_if(|c| c.seq <= rec.seq) {
            report.checkpoints_checked += 1;
            if c.seq < rec.seq || c.hash != rec.hash {
                note(Problem::CheckpointMismatch { seq: c.seq });
            }
        }
        last = Some((rec.seq, rec.hash));
        report.last_seq = Some(rec.seq);
    }
    if let Some(c) = cp.next() {
        note(Problem::Truncated {
            checkpoint_seq: c.seq,
            last_seq: report.last_seq.unwrap_or(0),
        });
    }
    report.problem = problem;
    Ok(report)
}

/// Which records [`query`] and [`export`] select: every given condition must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// `at_ms` at or after this.
    pub from_ms: Option<u64>,
    /// `at_ms` at or before this.
    pub to_ms: Option<u64>,
    /// One of the record's key ids.
    pub key_id: Option<String>,
    pub uin: Option<u64>,
    pub principal: Option<String>,
    pub secret_id: Option<String>,
    pub action: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    /// The result: `Success` or an error code.
    #[serde(default)]
    pub result: Option<String>,
    /// The client's IP address (the record's source without its port).
    #[serde(default)]
    pub source_ip: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        self.from_ms.is_none_or(|t| e.at_ms >= t)
            && self.to_ms.is_none_or(|t| e.at_ms <= t)
            && self
                .key_id
                .as_ref()
                .is_none_or(|k| e.key_ids.iter().any(|x| x == k))
            && self.uin.is_none_or(|u| e.uin == Some(u))
            && self
                .principal
                .as_ref()
                .is_none_or(|p| e.principal.as_ref() == Some(p))
            && self
                .secret_id
                .as_ref()
                .is_none_or(|s| e.secret_id.as_ref() == Some(s))
            && self.action.as_ref().is_none_or(|a| &e.action == a)
            && self.request_id.as_ref().is_none_or(|r| &e.request_id == r)
            && self.result.as_ref().is_none_or(|r| &e.result == r)
            && self.source_ip.as_ref().is_none_or(|ip| {
                e.source
                    .as_deref()
                    .and_then(|s| s.parse::<std::net::SocketAddr>().ok())
                    .is_some_and(|a| a.ip().to_string() == *ip)
            })
    }
}

/// The order of [`query`]'s results (by seq).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// At most `limit` (capped at [`MAX_QUERY_LIMIT`]) records matching `filter`, in `order`. Cost:
/// a scan of the files, newest segment first for [`Order::NewestFirst`] (it stops at the segment
/// that completes the limit), oldest first otherwise; memory is bounded by the limit.
pub fn query(
    dir: impl AsRef<Path>,
    filter: &Filter,
    order: Order,
    limit: usize,
) -> Result<Vec<StoredRecord>, AuditError> {
    select(dir.as_ref(), filter, order, limit.min(MAX_QUERY_LIMIT))
}

/// The last `n` records, oldest first.
pub fn tail(dir: impl AsRef<Path>, n: usize) -> Result<Vec<StoredRecord>, AuditError> {
    let mut out = select(dir.as_ref(), &Filter::default(), Order::NewestFirst, n)?;
    out.reverse();
    Ok(out)
}

/// Writes every record matching `filter`, oldest first, as JSON lines (the stored lines: an
/// export can be verified like the trail); returns how many.
pub fn export(
    dir: impl AsRef<Path>,
    filter: &Filter,
    mut out: impl Write,
) -> Result<u64, AuditError> {
    let mut n = 0;
    for rec in Reader::open(dir)? {
        let rec = rec?;
        if filter.matches(&rec.event) {
            out.write_all(&rec.to_line()?)
                .map_err(|e| AuditError::io("write the export to", "its output", e))?;
            n += 1;
        }
    }
    out.flush()
        .map_err(|e| AuditError::io("write the export to", "its output", e))?;
    Ok(n)
}

fn select(
    dir: &Path,
    filter: &Filter,
    order: Order,
    limit: usize,
) -> Result<Vec<StoredRecord>, AuditError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    match order {
        Order::OldestFirst => {
            for rec in Reader::open(dir)? {
                let rec = rec?;
                if filter.matches(&rec.event) {
                    out.push(rec);
                    if out.len() == limit {
                        break;
                    }
                }
            }
        }
        Order::NewestFirst => {
            let segments = list_segments(dir)?;
            let count = segments.len();
            for (i, seg) in segments.into_iter().enumerate().rev() {
                let need = limit - out.len();
                let mut newest = VecDeque::new();
                for rec in Reader::over(vec![seg], i + 1 == count) {
                    let rec = rec?;
                    if filter.matches(&rec.event) {
                        if newest.len() == need {
                            newest.pop_front();
                        }
                        newest.push_back(rec);
                    }
                }
                out.extend(newest.into_iter().rev());
                if out.len() == limit {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// The newest `at_ms` in a (complete) segment, `None` if it holds no record.
pub(super) fn newest_at_ms(seg: &Segment) -> Result<Option<u64>, AuditError> {
    let mut newest = None;
    for rec in Reader::over(vec![seg.clone()], false) {
        let at = rec?.event.at_ms;
        newest = Some(newest.map_or(at, |n: u64| n.max(at)));
    }
    Ok(newest)
}
