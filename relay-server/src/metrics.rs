//! The relay's Prometheus metrics. Counters name their reason, as DERP's
//! `dropReason` does, so an operator sees *why* streams are refused.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `role` and `transport` labels of a connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    /// `agent` or `client`.
    pub role: String,
    /// `quic` (UDP) or `tcp` (the carrier).
    pub transport: &'static str,
}

/// A `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `tcp`, `shell`, `exec`.
    pub kind: String,
}

/// A `direction` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `up` (client to agent) or `down`.
    pub direction: &'static str,
}

/// A `code` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The error code's name, e.g. `UNAUTHORIZED`.
    pub code: String,
}

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why, in one word.
    pub reason: &'static str,
}

/// Every metric of the relay.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Live peer connections by role.
    pub connections: Family<RoleLabel, Gauge>,
    /// Registered agent instances.
    pub agents: Gauge,
    /// Handshakes under way (capped by `--max-handshakes`).
    pub handshakes: Gauge,
    /// Streams open now, by kind.
    pub streams_open: Family<KindLabel, Gauge>,
    /// Streams opened, by kind.
    pub streams: Family<KindLabel, Counter>,
    /// Bytes spliced, by direction.
    pub bytes: Family<DirectionLabel, Counter>,
    /// Opens refused, by code.
    pub refusals: Family<CodeLabel, Counter>,
    /// Connections rejected before or at authentication, by reason.
    pub handshake_failures: Family<ReasonLabel, Counter>,
    /// Audit events that could not be written.
    pub audit_failures: Counter,
    /// Policy and revocation reloads, by result.
    pub reloads: Family<ReasonLabel, Counter>,
    /// Limits hit, by limit.
    pub limit_hits: Family<ReasonLabel, Counter>,
    /// Single sign-ons, by outcome (`issued`, `refused`).
    pub logins: Family<ReasonLabel, Counter>,
}

impl Metrics {
    /// Registers every metric (prefix `relay_`) in a new registry.
    pub fn register(self: &std::sync::Arc<Self>) -> Registry {
        let mut r = Registry::with_prefix("relay");
        r.register(
            "connections",
            "Live peer connections by role and transport",
            self.connections.clone(),
        );
        r.register(
            "agents_registered",
            "Registered agent instances",
            self.agents.clone(),
        );
        r.register(
            "handshakes",
            "Handshakes under way",
            self.handshakes.clone(),
        );
        r.register(
            "streams_open",
            "Streams open now by kind",
            self.streams_open.clone(),
        );
        r.register("streams", "Streams opened by kind", self.streams.clone());
        r.register("bytes", "Bytes spliced by direction", self.bytes.clone());
        r.register("refusals", "Opens refused by code", self.refusals.clone());
        r.register(
            "handshake_failures",
            "Connections rejected at authentication by reason",
            self.handshake_failures.clone(),
        );
        r.register(
            "audit_failures",
            "Audit events that could not be written",
            self.audit_failures.clone(),
        );
        r.register(
            "reloads",
            "Policy and revocation reloads by result",
            self.reloads.clone(),
        );
        r.register("limit_hits", "Limits hit by limit", self.limit_hits.clone());
        r.register("logins", "Single sign-ons by outcome", self.logins.clone());
        r
    }

    /// Counts a single sign-on's outcome.
    pub fn login(&self, outcome: &'static str) {
        self.logins
            .get_or_create(&ReasonLabel { reason: outcome })
            .inc();
    }

    /// Counts a refusal.
    pub fn refused(&self, code: proto::ErrorCode) {
        self.refusals
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a limit hit.
    pub fn limit_hit(&self, reason: &'static str) {
        self.limit_hits.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a rejected connection.
    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}
