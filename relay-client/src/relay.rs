//! The client's connection to the relay, kept usable when relays come and
//! go (issue #14): dialled happy-eyeballs style over every relay address
//! ([`relay_net::dial::dial_any`]), left for another relay as soon as its
//! relay says `GoAway` (a datagram, [`proto::Datagram`]), and probed before
//! use when it has been quiet, so a relay that died costs the next stream
//! a fraction of a second, not an idle timeout.
//!
//! ```text
//! connection() ─▶ live link? ─ closed / GoAway / a probe unanswered ─▶ redial, that relay tried last
//!                      └─ heard within QUIET, or answers a Ping ─▶ use it
//! ```
//!
//! A link that is left keeps serving the streams already on it: quinn
//! closes it once the last of them ends (the relay drains them meanwhile).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use proto::Datagram;
use relay_net::dial::{dial_any, quic_again, resolve_all, Candidate, DialError, Origin, RelayConn};
use relay_net::endpoint::{Transport, Via};
use relay_net::renew::Reloading;
use tokio::sync::{Mutex, Notify};

use crate::error::{Side, StreamError};

/// A link heard from within this long is used without a probe.
const QUIET: Duration = Duration::from_millis(250);

/// A probe's answer may take three round trips plus this, for a busy relay.
const PROBE_SLACK: Duration = Duration::from_millis(200);

/// How long a relay that went away or did not answer is tried last.
const AVOID_FOR: Duration = Duration::from_secs(30);

/// The client's one link to the relay, replaced when it fails.
#[derive(Debug, Default)]
pub(crate) struct RelayLink {
    slot: Arc<Mutex<Option<Link>>>,
    /// The endpoint every link leaves from once the first is up: one
    /// socket and one connection-ID prefix, so a direct path can ask another
    /// relay to route it (module `direct`).
    origin: SyncMutex<Option<Origin>>,
    /// Addresses to try last, until the instant given.
    avoid: Arc<Avoid>,
}

/// Why a live link is left for another relay.
#[derive(Debug)]
enum Leave {
    Closed(StreamError),
    GoingAway,
    Silent(Duration),
}

