//! Logging: tracing-subscriber with an `EnvFilter` (`RUST_LOG`, default `info`), plain or JSON lines,
//! collected in memory and written to stderr in batches by a background thread, so that no review
//! waits on a write (or wakes a thread) to log.

use std::fmt;
use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::Level;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;
use crate::json_text::ascii_run;

mod clock;

use clock::CachedClock;

/// How often the writer thread writes out what was logged (at most this late in the log).
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Past this many buffered bytes the writer thread is woken at once; past [`MAX_BUFFERED`] the
/// logging thread writes the batch itself (a stuck stderr then slows logging down, as a direct write
/// would, instead of growing memory).
const WAKE_AT: usize = 64 * 1024;
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

/// Installs the global subscriber. Called once, by `serve`; keep the guard until the end: dropping
/// it writes out what is buffered.
pub fn init(format: LogFormat) -> LogWriterGuard {
    let filter = filter(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref());
    // Colours only on a terminal: escape codes in container logs are noise (and cost per line).
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = BatchWriter::spawn(std::io::stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    // A second init (tests) fails harmlessly: the first subscriber stays.
    let _ = match format {
        // The fields as `name=value`, strings quoted, control characters escaped (a request
        // cannot break a line or colour a terminal), without the default formatter's per-field
        // styling machinery, which costs even with colours off. The lines' timestamps are
        // `CachedClock`'s in both formats.
        LogFormat::Plain => builder
            .fmt_fields(PlainFields)
            .event_format(PlainLines::new(CachedClock))
            .try_init(),
        LogFormat::Json => builder
            .with_timer(CachedClock)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    guard
}

/// The filter for `RUST_LOG`'s value: `info` when it is unset, empty (`RUST_LOG=` in a manifest) or
/// not a valid filter, so that a typo never leaves the webhook silent; otherwise exactly its directives.
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let builder = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into());
    rust_log
        .and_then(|value| builder.clone().parse(value).ok())
        .unwrap_or_else(|| builder.parse_lossy(""))
}

/// Where log lines go: an in-memory batch that a background thread writes out every
/// `FLUSH_EVERY` (50 ms). The fmt layer formats a whole line and then writes it once, so lines never
/// interleave.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

struct Shared {
    batch: Mutex<Vec<u8>>,
    wake: Condvar,
    stopping: AtomicBool,
    out: Mutex<Box<dyn Write + Send>>,
}

/// Stops the writer thread and writes out the last batch when dropped.
pub struct LogWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchWriter {
    /// A writer into `out` (stderr in production, a buffer in tests) and the guard of its thread.
    pub fn spawn<W: Write + Send + 'static>(out: impl FnOnce() -> W) -> (Self, LogWriterGuard) {
        let shared = Arc::new(Shared {
            batch: Mutex::new(Vec::with_capacity(WAKE_AT)),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            out: Mutex::new(Box::new(out())),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || shared.run())
                .ok()
        };
        let guard = LogWriterGuard {
            shared: Arc::clone(&shared),
            thread,
        };
        (Self { shared }, guard)
    }
}

impl Shared {
    fn run(&self) {
        let mut spare = Vec::with_capacity(WAKE_AT);
        loop {
            let batch = lock(&self.batch);
            let (batch, _) = self
                .wake
                .wait_timeout(batch, FLUSH_EVERY)
                .unwrap_or_else(PoisonError::into_inner);
            let stopping = self.stopping.load(Ordering::Acquire);
            self.write_out(batch, &mut spare);
            if stopping {
                return;
            }
        }
    }

    /// Takes the batch (leaving `spare`'s allocation in its place) and writes it. The output is
    /// locked before the batch is let go, so batches are written in the order they were taken.
    fn write_out(&self, mut batch: MutexGuard<'_, Vec<u8>>, spare: &mut Vec<u8>) {
        if batch.is_empty() {
            return;
        }
        std::mem::swap(&mut *batch, spare);
        let mut out = lock(&self.out);
        drop(batch);
        // Nowhere to report a failed write to stderr; the lines are dropped, as eprintln! would.
        let _ = out.write_all(spare).and_then(|()| out.flush());
        spare.clear();
    }
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Lines logged after the thread's last batch (or without a thread at all).
        self.shared
            .write_out(lock(&self.shared.batch), &mut Vec::new());
    }
}

