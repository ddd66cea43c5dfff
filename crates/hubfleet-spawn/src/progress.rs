//! Progress a spawner reports while it starts a server ("pod scheduled", "pulling image
//! 40 %"). The hub shows each event between its own steps: in the progress stream (SSE), the
//! server's `phase_detail` and the spawn-pending page.

use tokio::sync::mpsc;

/// One step of a backend's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnProgress {
    /// What happened, for people: `Pulling image jupyter/scipy-notebook (40 %)`.
    pub message: String,
    /// How far the backend's own part of the start is, 0–100, when it knows.
    pub percent: Option<u8>,
}

impl SpawnProgress {
    pub fn new(message: impl Into<String>) -> Self {
        SpawnProgress {
            message: message.into(),
            percent: None,
        }
    }

    pub fn with_percent(mut self, percent: u8) -> Self {
        self.percent = Some(percent.min(100));
        self
    }
}

/// Where a spawner sends progress during [`crate::Spawner::start`]. Sending never blocks or
/// fails; events sent after `start` returned are dropped.
#[derive(Clone, Debug)]
pub struct ProgressSender(Option<mpsc::UnboundedSender<SpawnProgress>>);

impl ProgressSender {
    /// A sender and the hub's end.
    pub fn channel() -> (ProgressSender, mpsc::UnboundedReceiver<SpawnProgress>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ProgressSender(Some(tx)), rx)
    }

    /// A sender nobody listens to.
    pub fn discard() -> ProgressSender {
        ProgressSender(None)
    }

    pub fn send(&self, event: SpawnProgress) {
        if let Some(tx) = &self.0 {
            // The hub stopped listening (the start ended): nothing to tell.
            let _ = tx.send(event);
        }
    }
}
