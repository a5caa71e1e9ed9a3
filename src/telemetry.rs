//! Logging: tracing-subscriber's fmt layer, plain or JSON, filtered by RUST_LOG.

use std::io::IsTerminal as _;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// Installs the global subscriber (and the `log` bridge), writing to stderr through
/// tracing-appender's background writer: a review's log line written to stderr on the request's
/// task added ~50 µs to the p50 of a review at 1000 a second (`bench/README.md`). Lines still queued
/// are written when the returned guard is dropped; under a flood past its queue, lines are dropped
/// rather than reviews held up. A second call (tests that serve twice) installs nothing.
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = filter(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref());
    // Colours only on a terminal: escape codes in container logs are noise.
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let _ = subscriber(format, filter, ansi, writer).try_init();
    guard
}

/// The subscriber `init` installs, writing to `writer`.
fn subscriber(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: impl for<'a> MakeWriter<'a> + Send + Sync + 'static,
) -> Box<dyn Subscriber + Send + Sync> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Plain => Box::new(builder.finish()),
        // Fields at the top level of each object, as the JSON lines have always had them.
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

/// The filter for `RUST_LOG`'s value: `info` when it is unset, empty (`RUST_LOG=` in a manifest) or
/// not a valid filter, so that a typo never leaves the webhook silent; otherwise exactly its directives.
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let builder = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into());
    rust_log
        .and_then(|value| builder.clone().parse(value).ok())
        .unwrap_or_else(|| builder.parse_lossy(""))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

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

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(bytes)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `init`'s subscriber writes for a decision with a hostile name and a (filtered) debug.
    fn written(format: LogFormat) -> String {
        let out = Buffer::default();
        let writer = out.clone();
        let subscriber = subscriber(format, filter(None), false, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let (uid, name) = ("u-1", "web\nINFO forged");
            tracing::info!(uid, name, dry_run = false, "patched");
            tracing::debug!(uid, "allowed");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn plain_and_json_lines_carry_the_message_and_fields() {
        let target = "dualstack_webhook::telemetry::tests";
        let plain = written(LogFormat::Plain);
        let (_timestamp, line) = plain.split_once(' ').unwrap();
        let fields = r#"uid="u-1" name="web\nINFO forged" dry_run=false"#;
        assert_eq!(line, format!(" INFO {target}: patched {fields}\n"));
        // One line (a raw newline in a string would not parse), fields at the top level.
        let mut json: serde_json::Value = serde_json::from_str(&written(LogFormat::Json)).unwrap();
        let timestamp = json.as_object_mut().unwrap().remove("timestamp");
        assert!(timestamp.is_some_and(|t| t.is_string()), "{json}");
        let want = serde_json::json!({"level": "INFO", "target": target, "message": "patched",
            "uid": "u-1", "name": "web\nINFO forged", "dry_run": false});
        assert_eq!(json, want);
    }
}