/// One line's writer: appends to the batch.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut batch = lock(&self.shared.batch);
        batch.extend_from_slice(line);
        if batch.len() >= MAX_BUFFERED {
            // The writer thread is not keeping up: write this batch here (logging slows down,
            // memory stays bounded).
            self.shared.write_out(batch, &mut Vec::new());
        } else if batch.len() >= WAKE_AT {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

/// The plain format's lines: what tracing-subscriber's default (`Full`) format writes, the usual
/// line (no colours, no span around the event, not from the `log` crate) written piece by piece:
/// `Full` spends three `write!`s on the level and the target, a fifth of a review's log line.
/// Every other line is `Full`'s own.
struct PlainLines<T> {
    timer: T,
    full: Format<Full, T>,
}

impl<T: FormatTime + Clone> PlainLines<T> {
    fn new(timer: T) -> Self {
        let full = tracing_subscriber::fmt::format().with_timer(timer.clone());
        Self { timer, full }
    }
}

impl<S, N, T> FormatEvent<S, N> for PlainLines<T>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // `log` records carry their real target and level in `log.*` fields, which `Full` reads.
        let from_log = meta.fields().field("log.target").is_some();
        if writer.has_ansi_escapes() || from_log || ctx.event_scope().is_some() {
            return self.full.format_event(ctx, writer, event);
        }
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str(match *meta.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_str("\n")
    }
}

/// The plain format's fields: `message name="string" name=value ...`.
struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

/// A field's value, as the plain format writes it.
enum PlainValue<'a> {
    /// A string known to need no escape: written in quotes as it is.
    Quoted(&'a str),
    Bool(bool),
    /// Anything else, through `Debug` with control characters escaped.
    Debug(&'a dyn fmt::Debug),
}

impl PlainVisitor<'_> {
    /// Writes ` name=value` (just the value for the message), piece by piece: a `write!` per field
    /// went through `core::fmt`'s argument machinery twice, a fifth of a review's log line.
    fn write(&mut self, field: &Field, value: PlainValue<'_>) {
        if self.result.is_ok() {
            let first = std::mem::take(&mut self.first);
            self.result = write_field(&mut self.writer, first, field.name(), value);
        }
    }
}

