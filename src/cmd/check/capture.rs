//! The warnings the loading code logs (a deprecated setting, an unused age identity, a key
//! set not fetched offline), caught as they are emitted so `moat check` can report them with
//! its own findings — in JSON too, where a log line on stdout would break the document.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One warning as logged: its message and its other fields (`file`, `url`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logged {
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl Logged {
    /// The value of field `name`, if the warning has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    /// The message with its fields but `file` (reported apart), as one line.
    pub fn text(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .filter(|(name, _)| name != "file")
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        match fields.is_empty() {
            true => self.message.clone(),
            false => format!("{} ({})", self.message, fields.join(", ")),
        }
    }
}

/// Where the warnings logged while a subscriber from [`Caught::subscriber`] is the
/// default end up.
#[derive(Clone, Default)]
pub struct Caught(Arc<Mutex<Vec<Logged>>>);

impl Caught {
    /// A subscriber that keeps every warning and error event, and drops the rest.
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync + 'static {
        tracing_subscriber::registry().with(Catcher(self.clone()))
    }

    /// The warnings caught so far, in order; the store is emptied.
    pub fn take(&self) -> Vec<Logged> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

struct Catcher(Caught);

impl<S: Subscriber> Layer<S> for Catcher {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        // Levels order by verbosity: WARN and ERROR are the ones at or below WARN.
        if *event.metadata().level() > Level::WARN {
            return;
        }
        let mut logged = Logged::default();
        event.record(&mut logged);
        let caught = &self.0.0;
        caught
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(logged);
    }
}

impl Visit for Logged {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Logged {
    fn record(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            name => self.fields.push((name.to_owned(), value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_kept_with_their_fields_and_the_rest_dropped() {
        let caught = Caught::default();
        tracing::subscriber::with_default(caught.subscriber(), || {
            tracing::info!("not kept");
            tracing::warn!(file = "keys.yaml", mode = "644", "readable");
        });
        let logged = caught.take();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0].message, "readable");
        assert_eq!(logged[0].field("file"), Some("keys.yaml"));
        assert_eq!(logged[0].text(), "readable (mode: 644)");
        assert!(caught.take().is_empty());
    }
}
