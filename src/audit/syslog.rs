//! A copy of every written line to syslog: one RFC 5424 message per record over a Unix datagram
//! socket (`/dev/log`), facility authpriv, severity info. Best-effort: the socket is
//! non-blocking, a failed send is counted and dropped.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Facility authpriv (10), severity info (6): PRI = 10 × 8 + 6.
const PRI: u8 = 86;

pub(super) struct Syslog {
    socket: UnixDatagram,
    target: PathBuf,
    /// `" <hostname> raftkms <pid> audit - "`: everything after the timestamp.
    header_tail: String,
    msg: Vec<u8>,
    /// The last send failed (a warning is logged when sends start failing, not for each).
    failing: bool,
}

impl Syslog {
    pub fn new(target: &Path) -> io::Result<Syslog> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Syslog {
            socket,
            target: target.to_path_buf(),
            header_tail: format!(" {} raftkms {} audit - ", hostname(), std::process::id()),
            msg: Vec::with_capacity(1024),
            failing: false,
        })
    }

    /// Sends every line of `batch` (newline-terminated records) as its own message.
    pub fn send_lines(&mut self, batch: &[u8], now_ms: u64, sent: &AtomicU64, failed: &AtomicU64) {
        let mut header = format!("<{PRI}>1 ");
        push_timestamp(&mut header, now_ms);
        header.push_str(&self.header_tail);
        for line in batch.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.msg.clear();
            self.msg.extend_from_slice(header.as_bytes());
            self.msg.extend_from_slice(line);
            match self.socket.send_to(&self.msg, &self.target) {
                Ok(_) => {
                    sent.fetch_add(1, Ordering::Relaxed);
                    self.failing = false;
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if !self.failing {
                        tracing::warn!(
                            socket = %self.target.display(),
                            error = %e,
                            "audit trail: cannot forward records to syslog (counted, not retried)"
                        );
                        self.failing = true;
                    }
                }
            }
        }
    }
}

/// The host name for the HOSTNAME field (printable ASCII, at most 255 bytes), or `-`.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| (33..=126).contains(&b)) {
        "-".to_string()
    } else {
        name.to_string()
    }
}

/// Appends `ms` (milliseconds since the Unix epoch) as an RFC 3339 UTC timestamp,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(super) fn push_timestamp(out: &mut String, ms: u64) {
    let secs = ms / 1000;
    let (y, mo, d) = civil_date(secs / 86_400);
    let s = secs % 86_400;
    out.push_str(&format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    ));
}

/// The proleptic Gregorian date `days` after 1970-01-01: shift to a calendar whose years start
/// on March 1 (so the leap day ends a year), count 400-year eras of 146 097 days, then the
/// year of the era, the day of that year, and the month from it (March-based months have the
/// lengths 31 30 31 30 31 | 31 30 31 30 31 | 31 28/29, i.e. 153 days per five months).
fn civil_date(days: u64) -> (u64, u64, u64) {
    // 1970-01-01 is day 719 468 after 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: u64) -> String {
        let mut s = String::new();
        push_timestamp(&mut s, ms);
        s
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @1700000000`: Tue Nov 14 22:13:20 UTC 2023.
        assert_eq!(ts(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        // Leap days: 2000 is a leap year (divisible by 400), 2100 is not.
        assert_eq!(ts(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(ts(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(ts(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(ts(1_709_251_199_000), "2024-02-29T23:59:59.000Z");
        assert_eq!(ts(253_402_300_799_000), "9999-12-31T23:59:59.000Z");
    }
}
