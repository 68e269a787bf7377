//! The log subscriber: the library emits `tracing` events as things happen; this module,
//! and only it, turns them into lines on stderr, in go-kit's logfmt (`ts=… level=… msg=…
//! key=value`, as Thanos logs) or as one JSON object per line.
//!
//! Owns: the `--log.level` and `--log.format` flags and the line format. Fields of the
//! spans an event happens in (e.g. `group` of a compaction) are written after the
//! event's own fields, outermost span first. Each line is written with one `write` call
//! under stderr's lock, so lines from different threads never interleave.
//! Must not: be used by the library (it only emits events) or buffer lines.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// `--log.format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// `--log.level`: events below it are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn max(self) -> Level {
        match self {
            LogLevel::Debug => Level::DEBUG,
            LogLevel::Info => Level::INFO,
            LogLevel::Warn => Level::WARN,
            LogLevel::Error => Level::ERROR,
        }
    }
}

/// The flags every command takes.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct LogFlags {
    /// Lowest level logged.
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    pub level: LogLevel,
    /// Line format of the log on stderr.
    #[arg(long = "log.format", value_enum, default_value = "logfmt", global = true)]
    pub format: LogFormat,
}

/// Installs the subscriber for the whole process.
///
/// strata's own events are logged from `--log.level` up. The libraries under it (the
/// object-store client, the HTTP stack) log only warnings and errors, unless the level
/// is `debug`: their routine chatter (each retried request, each connection) is not the
/// operator's business, and strata logs what it does about failures itself.
pub fn init(flags: LogFlags) {
    let max = flags.level.max();
    let layer = LineLayer { format: flags.format }.with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
        let level = if max == Level::DEBUG || meta.target().starts_with("strata") { max } else { Level::WARN.min(max) };
        *meta.level() <= level
    }));
    let subscriber = tracing_subscriber::registry().with(layer);
    // A second call (tests calling `main` twice) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

struct LineLayer {
    format: LogFormat,
}

/// Fields collected from an event or a span, in order.
#[derive(Default)]
struct Fields(Vec<(&'static str, FieldValue)>);

enum FieldValue {
    Str(String),
    Num(String),
    Bool(bool),
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name(), FieldValue::Str(format!("{value:?}"))));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), FieldValue::Str(value.to_string())));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name(), FieldValue::Num(value.to_string())));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), FieldValue::Num(value.to_string())));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name(), FieldValue::Num(value.to_string())));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name(), FieldValue::Bool(value)));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain, as anyhow's `{:#}` shows it.
        let mut s = value.to_string();
        let mut cur = value.source();
        while let Some(e) = cur {
            let _ = write!(s, ": {e}");
            cur = e.source();
        }
        self.0.push((field.name(), FieldValue::Str(s)));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for LineLayer {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut all: Vec<(&'static str, FieldValue)> = Vec::new();
        let mut msg = String::new();
        for (k, v) in fields.0 {
            match (k, v) {
                ("message", FieldValue::Str(s)) => msg = s,
                (k, v) => all.push((k, v)),
            }
        }
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    for (k, v) in &f.0 {
                        if !all.iter().any(|(have, _)| have == k) {
                            all.push((k, v.clone()));
                        }
                    }
                }
            }
        }
        let ts = strata::time::rfc3339_ms(strata::time::now_ms());
        let level = level_name(*event.metadata().level());
        let line = match self.format {
            LogFormat::Logfmt => logfmt_line(&ts, level, &msg, &all),
            LogFormat::Json => json_line(&ts, level, &msg, &all),
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

impl Clone for FieldValue {
    fn clone(&self) -> Self {
        match self {
            FieldValue::Str(s) => FieldValue::Str(s.clone()),
            FieldValue::Num(s) => FieldValue::Num(s.clone()),
            FieldValue::Bool(b) => FieldValue::Bool(*b),
        }
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::TRACE => "debug",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// go-kit's logfmt: values quoted when they hold a space, a quote, `=` or a control
/// character (or are empty).
fn logfmt_line(ts: &str, level: &str, msg: &str, fields: &[(&str, FieldValue)]) -> String {
    let mut s = format!("ts={ts} level={level}");
    let mut push = |k: &str, v: &str| {
        if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control()) {
            let _ = write!(s, " {k}={v:?}");
        } else {
            let _ = write!(s, " {k}={v}");
        }
    };
    push("msg", msg);
    for (k, v) in fields {
        match v {
            FieldValue::Str(x) | FieldValue::Num(x) => push(k, x),
            FieldValue::Bool(b) => push(k, if *b { "true" } else { "false" }),
        }
    }
    s.push('\n');
    s
}

fn json_line(ts: &str, level: &str, msg: &str, fields: &[(&str, FieldValue)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("ts".into(), ts.into());
    m.insert("level".into(), level.into());
    m.insert("msg".into(), msg.into());
    for (k, v) in fields {
        let v = match v {
            FieldValue::Str(x) => serde_json::Value::String(x.clone()),
            FieldValue::Num(x) => {
                serde_json::from_str::<serde_json::Number>(x).map(Into::into).unwrap_or(x.clone().into())
            }
            FieldValue::Bool(b) => (*b).into(),
        };
        m.insert((*k).to_string(), v);
    }
    let mut s = serde_json::Value::Object(m).to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_values_that_need_it_and_keeps_field_order() {
        let f = vec![
            ("group", FieldValue::Str("0@{a=\"1\"}".into())),
            ("bytes", FieldValue::Num("123".into())),
            ("empty", FieldValue::Str(String::new())),
            ("ok", FieldValue::Bool(true)),
        ];
        let line = logfmt_line("2026-01-01T00:00:00.000Z", "info", "compaction done", &f);
        assert_eq!(
            line,
            "ts=2026-01-01T00:00:00.000Z level=info msg=\"compaction done\" group=\"0@{a=\\\"1\\\"}\" bytes=123 empty=\"\" ok=true\n"
        );
    }

    #[test]
    fn json_keeps_numbers_as_numbers() {
        let f = vec![("bytes", FieldValue::Num("123".into())), ("took", FieldValue::Str("1.5s".into()))];
        let line = json_line("t", "warn", "m", &f);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["bytes"], 123);
        assert_eq!(v["took"], "1.5s");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "m");
    }
}