impl RelayLink {
    /// The live connection to a relay, dialling (again) if there is none or
    /// the one there is has gone away or stopped answering. A dial takes the
    /// credential file as it is then; a live link reads nothing from disk.
    ///
    /// # Errors
    /// If no relay can be reached.
    pub(crate) async fn connection(
        &self,
        credential: &Reloading,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<quinn::Connection, DialError> {
        let (conn, _) = self
            .connection_watched(credential, transport, timeout)
            .await?;
        Ok(conn)
    }

    /// As [`RelayLink::connection`], with the [`Departure`] of that
    /// connection: a direct path it grants serves new streams until then.
    ///
    /// # Errors
    /// If no relay can be reached.
    pub(crate) async fn connection_watched(
        &self,
        credential: &Reloading,
        transport: &Transport,
        timeout: Duration,
    ) -> Result<(quinn::Connection, Departure), DialError> {
        let mut slot = self.slot.lock().await;
        if let Some(link) = slot.as_ref() {
            let relay = link.rc.conn.remote_address();
            match link.check().await {
                Ok(()) => return Ok((link.rc.conn.clone(), Departure(link.heard.clone()))),
                Err(Leave::Closed(lost)) => {
                    tracing::info!(%relay, reason = %lost, "relay connection lost; re-dialling");
                }
                Err(Leave::GoingAway) => {
                    tracing::info!(%relay, "relay is going away; new streams go through another relay");
                    self.avoid.add(relay);
                }
                Err(Leave::Silent(waited)) => {
                    tracing::warn!(%relay, ?waited, "relay did not answer a probe; new streams go through another relay");
                    self.avoid.add(relay);
                }
            }
            *slot = None;
        }
        let credential_file = credential;
        let credential = credential.latest();
        let (mut candidates, unresolved) =
            resolve_all(&credential.credential.relay, transport).await;
        if let Some(unresolved) = unresolved.into_iter().next() {
            if candidates.is_empty() {
                return Err(unresolved);
            }
            tracing::warn!(err = %unresolved, "a relay address does not resolve; trying the others");
        }
        // Relays that just went away or fell silent last: stable sort.
        let avoided = self.avoid.now();
        candidates.sort_by_key(|c| avoided.contains(&c.addr));
        let origin = self.origin().clone();
        let rc = dial_any(
            &credential,
            &candidates,
            origin.as_ref(),
            transport,
            timeout,
        )
        .await?;
        if let (Via::Quic, Some(ears)) = (rc.via, &rc.ears) {
            self.origin().get_or_insert_with(|| Origin {
                endpoint: rc.endpoint.clone(),
                prefix: rc.prefix,
                ears: ears.clone(),
            });
        }
        let conn = rc.conn.clone();
        tracing::debug!(relay = %conn.remote_address(), transport = %rc.via, "connected to relay");
        if rc.via == Via::Tcp && transport.via == Via::Auto {
            tracing::info!(relay = %rc.candidate, "QUIC over UDP did not answer in time: using the TCP carrier (TLS over TCP); new streams move back to QUIC once UDP gets through");
        }
        let upgrade = (rc.via == Via::Tcp && transport.via == Via::Auto).then(|| Upgrade {
            credential: credential_file.clone(),
            transport: transport.clone(),
            origin: origin.clone(),
        });
        let link = Link::watch(rc, Arc::downgrade(&self.slot), self.avoid.clone(), upgrade);
        let departure = Departure(link.heard.clone());
        *slot = Some(link);
        Ok((conn, departure))
    }

    /// The endpoint and connection-ID prefix of the live link (direct
    /// paths share its socket), if there is one.
    pub(crate) async fn endpoint(&self) -> Option<(quinn::Endpoint, proto::CidPrefix)> {
        let slot = self.slot.lock().await;
        slot.as_ref().map(|l| (l.rc.endpoint.clone(), l.rc.prefix))
    }

    /// The relay address of the live link and how it is reached, if there is one.
    pub(crate) async fn in_use(&self) -> Option<(String, Via)> {
        let slot = self.slot.lock().await;
        slot.as_ref()
            .map(|l| (l.rc.candidate.to_string(), l.rc.via))
    }

    /// Why the link is gone, if it is.
    pub(crate) async fn lost(&self) -> Option<StreamError> {
        let slot = self.slot.lock().await;
        let reason = slot.as_ref()?.rc.conn.close_reason()?;
        Some(StreamError::connection(Side::Relay, reason))
    }

    /// Closes the link cleanly (after streams are done).
    pub(crate) async fn close(&self) {
        if let Some(link) = self.slot.lock().await.take() {
            link.rc.conn.close(0u32.into(), b"client done");
            let endpoint = link.rc.endpoint.clone();
            drop(link);
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
    }

    fn origin(&self) -> std::sync::MutexGuard<'_, Option<Origin>> {
        self.origin.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Relay addresses to try last, each until an instant: those that went
/// away or stopped answering lately.
#[derive(Debug, Default)]
struct Avoid(SyncMutex<HashMap<SocketAddr, Instant>>);

impl Avoid {
    fn add(&self, addr: SocketAddr) {
        let mut avoid = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        avoid.retain(|_, until| *until > now);
        avoid.insert(addr, now + AVOID_FOR);
    }

    fn now(&self) -> Vec<SocketAddr> {
        let avoid = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        avoid
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(a, _)| *a)
            .collect()
    }
}

/// A connection to a relay and the task that watches it.
#[derive(Debug)]
struct Link {
    rc: RelayConn,
    heard: Arc<Heard>,
}

/// What the watcher of a link over the TCP carrier needs to try QUIC again
/// ([`relay_net::dial::quic_again`]) and move new streams to it.
#[derive(Debug)]
struct Upgrade {
    credential: Reloading,
    transport: Transport,
    origin: Option<Origin>,
}

impl Upgrade {
    /// A QUIC connection to the relay `rc` reaches over TCP, once UDP gets
    /// through; never without an upgrade to try.
    async fn quic(this: Option<&Upgrade>, rc: &Candidate) -> RelayConn {
        match this {
            Some(u) => quic_again(&u.credential, rc, u.origin.as_ref(), &u.transport).await,
            None => std::future::pending().await,
        }
    }
}

/// What the watcher learnt, and when the link was last heard from.
#[derive(Debug, Default)]
struct Heard {
    going_away: AtomicBool,
    /// The relay did not answer a probe: new streams go elsewhere.
    silent: AtomicBool,
    seen: SyncMutex<Seen>,
    /// A stream was opened: the relay should answer soon.
    opened: Notify,
    /// The link left its slot: the watcher lets go of the connection
    /// (unless it is still finding out whether the relay is dead).
    left: Notify,
}

/// Whether the client has left a relay connection for another relay: it
/// said `GoAway`, or did not answer a probe. Set once, never cleared.
#[derive(Clone, Debug)]
pub(crate) struct Departure(Arc<Heard>);

impl Departure {
    /// Whether new streams go elsewhere now.
    pub(crate) fn left(&self) -> bool {
        self.0.going_away.load(Ordering::Relaxed) || self.0.silent.load(Ordering::Relaxed)
    }
}

/// Datagrams received from the relay as of the last check.
#[derive(Debug)]
struct Seen {
    count: u64,
    checked: Instant,
    /// Nothing arrived since this instant, as far as the checks tell.
    quiet_since: Instant,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            count: 0,
            checked: Instant::now(),
            quiet_since: Instant::now(),
        }
    }
}

