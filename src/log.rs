//! Structured logs: one JSON object per line. Never message bodies, never tokens.

use serde_json::{Map, Value};

pub struct Log {
    fields: Map<String, Value>,
    level: Level,
}

#[derive(Clone, Copy)]
enum Level {
    Info,
    Warn,
    Error,
}

impl Log {
    fn new(level: Level, event: &str) -> Log {
        let mut fields = Map::new();
        fields.insert("event".into(), event.into());
        let level_name = match level {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        fields.insert("level".into(), level_name.into());
        Log { fields, level }
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

    pub fn seq(mut self, seq: u64) -> Log {
        self.fields.insert("seq".into(), seq.into());
        self
    }

    pub fn trace(self, trace: &str) -> Log {
        self.field("trace", trace)
    }

    /// The class of an error: a stable code or a short internal category.
    pub fn error_class(self, class: &str) -> Log {
        self.field("error_class", class)
    }

    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Log {
        self.fields.insert(key.into(), value.into());
        self
    }

    pub fn emit(self) {
        let line = Value::Object(self.fields).to_string();
        match self.level {
            Level::Info => worker::console_log!("{line}"),
            Level::Warn => worker::console_warn!("{line}"),
            Level::Error => worker::console_error!("{line}"),
        }
    }
}