/// The single characters go through `write_char`, a push, rather than `write_str`, a copy.
fn write_field(w: &mut Writer<'_>, first: bool, name: &str, value: PlainValue<'_>) -> fmt::Result {
    if !first {
        w.write_char(' ')?;
    }
    if name != "message" {
        w.write_str(name)?;
        w.write_char('=')?;
    }
    match value {
        PlainValue::Quoted(text) => {
            w.write_char('"')?;
            w.write_str(text)?;
            w.write_char('"')
        }
        PlainValue::Bool(yes) => w.write_str(if yes { "true" } else { "false" }),
        PlainValue::Debug(value) => {
            fmt::Write::write_fmt(&mut NoControl(w), format_args!("{value:?}"))
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Most strings (uids, names) are plain ASCII: quoted as they are, without Debug's per-char
        // work. `ascii_run` stops at quotes, backslashes, C0 controls and anything outside ASCII;
        // DEL is a control too.
        let bytes = value.as_bytes();
        if ascii_run(bytes, 0) == bytes.len() && !bytes.contains(&0x7f) {
            self.write(field, PlainValue::Quoted(value));
        } else {
            self.write(field, PlainValue::Debug(&value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.write(field, PlainValue::Bool(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, PlainValue::Debug(value));
    }
}

/// Writes through, with control characters (newline, ESC ...) written as escapes.
struct NoControl<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for NoControl<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| c.is_control()) {
            self.0.write_str(&rest[..at])?;
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// A poisoned lock only means another thread panicked while logging; the bytes are still bytes.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// A `Write` into a shared buffer, to see what reached "stderr".
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn written(sink: &Sink) -> String {
        String::from_utf8(lock(&sink.0).clone()).unwrap()
    }

    #[test]
    fn rust_log_unset_empty_or_invalid_means_info() {
        for value in [None, Some(""), Some("  "), Some("info,=[bad")] {
            assert_eq!(filter(value).to_string(), "info", "RUST_LOG={value:?}");
        }
        assert_eq!(filter(Some("warn")).to_string(), "warn");
        let quiet = filter(Some("info,dualstack_webhook::server::routes=warn")).to_string();
        assert!(
            quiet.contains("dualstack_webhook::server::routes=warn") && quiet.contains("info"),
            "{quiet}"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        write!(NoControl(&mut out), "a\nb\u{1b}[31mc\u{7f}d é").unwrap();
        assert_eq!(out, "a\\nb\\u{1b}[31mc\\u{7f}d é");
    }

    /// What the plain format writes for the events `log` emits (no time, no target).
    fn plain_lines(log: impl Fn()) -> String {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_target(false);
        lines_of(format, log)
    }

    /// A clock that always says the same thing.
    #[derive(Clone)]
    struct Noon;

    impl FormatTime for Noon {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-11-27T12:00:00.000000Z")
        }
    }

    /// What `format` writes for the events `log` emits, with the plain fields and a fixed time.
    fn lines_of<F>(format: F, log: impl Fn()) -> String
    where
        F: for<'a> FormatEvent<tracing_subscriber::Registry, PlainFields> + Send + Sync + 'static,
    {
        use tracing_subscriber::layer::SubscriberExt as _;

        let sink = Sink::default();
        let (writer, guard) = BatchWriter::spawn({
            let sink = sink.clone();
            move || sink
        });
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .fmt_fields(PlainFields)
                .event_format(format)
                .with_writer(writer),
        );
        tracing::subscriber::with_default(subscriber, log);
        drop(guard);
        written(&sink)
    }

    /// The plain lines are the default format's, byte for byte: at every level, inside a span
    /// (which the default format writes itself) and outside.
    #[test]
    fn plain_lines_are_the_default_formats() {
        let log = || {
            tracing::info!(uid = "u-1", dry_run = false, "patched");
            tracing::warn!(status = 400, "not an AdmissionReview");
            tracing::error!("stopped");
            tracing::debug!(endpoint = ?Some("mutate"), "allowed");
            tracing::trace!("nothing");
            let span = tracing::info_span!("conn", client.addr = "127.0.0.1:1");
            span.in_scope(|| tracing::info!(h2 = true, "tls handshake complete"));
        };
        let ours = lines_of(PlainLines::new(Noon), log);
        assert_eq!(
            ours,
            lines_of(tracing_subscriber::fmt::format().with_timer(Noon), log)
        );
        assert!(
            ours.starts_with("2026-11-27T12:00:00.000000Z  INFO dualstack_webhook::telemetry::tests: patched uid=\"u-1\" dry_run=false\n"),
            "{ours}"
        );
        assert!(
            ours.contains(" conn{client.addr=\"127.0.0.1:1\"}: "),
            "{ours}"
        );
        assert_eq!(ours.lines().count(), 6, "{ours}");
    }

    /// What a plain line says, with a request's hostile strings in it.
    #[test]
    fn plain_fields_quote_strings_and_escape_control_characters() {
        let line = plain_lines(|| {
            let (uid, name) = ("a-1", "we\u{1b}[31mb\nINFO forged");
            let reason = "line\nbreak";
            tracing::info!(uid, name, dry_run = true, %reason, "denied");
        });
        assert_eq!(
            line,
            " INFO denied uid=\"a-1\" name=\"we\\u{1b}[31mb\\nINFO forged\" dry_run=true reason=line\\nbreak\n"
        );
    }

    /// DEL is ASCII but a control character: escaped like the others, not written raw.
    #[test]
    fn plain_fields_escape_delete_too() {
        let line = plain_lines(|| {
            let name = "we\u{7f}b";
            tracing::info!(name, "denied");
        });
        assert_eq!(line, " INFO denied name=\"we\\u{7f}b\"\n");
    }

    #[test]
    fn lines_reach_the_output_within_the_flush_interval() {
        let sink = Sink::default();
        let (writer, _guard) = BatchWriter::spawn({
            let sink = sink.clone();
            move || sink
        });
        writer.make_writer().write_all(b"one\n").unwrap();
        writer.make_writer().write_all(b"two\n").unwrap();
        let deadline = std::time::Instant::now() + FLUSH_EVERY * 40;
        while written(&sink) != "one\ntwo\n" {
            assert!(
                std::time::Instant::now() < deadline,
                "not written: {:?}",
                written(&sink)
            );
            std::thread::sleep(FLUSH_EVERY / 5);
        }
    }

    #[test]
    fn dropping_the_guard_writes_out_every_line_in_order() {
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::spawn({
            let sink = sink.clone();
            move || sink
        });
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        let line = format!("{t} {i}\n");
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let out = written(&sink);
        assert_eq!(out.lines().count(), 20_000, "a line was lost");
        for t in 0..4 {
            let mine: Vec<usize> = out
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(
                mine,
                (0..5000).collect::<Vec<_>>(),
                "thread {t}'s lines out of order"
            );
        }
    }
}