/// Probes the watcher sends to a relay that fell silent under a stream
/// before it closes the connection, failing the streams on it at once
/// instead of after the idle timeout.
const PROBES: u32 = 3;

impl Link {
    /// Starts watching `rc` ([`watch`]).
    fn watch(
        rc: RelayConn,
        slot: Weak<Mutex<Option<Link>>>,
        avoid: Arc<Avoid>,
        upgrade: Option<Upgrade>,
    ) -> Link {
        let heard = Arc::new(Heard::default());
        heard.received(&rc.conn);
        let watching = watch(
            rc.conn.clone(),
            rc.candidate.clone(),
            heard.clone(),
            slot,
            avoid,
            upgrade,
        );
        tokio::spawn(watching);
        Link { rc, heard }
    }

    /// Whether new streams may go on this link: open, not going away, and
    /// heard from lately or answering a probe. Tells the watcher a stream
    /// is coming.
    async fn check(&self) -> Result<(), Leave> {
        let conn = &self.rc.conn;
        if let Some(reason) = conn.close_reason() {
            return Err(Leave::Closed(StreamError::connection(Side::Relay, reason)));
        }
        if self.heard.going_away.load(Ordering::Relaxed) {
            return Err(Leave::GoingAway);
        }
        if self.heard.silent.load(Ordering::Relaxed) {
            return Err(Leave::Silent(QUIET));
        }
        self.heard.opened.notify_one();
        if self.heard.received(conn) < QUIET {
            return Ok(());
        }
        let wait = conn.rtt() * 3 + PROBE_SLACK;
        if answers(conn).await {
            Ok(())
        } else if self.heard.going_away.load(Ordering::Relaxed) {
            Err(Leave::GoingAway)
        } else {
            Err(Leave::Silent(wait))
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.heard.left.notify_one();
    }
}

impl Heard {
    /// How long nothing has arrived from the relay, as far as can be told:
    /// quinn counts received datagrams; a change since the last check means
    /// something arrived after that check.
    fn received(&self, conn: &quinn::Connection) -> Duration {
        let count = conn.stats().udp_rx.datagrams;
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if count != seen.count {
            seen.quiet_since = seen.checked;
        }
        seen.count = count;
        seen.checked = now;
        now - seen.quiet_since
    }
}

/// A stream was opened on the link at `since` (with `count` datagrams
/// received then): the relay has to answer, at least with an ACK.
struct Expecting {
    count: u64,
    deadline: Instant,
    probes: u32,
}

/// Watches a link until its connection ends, it goes away, or it has left
/// its slot with no stream waiting for the relay: reads the relay's datagrams (`GoAway`), and after each
/// open makes sure the relay answers. A relay that stays silent [`QUIET`]
/// after an open gets a probe; one that does not answer it is left (new
/// streams go elsewhere at once), and after [`PROBES`] unanswered probes
/// its connection is closed, so the streams on it fail now, loudly, instead
/// of hanging until the idle timeout. On `GoAway` the link leaves its slot,
/// so even an idle client lets go of a draining relay at once (quinn closes
/// the connection when no stream holds it any more). A link over the TCP
/// carrier tries QUIC again now and then (`upgrade`); once it gets
/// through, the QUIC link takes the slot, and this one serves the streams
/// it has until they end.
async fn watch(
    conn: quinn::Connection,
    candidate: Candidate,
    heard: Arc<Heard>,
    slot: Weak<Mutex<Option<Link>>>,
    avoid: Arc<Avoid>,
    upgrade: Option<Upgrade>,
) {
    let id = conn.stable_id();
    let relay = conn.remote_address();
    let mut expecting: Option<Expecting> = None;
    let mut left = false;
    let mut quic = std::pin::pin!(Upgrade::quic(upgrade.as_ref(), &candidate));
    loop {
        let deadline = expecting.as_ref().map(|e| e.deadline);
        tokio::select! {
            rc = &mut quic, if !left => {
                tracing::info!(%relay, "UDP gets through again: new streams go over QUIC; streams on the TCP carrier finish there");
                left = true;
                take_slot(&slot, id, rc, &avoid).await;
                if expecting.is_none() {
                    return;
                }
            }
            datagram = conn.read_datagram() => match datagram.map(|b| Datagram::decode(&b)) {
                Err(_) => return,
                Ok(Ok(Datagram::GoAway { .. })) => {
                    heard.going_away.store(true, Ordering::Relaxed);
                    // A restart comes back at this address before its
                    // agents do: try the others first for a while.
                    avoid.add(relay);
                    tracing::info!(%relay, "relay is going away; new streams go through another relay");
                    leave_slot(&slot, id).await;
                    return;
                }
                Ok(_) => tracing::debug!("ignored a datagram from the relay"),
            },
            () = heard.opened.notified(), if expecting.is_none() => {
                let count = conn.stats().udp_rx.datagrams;
                expecting = Some(Expecting { count, deadline: Instant::now() + QUIET, probes: 0 });
            }
            () = heard.left.notified(), if !left => {
                // Streams still waiting for the relay's answer are seen through.
                left = true;
                if expecting.is_none() {
                    return;
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                let Some(e) = expecting.as_mut() else { continue };
                if conn.stats().udp_rx.datagrams != e.count {
                    if left {
                        return;
                    }
                    expecting = None;
                    continue;
                }
                if e.probes == 1 {
                    tracing::warn!(%relay, "relay did not answer a probe; new streams go through another relay");
                    heard.silent.store(true, Ordering::Relaxed);
                    avoid.add(relay);
                    leave_slot(&slot, id).await;
                }
                if e.probes == PROBES {
                    tracing::warn!(%relay, probes = PROBES, "relay stopped answering; closing its connection so its streams fail now");
                    conn.close(proto::ErrorCode::GOING_AWAY.0.into(), b"relay stopped answering");
                    return;
                }
                let ping = bytes::Bytes::copy_from_slice(&Datagram::Ping(u64::from(e.probes)).encode());
                if conn.send_datagram(ping).is_err() {
                    // A relay that predates probes: nothing to learn.
                    expecting = None;
                    continue;
                }
                e.probes += 1;
                e.deadline = Instant::now() + conn.rtt() * 3 + PROBE_SLACK;
            }
        }
    }
}

/// Whether the relay at the other end of `conn` still answers. A `Ping`
/// datagram is ack-eliciting, so a live relay sends something back (its
/// ACK, or the `Pong`) within about a round trip; quinn counts what arrives.
pub(crate) async fn answers(conn: &quinn::Connection) -> bool {
    let before = conn.stats().udp_rx.datagrams;
    let ping = bytes::Bytes::copy_from_slice(&Datagram::Ping(before).encode());
    if conn.send_datagram(ping).is_err() {
        // Closed, or a relay that predates probes: trust it while it is open.
        return conn.close_reason().is_none();
    }
    let deadline = Instant::now() + conn.rtt() * 3 + PROBE_SLACK;
    let mut look = tokio::time::interval(Duration::from_millis(5));
    while Instant::now() < deadline {
        look.tick().await;
        if conn.stats().udp_rx.datagrams != before {
            return true;
        }
        if conn.close_reason().is_some() {
            return false;
        }
    }
    false
}

/// Takes the link with connection `id` out of `slot`, if it is there.
async fn leave_slot(slot: &Weak<Mutex<Option<Link>>>, id: usize) {
    if let Some(slot) = slot.upgrade() {
        let mut slot = slot.lock().await;
        if slot.as_ref().is_some_and(|l| l.rc.conn.stable_id() == id) {
            *slot = None;
        }
    }
}

/// Puts `quic` in `slot` in place of the link with connection `id`, if it
/// is still there (else the QUIC connection is not needed: closed).
async fn take_slot(
    slot: &Weak<Mutex<Option<Link>>>,
    id: usize,
    quic: RelayConn,
    avoid: &Arc<Avoid>,
) {
    let Some(slot_arc) = slot.upgrade() else {
        return quic.conn.close(0u32.into(), b"client done");
    };
    let mut held = slot_arc.lock().await;
    if held.as_ref().is_some_and(|l| l.rc.conn.stable_id() == id) {
        *held = Some(Link::watch(quic, slot.clone(), avoid.clone(), None));
    } else {
        quic.conn.close(0u32.into(), b"not needed");
    }
}

/// Sleeps until `deadline`, or forever.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
