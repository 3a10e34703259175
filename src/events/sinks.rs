//! The sinks configured under `events:` and their dispatchers.

use std::sync::Arc;

use futures_util::future::join_all;

use super::dispatch::{Dispatcher, EventMetrics};
use super::sink::Sink;
use crate::config::EventSettings;
use crate::store::Store;

/// Every sink beside the stream itself, with the metrics they share.
pub struct Sinks {
    sinks: Vec<Arc<dyn Sink>>,
    metrics: EventMetrics,
    /// This replica's name in the sinks' leases.
    holder: String,
    max_len: u64,
}

impl Sinks {
    /// Builds the sinks `settings` name; an error names the key to fix.
    pub fn build(settings: &EventSettings) -> Result<Self, String> {
        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
        for hook in super::webhooks::webhook_sinks(&settings.webhooks).map_err(|e| e.to_string())? {
            sinks.push(Arc::new(hook));
        }
        if let Some(kafka) = &settings.kafka {
            let sink = super::kafka::KafkaSink::new(kafka).map_err(|e| e.to_string())?;
            sinks.push(Arc::new(sink));
        }
        Ok(Self::new(sinks, settings.max_len))
    }

    pub fn new(sinks: Vec<Arc<dyn Sink>>, max_len: u64) -> Self {
        Self {
            sinks,
            metrics: EventMetrics::default(),
            holder: uuid::Uuid::new_v4().to_string(),
            max_len,
        }
    }

    pub fn metrics(&self) -> &EventMetrics {
        &self.metrics
    }

    /// Runs a dispatcher per sink until dropped.
    pub async fn run(&self, store: &Store) {
        join_all(self.sinks.iter().map(|sink| async {
            Dispatcher {
                store,
                sink: sink.clone(),
                metrics: &self.metrics,
                holder: &self.holder,
                max_len: self.max_len,
            }
            .run()
            .await;
        }))
        .await;
    }
}
