//! The agent's Prometheus metrics; `/readyz` is false while no relay
//! connection is registered.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `tcp`, `shell`, `exec`.
    pub kind: String,
}

/// A `code` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The error code's name, e.g. `TARGET_REFUSED`.
    pub code: String,
}

/// A `relay` label: one relay instance's address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RelayLabel {
    /// `ip:port`.
    pub relay: String,
}

impl RelayLabel {
    /// The label of the relay at `addr`.
    pub fn of(addr: &std::net::SocketAddr) -> RelayLabel {
        RelayLabel {
            relay: addr.to_string(),
        }
    }
}

/// Every metric of the agent.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Relays we are registered with now.
    pub registered: Gauge,
    /// 1 while registered with the relay at this address, else 0.
    pub relays: Family<RelayLabel, Gauge>,
    /// 1 while the registration with the relay at this address rides the
    /// TCP carrier (UDP blocked), 0 over QUIC.
    pub relays_over_tcp: Family<RelayLabel, Gauge>,
    /// Registrations after the first (each is a reconnect).
    pub reconnects: Counter,
    /// Streams accepted, by kind.
    pub streams: Family<KindLabel, Counter>,
    /// Streams open now.
    pub streams_open: Gauge,
    /// Target dials in flight now (within `--max-dials`).
    pub dials_in_flight: Gauge,
    /// Dials waiting now because their caller has `--max-dials-per-caller`
    /// in flight.
    pub dials_waiting: Gauge,
    /// Opens refused by this agent, by code.
    pub refusals: Family<CodeLabel, Counter>,
    /// End of validity of the agent's certificate, seconds since the epoch.
    pub certificate_expiry: Gauge,
}

impl Metrics {
    /// Registers every metric (prefix `agent_`) in a new registry.
    pub fn register(self: &std::sync::Arc<Self>) -> Registry {
        let mut r = Registry::with_prefix("agent");
        r.register(
            "relays_registered",
            "Relays this agent is registered with",
            self.registered.clone(),
        );
        r.register(
            "relay_registered",
            "1 while registered with the relay instance at this address (every address the relay names resolve to)",
            self.relays.clone(),
        );
        r.register(
            "relay_over_tcp",
            "1 while the registration with the relay at this address rides the TCP carrier (UDP blocked or --transport tcp), 0 over QUIC",
            self.relays_over_tcp.clone(),
        );
        r.register(
            "reconnects",
            "Registrations after the first",
            self.reconnects.clone(),
        );
        r.register("streams", "Streams accepted by kind", self.streams.clone());
        r.register(
            "streams_open",
            "Streams open now",
            self.streams_open.clone(),
        );
        r.register(
            "dials_in_flight",
            "Target dials in flight now",
            self.dials_in_flight.clone(),
        );
        r.register(
            "dials_waiting",
            "Dials waiting for their caller's earlier dials (--max-dials-per-caller)",
            self.dials_waiting.clone(),
        );
        r.register(
            "refusals",
            "Opens refused by this agent by code",
            self.refusals.clone(),
        );
        r.register(
            "certificate_expiry_seconds",
            "End of validity of the agent certificate (Unix time)",
            self.certificate_expiry.clone(),
        );
        r
    }

    /// Counts a refusal.
    pub fn refused(&self, code: proto::ErrorCode) {
        self.refusals
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }
}
