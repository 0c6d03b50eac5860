//! Segment files: names, listing, reading lines, and finding where a trail ends (recovery).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Take};
use std::path::{Path, PathBuf};

use super::record::{parse_line, LineError, StoredRecord, ZERO_HASH};
use super::{AuditError, Head, MAX_LINE_BYTES};

const PREFIX: &str = "seg-";
const SUFFIX: &str = ".jsonl";
const DIGITS: usize = 20;

/// One segment file of a trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Segment {
    /// The seq of its first record, from its name.
    pub first_seq: u64,
    pub path: PathBuf,
}

/// `seg-<first seq, 20 digits>.jsonl`
pub(super) fn segment_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:0DIGITS$}{SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments of the trail in `dir`, oldest first. Other files are ignored.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<Segment>, AuditError> {
    let entries = std::fs::read_dir(dir).map_err(|e| AuditError::io("list", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("list", dir, e))?;
        let name = entry.file_name();
        if let Some(first_seq) = name.to_str().and_then(parse_segment_name) {
            out.push(Segment {
                first_seq,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// One line of a segment.
pub(super) enum Line<'a> {
    /// A line ended by a newline (given without it).
    Complete {
        number: u64,
        bytes: &'a [u8],
    },
    /// The segment's last bytes, with no newline after them.
    Unterminated {
        number: u64,
    },
    End,
}

/// Reads a segment line by line, up to the length it had when it was opened (a writer may be
/// appending to it), with lines bounded by [`MAX_LINE_BYTES`].
pub(super) struct Lines {
    path: PathBuf,
    reader: BufReader<Take<File>>,
    buf: Vec<u8>,
    number: u64,
    /// Bytes of the complete lines read so far.
    complete_len: u64,
}

impl Lines {
    pub fn open(path: &Path) -> Result<Lines, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| AuditError::io("read the size of", path, e))?
            .len();
        Ok(Lines {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(64 << 10, file.take(len)),
            buf: Vec::new(),
            number: 0,
            complete_len: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The length of the complete lines read so far.
    pub fn complete_len(&self) -> u64 {
        self.complete_len
    }

    pub fn next_line(&mut self) -> Result<Line<'_>, AuditError> {
        self.buf.clear();
        loop {
            let chunk = self
                .reader
                .fill_buf()
                .map_err(|e| AuditError::io("read", &self.path, e))?;
            if chunk.is_empty() {
                break;
            }
            let (take, ended) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            self.buf.extend_from_slice(&chunk[..take]);
            self.reader.consume(take);
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(AuditError::Malformed {
                    file: self.path.clone(),
                    line: self.number + 1,
                    why: format!("a line longer than {MAX_LINE_BYTES} bytes"),
                });
            }
            if ended {
                self.number += 1;
                self.complete_len += self.buf.len() as u64;
                self.buf.pop();
                return Ok(Line::Complete {
                    number: self.number,
                    bytes: &self.buf,
                });
            }
        }
        if self.buf.is_empty() {
            Ok(Line::End)
        } else {
            Ok(Line::Unterminated {
                number: self.number + 1,
            })
        }
    }
}

/// Turns a line's parse error into the trail's error.
pub(super) fn line_error(e: LineError, file: &Path, line: u64) -> AuditError {
    match e {
        LineError::Version(found) => AuditError::Version { found },
        LineError::Malformed(why) => AuditError::Malformed {
            file: file.to_path_buf(),
            line,
            why,
        },
    }
}

/// Where a trail ends, found by [`recover`].
#[derive(Debug)]
pub(super) struct Recovered {
    /// The last record (seq 0 for an empty trail).
    pub head: Head,
    /// The last segment and its length after recovery, if there is one.
    pub current: Option<(Segment, u64)>,
}

/// Finds the end of the trail in `dir`, making it durable: the last segment is read whole (every
/// line must be a record of this node, numbered on from the segment's name) and a torn last line
/// (no newline, or unparsable: a crash in the middle of a write) is cut away. A last segment that
/// holds no record (a crash right after it was created) is kept if its name continues the
/// segment before it. Earlier segments are checked by [`super::verify`], not here.
pub(super) fn recover(dir: &Path, node_id: u64) -> Result<Recovered, AuditError> {
    let segments = list_segments(dir)?;
    let Some(last) = segments.last() else {
        return Ok(Recovered {
            head: Head {
                seq: 0,
                hash: ZERO_HASH,
            },
            current: None,
        });
    };
    if let Some((rec, len)) = recover_segment(last, node_id, true)? {
        return Ok(Recovered {
            head: Head {
                seq: rec.seq,
                hash: rec.hash,
            },
            current: Some((last.clone(), len)),
        });
    }
    // The last segment holds nothing: the chain ends in the one before it.
    let head = match segments.len().checked_sub(2).map(|i| &segments[i]) {
        None => Head {
            seq: 0,
            hash: ZERO_HASH,
        },
        Some(before) => match recover_segment(before, node_id, false)? {
            Some((rec, _)) => Head {
                seq: rec.seq,
                hash: rec.hash,
            },
            None => {
                return Err(AuditError::Malformed {
                    file: before.path.clone(),
                    line: 1,
                    why: "a segment before the last one holds no record".to_string(),
                })
            }
        },
    };
    if Some(last.first_seq) != head.seq.checked_add(1) {
        return Err(AuditError::Malformed {
            file: last.path.clone(),
            line: 1,
            why: format!(
                "the last segment is empty and named for seq {}, but the chain ends at seq {}",
                last.first_seq, head.seq
            ),
        });
    }
    Ok(Recovered {
        head,
        current: Some((last.clone(), 0)),
    })
}

/// Reads one segment to its end, cutting a torn last line away (if `may_cut`; otherwise a torn
/// line is an error) and syncing it; its last record and length, or `None` if it holds no
/// record.
fn recover_segment(
    seg: &Segment,
    node_id: u64,
    may_cut: bool,
) -> Result<Option<(StoredRecord, u64)>, AuditError> {
    let path = &seg.path;
    let mut lines = Lines::open(path)?;
    let mut last: Option<(StoredRecord, u64)> = None;
    // A complete but unparsable line is torn only if it is the last one.
    let mut pending_bad: Option<(u64, LineError)> = None;
    // Where a torn last line starts: its offset and line number.
    let mut torn_at: Option<(u64, u64)> = None;
    loop {
        let start = lines.complete_len();
        match lines.next_line()? {
            Line::End => break,
            Line::Unterminated { number } => {
                if let Some((n, e)) = pending_bad.take() {
                    return Err(line_error(e, path, n));
                }
                torn_at = Some((start, number));
                break;
            }
            Line::Complete { number, bytes } => {
                if let Some((n, e)) = pending_bad.take() {
                    return Err(line_error(e, path, n));
                }
                match parse_line(bytes) {
                    Err(LineError::Version(v)) => return Err(AuditError::Version { found: v }),
                    Err(e) => {
                        pending_bad = Some((number, e));
                        torn_at = Some((start, number));
                    }
                    Ok(rec) => {
                        let want = match &last {
                            None => Some(seg.first_seq),
                            Some((r, _)) => r.seq.checked_add(1),
                        };
                        if Some(rec.seq) != want {
                            let want = want.map_or("no record".to_string(), |s| format!("seq {s}"));
                            return Err(AuditError::Malformed {
                                file: path.clone(),
                                line: number,
                                why: format!("record seq {} where {want} belongs", rec.seq),
                            });
                        }
                        torn_at = None;
                        last = Some((rec, lines.complete_len()));
                    }
                }
            }
        }
    }
    let end = last.as_ref().map_or(0, |(_, len)| *len);
    if let (Some((_, line)), false) = (torn_at, may_cut) {
        return Err(AuditError::Malformed {
            file: path.clone(),
            line,
            why: "a torn line in a segment that is not the last one".to_string(),
        });
    }
    if let Some((at, _)) = torn_at {
        let total = std::fs::metadata(path)
            .map_err(|e| AuditError::io("read the size of", path, e))?
            .len();
        tracing::warn!(
            file = %path.display(),
            bytes = total.saturating_sub(at),
            "audit trail: cutting away a torn last line (a crash during a write)"
        );
        truncate(path, at)?;
    } else if last.is_some() {
        // What a crashed predecessor wrote may still be only in the page cache.
        sync_file(path)?;
    }
    if let Some((rec, _)) = &last {
        if rec.event.node_id != node_id {
            return Err(AuditError::Malformed {
                file: path.clone(),
                line: lines.number,
                why: format!(
                    "the last record is node {}'s, this is node {node_id}",
                    rec.event.node_id
                ),
            });
        }
    }
    Ok(last.map(|(rec, _)| (rec, end)))
}

/// Cuts `path` to `len` bytes and syncs it.
pub(super) fn truncate(path: &Path, len: u64) -> Result<(), AuditError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io("open", path, e))?;
    f.set_len(len)
        .map_err(|e| AuditError::io("truncate", path, e))?;
    f.sync_all().map_err(|e| AuditError::io("sync", path, e))
}

fn sync_file(path: &Path) -> Result<(), AuditError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io("open", path, e))?;
    f.sync_data().map_err(|e| AuditError::io("sync", path, e))
}
