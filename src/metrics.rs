//! Prometheus metrics (`GET /metrics`, text format): requests by route and
//! status, latency histograms by route, authentication failures by reason,
//! store errors, Redis pool usage, open client connections, and what the
//! local cache (SPEC §10) does.
//!
//! One registry per [`crate::service::Gate`] (no globals), so in-process test
//! replicas count apart. Label sets are small fixed strings and numbers: the
//! hot path pays a read lock and a hash lookup, no allocation.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::verifier::Verifier;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::session::local_cache::{self, LocalCache};
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;
type GrpcLatencyFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    grpc_calls: Family<GrpcLabels, Counter>,
    grpc_latency: GrpcLatencyFamily,
    auth_failures: Family<ReasonLabels, Counter>,
    store_errors: Counter,
    pool_size: Gauge,
    pool_idle: Gauge,
    pool_waiting: Gauge,
    pool_max: Gauge,
    open_connections: Gauge,
    grpc_open_connections: Gauge,
    local_cache: Option<CacheGauges>,
}

/// The local cache's gauges, read from it when rendering (its counters are
/// registered as they are: the cache counts into them itself).
struct CacheGauges {
    source: local_cache::Gauges,
    entries: Gauge,
    up: Gauge,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s: the fast path lives in the first buckets, outages in the last.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Metrics {
    pub fn new(store: &Store, verifier: &Verifier, local: Option<&LocalCache>) -> Self {
        let mut registry = Registry::with_prefix("tokengate");
        registry.register(
            "secret_verifications",
            "argon2id verifications run (throttled or queued-out attempts run none)",
            verifier.runs().clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let grpc_calls = Family::<GrpcLabels, Counter>::default();
        let grpc_latency: GrpcLatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "grpc_calls",
            "gRPC calls answered, by method and status code",
            grpc_calls.clone(),
        );
        registry.register(
            "grpc_call_duration_seconds",
            "Time to answer a gRPC call, by method",
            grpc_latency.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "http_requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route",
            latency.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused tokens and client credentials, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "store_errors",
            "Requests that failed because the session store did not answer",
            store_errors.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now (at most server.max_connections)",
            Clone::clone(&open_connections),
        );
        let grpc_open_connections = Gauge::default();
        registry.register(
            "grpc_open_connections",
            "gRPC connections open now (at most grpc.max_connections)",
            Clone::clone(&grpc_open_connections),
        );
        let (pool_size, pool_idle, pool_waiting, pool_max) = Default::default();
        if matches!(store, Store::Redis(_)) {
            let pool = registry.sub_registry_with_prefix("redis_pool");
            pool.register(
                "connections",
                "Open Redis connections",
                Clone::clone(&pool_size),
            );
            pool.register(
                "idle",
                "Redis connections not in use",
                Clone::clone(&pool_idle),
            );
            pool.register(
                "waiting",
                "Requests waiting for a connection",
                Clone::clone(&pool_waiting),
            );
            pool.register(
                "max",
                "Most Redis connections allowed",
                Clone::clone(&pool_max),
            );
        }
        let local_cache = local.map(|cache| register_local_cache(&mut registry, cache));
        Self {
            registry,
            local_cache,
            requests,
            latency,
            grpc_calls,
            grpc_latency,
            auth_failures,
            store_errors,
            pool_size,
            pool_idle,
            pool_waiting,
            pool_max,
            open_connections,
            grpc_open_connections,
        }
    }

    /// `tokengate_api_token_*`: what validating API tokens cost (SPEC §11:
    /// database reads are bounded per address).
    pub fn register_api_tokens(&mut self, counts: &crate::api_tokens::Counts) {
        self.registry.register(
            "api_token_database_reads",
            "API-token cache misses answered by the database",
            counts.reads.clone(),
        );
        self.registry.register(
            "api_token_misses_refused",
            "API-token cache misses refused without a database read: \
             their address sent api_tokens.misses_per_address this minute",
            counts.refused.clone(),
        );
    }

    /// `tokengate_events_*{sink}` (SPEC §14).
    pub fn register_events(&mut self, events: &crate::events::dispatch::EventMetrics) {
        events.register(&mut self.registry);
    }

    /// The open-connections gauge, for the accept loop to keep up to date
    /// (once per connection, never per request).
    pub fn open_connections(&self) -> Gauge {
        Clone::clone(&self.open_connections)
    }

    /// The same for the gRPC listener.
    pub fn grpc_open_connections(&self) -> Gauge {
        Clone::clone(&self.grpc_open_connections)
    }

    pub fn observe(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }

    pub fn grpc_call(&self, method: &'static str, code: tonic::Code, seconds: f64) {
        self.grpc_calls
            .get_or_create(&GrpcLabels {
                method,
                code: grpc_code_name(code),
            })
            .inc();
        self.grpc_latency
            .get_or_create(&MethodLabels { method })
            .observe(seconds);
    }

    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// The text exposition, with pool gauges read now.
    pub fn render(&self, store: &Store) -> String {
        if let Store::Redis(redis) = store {
            let status = redis.pool_status();
            let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.pool_size.set(gauge(status.size));
            self.pool_idle.set(gauge(status.available));
            self.pool_waiting.set(gauge(status.waiting));
            self.pool_max.set(gauge(status.max_size));
        }
        if let Some(cache) = &self.local_cache {
            let entries = cache.source.entries();
            cache
                .entries
                .set(i64::try_from(entries).unwrap_or(i64::MAX));
            cache.up.set(i64::from(cache.source.is_up()));
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// `tokengate_local_cache_*`: the cache's own counters, and its gauges.
fn register_local_cache(registry: &mut Registry, cache: &LocalCache) -> CacheGauges {
    let sub = registry.sub_registry_with_prefix("local_cache");
    let counts = cache.counts();
    for (name, help, counter) in [
        ("hits", "Authenticates answered from memory", &counts.hits),
        (
            "lookups",
            "Authenticates that asked Redis with the read-only look-up (peek.lua)",
            &counts.lookups,
        ),
        (
            "bypasses",
            "Authenticates sent to Redis as without the cache: invalidation channel down, or max_entries reached",
            &counts.bypasses,
        ),
        (
            "invalidations",
            "Invalidation pushes from Redis applied (a session changed, or a flush)",
            &counts.invalidations,
        ),
        (
            "channel_losses",
            "Times the invalidation channel was lost (the cache was cleared and bypassed until it was back)",
            &counts.losses,
        ),
    ] {
        sub.register(name, help, counter.clone());
    }
    let gauges = CacheGauges {
        source: cache.gauges(),
        entries: Gauge::default(),
        up: Gauge::default(),
    };
    sub.register(
        "entries",
        "Sessions remembered now (look-ups on their way included)",
        Clone::clone(&gauges.entries),
    );
    sub.register(
        "up",
        "1 while the invalidation channel is up and requests are answered from memory, else 0",
        Clone::clone(&gauges.up),
    );
    gauges
}

/// The canonical upper-case name of a gRPC code, as grpc-go labels it.
fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}
