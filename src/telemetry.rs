//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`). A serving node tags
//! every line with its node id and region. Payloads and secrets are never passed to a log macro.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Prefixes every event with a fixed tag such as `node=1 region=ap-guangzhou`.
struct Tagged {
    tag: String,
    inner: Format,
}

impl<S, N> FormatEvent<S, N> for Tagged
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if !self.tag.is_empty() {
            write!(writer, "{} ", self.tag)?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// Installs the global subscriber; `tag` (may be empty) starts every line.
pub fn init(tag: String) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let ansi = std::io::stderr().is_terminal();
    let format = Tagged {
        tag,
        inner: Format::default().with_target(false).with_ansi(ansi),
    };
    let _ = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(filter)
        .event_format(format)
        .with_writer(std::io::stderr)
        .try_init();
}
