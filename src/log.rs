//! Structured logs: one JSON object per line. Never message bodies, never tokens.
//!
//! `LOG_LEVEL` (`info`, the default, `warn` or `error`) sets the least severe line written: at
//! `warn` a busy deployment drops every info line (among them one per stored event and one per
//! request) and most of the work of building them. The private deployment's metrics are
//! counted from info lines, so they need `info`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use serde_json::{Map, Value};

/// The least severe level written, as `Level as u8`. Set from the environment by every entry
/// point (`configure`); the runtime runs one thread per isolate.
static LEAST: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Whether `configure` has read the environment in this isolate.
static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// Reads `LOG_LEVEL` from the environment, once per isolate (its variables do not change).
pub fn configure(env: &worker::Env) {
    if CONFIGURED.swap(true, Ordering::Relaxed) {
        return;
    }
    let value = env.var("LOG_LEVEL").ok().map(|v| v.to_string());
    LEAST.store(least_level(value.as_deref()) as u8, Ordering::Relaxed);
}

/// Whether info lines are written: callers that gather a line's fields at some cost ask first.
pub fn info_written() -> bool {
    Level::Info.written()
}

/// The level a `LOG_LEVEL` value names; absent or unknown is `info`, so nothing is lost by a
/// typo.
fn least_level(value: Option<&str>) -> Level {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("warn" | "warning") => Level::Warn,
        Some("error") => Level::Error,
        _ => Level::Info,
    }
}

pub struct Log {
    fields: Map<String, Value>,
    level: Level,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn written(self) -> bool {
        self as u8 >= LEAST.load(Ordering::Relaxed)
    }
}

impl Log {
    fn new(level: Level, event: &str) -> Log {
        let mut fields = Map::new();
        if !level.written() {
            return Log { fields, level };
        }
        fields.insert("event".into(), event.into());
        let level_name = match level {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        fields.insert("level".into(), level_name.into());
        Log { fields, level }
    }

    /// Whether this line will be written (its level is not below `LOG_LEVEL`).
    pub fn written(&self) -> bool {
        self.level.written()
    }

    pub fn info(event: &str) -> Log {
        Log::new(Level::Info, event)
    }

    pub fn warn(event: &str) -> Log {
        Log::new(Level::Warn, event)
    }

    pub fn error(event: &str) -> Log {
        Log::new(Level::Error, event)
    }

    pub fn site(self, site: &str) -> Log {
        self.field("site", site)
    }

    pub fn conversation(self, id: &str) -> Log {
        self.field("conversation", id)
    }

    pub fn seq(self, seq: u64) -> Log {
        self.field("seq", seq)
    }

    pub fn trace(self, trace: &str) -> Log {
        self.field("trace", trace)
    }

    /// The class of an error: a stable code or a short internal category.
    pub fn error_class(self, class: &str) -> Log {
        self.field("error_class", class)
    }

    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Log {
        if self.level.written() {
            self.fields.insert(key.into(), value.into());
        }
        self
    }

    pub fn emit(self) {
        if !self.level.written() {
            return;
        }
        let line = Value::Object(self.fields).to_string();
        match self.level {
            Level::Info => worker::console_log!("{line}"),
            Level::Warn => worker::console_warn!("{line}"),
            Level::Error => worker::console_error!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_names() {
        assert_eq!(least_level(None), Level::Info);
        assert_eq!(least_level(Some("WARN")), Level::Warn);
        assert_eq!(least_level(Some(" warning ")), Level::Warn);
        assert_eq!(least_level(Some("error")), Level::Error);
        // A typo keeps everything rather than silencing the logs.
        assert_eq!(least_level(Some("eror")), Level::Info);
        assert_eq!(least_level(Some("debug")), Level::Info);
    }
}
