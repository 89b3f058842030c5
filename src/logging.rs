//! runc-compatible logging: `--log FILE`, `--log-format text|json`, `--debug`.
//!
//! containerd's shim shows a failed create's cause from the last JSON `msg`
//! in the `--log` file, so every failure ends with one
//! `{"level":"error","msg":...,"time":...}` line there. Nothing is installed
//! when neither `--log` nor `--debug` is given: the common path stays free of
//! logging setup.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Where log lines go; shared by the tracing layer and the final error line.
pub struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
    format: Format,
}

impl Sink {
    fn line(&self, level: &str, msg: &str) {
        let time = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
        let line = match self.format {
            // serde_json's map is sorted: level, msg, time, as runc writes them.
            Format::Json => {
                serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
            }
            Format::Text => format!("time={time:?} level={level} msg={msg:?}"),
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Writes the error that ends this invocation.
    pub fn error(&self, msg: &str) {
        self.line("error", msg);
    }
}

/// Installs the global subscriber if there is anywhere to log to.
pub fn init(file: Option<&Path>, format: Format, debug: bool) -> Result<Option<Arc<Sink>>> {
    let out: Box<dyn Write + Send> = match file {
        Some(path) => Box::new(open_log(path)?),
        None if debug => Box::new(std::io::stderr()),
        None => return Ok(None),
    };
    let sink = Arc::new(Sink {
        out: Mutex::new(out),
        format,
    });
    let filter = if debug {
        Targets::new().with_default(LevelFilter::DEBUG)
    } else {
        // libcgroups warns, on every start, of each v1 controller the host
        // does not mount (hugetlb, perf_event, net_cls, net_prio here): a
        // fact of the host, not of the container, which only --debug shows.
        Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("libcgroups::v1::manager", LevelFilter::ERROR)
    };
    let layer = SinkLayer(Arc::clone(&sink)).with_filter(filter);
    // Ignore a second init (tests call into the library more than once).
    let _ = tracing::subscriber::set_global_default(Registry::default().with(layer));
    Ok(Some(sink))
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open log file {}", path.display()), e))
}

struct SinkLayer(Arc<Sink>);

impl<S: Subscriber> Layer<S> for SinkLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        self.0.line(level, &visitor.msg);
    }
}

#[derive(Default)]
struct MessageVisitor {
    msg: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let fields = std::mem::take(&mut self.msg);
            let _ = write!(self.msg, "{value:?}{fields}");
        } else {
            let _ = write!(self.msg, " {}={value:?}", field.name());
        }
    }
}
