//! The registry `/metrics` renders, built once at wiring time: every stage's series
//! ([`IngestMetrics`], [`StoreMetrics`], [`DeliveryMetrics`], [`SinkMetrics`]) and the API's own.
//! Each stage receives only its own handle; this bundle is what the API reads for `/metrics` and
//! `/healthz`.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use taza_alert::deliver::DeliveryMetrics;
use taza_ingest::metrics::IngestMetrics;
use taza_sink::SinkMetrics;
use taza_store::metrics::StoreMetrics;

/// Every metric the gateway exports. Cheap to clone (all handles are `Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Ingest and the embedded broker's guard.
    pub ingest: IngestMetrics,
    /// The store writer.
    pub store: StoreMetrics,
    /// Alert delivery.
    pub delivery: DeliveryMetrics,
    /// The InfluxDB sink.
    pub sink: SinkMetrics,
    sse_lagged: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every series under the `taza_` prefix.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("taza");
        let ingest = IngestMetrics::default();
        let store = StoreMetrics::default();
        let delivery = DeliveryMetrics::new();
        let sink = SinkMetrics::new();
        let sse_lagged = Counter::default();
        ingest.register(&mut r);
        store.register(&mut r);
        r.register(
            "api_live_lagged",
            "Live-feed events dropped for slow SSE clients",
            sse_lagged.clone(),
        );
        delivery.register(&mut r);
        sink.register(&mut r);
        Self {
            registry: Arc::new(r),
            ingest,
            store,
            delivery,
            sink,
            sse_lagged,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Alert delivery counters.
    pub fn delivery(&self) -> &DeliveryMetrics {
        &self.delivery
    }

    /// InfluxDB sink health.
    pub fn sink(&self) -> &SinkMetrics {
        &self.sink
    }

    /// Whether the ingest client is connected.
    pub fn mqtt_connected(&self) -> bool {
        self.ingest.mqtt_connected()
    }
}

/// An SSE client lagged and missed events.
pub struct LiveLagged {
    /// Events it missed.
    pub missed: u64,
}

impl LiveLagged {
    /// Count it.
    pub fn emit(self, m: &Metrics) {
        m.sse_lagged.inc_by(self.missed);
    }
}
