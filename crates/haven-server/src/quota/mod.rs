//! Quotas and rate limits: every resource a caller can make the server hold or do is bounded, and
//! the state of every bound lives in the database, so any server node sees the same counters.
//!
//! **Recipient queues.** Each undelivered queue entry is accounted, in the same transaction that
//! adds or removes it (enqueue, acknowledgement, purge), in three places:
//! - the recipient device (`devices.queue_depth`, `devices.queue_bytes`): the depth limit
//!   ([`crate::config::ServerLimits::max_queue_depth`]) and a byte quota per device;
//! - the recipient account (`users.queue_bytes`): a byte quota over all of its devices;
//! - the sender's *share* of that device's queue (`queue_shares`, one row per recipient device
//!   and sending device, `d/<device>`, and one per recipient device and sending account,
//!   `u/<user>`): entries and bytes. A sender whose share of a recipient's queue is used up gets
//!   [`crate::store::StoreError::QueueShare`] naming that recipient (HTTP 429
//!   `queue_share_exhausted`), while every other sender still gets through: one hostile sender
//!   can no longer fill a victim's queue and so block everyone else (review 2026-12, findings 4
//!   and 8).
//!
//! The bytes counted are the stored payload's length ([`crate::store::NewMessage::payload`]),
//! once per recipient device.
//!
//! **Fan-out is all or nothing.** One send queues one message for every other member device in
//! one transaction; if any recipient's share or quota would be exceeded, nothing is written and
//! the sender is told which recipient refused. Exactly-once as the user sees it is unchanged: a
//! message is either queued for every member or for none, and the sender may retry it.
//!
//! **Handshake messages are not held back by shares.** Commits, Welcomes and leave proposals are
//! counted in the shares (so the accounting stays exact) but checked only against the
//! recipient's total depth and byte quotas, never against the sender's share: a member who used
//! up its share of an offline member's queue by chatting can still commit (and, say, remove that
//! member), so a group is never wedged by one member's share. Handshake messages are bounded
//! instead by the per-account write rate limit, by each being a verified epoch change, and by the
//! totals. The notice that a device was linked is queued whatever the limits (as before).
//!
//! **Rate limits** are token buckets in the `rate_limits` table (key, tokens, updated, and
//! `full_at`, the time the bucket is full again, after which its row is purged as equal to a
//! fresh one). Taking a token is one atomic statement on both backends
//! ([`crate::store::Store::take_token`]): an upsert that refills by the time elapsed and takes one
//! token only if there is one. On PostgreSQL the upsert takes the row's lock, so two nodes never
//! both spend the last token. The buckets ([`Bucket`]):
//! - per client IP (IPv6 by its /64 network): registration, login challenges and device links;
//! - per account: authenticated writes (send, commit, proposal, blob upload, key-package upload,
//!   create group);
//! - per claiming account: key-package claims (refused with 429 when empty);
//! - per claimed account: one-time key packages handed out. When this bucket is empty a claim
//!   still succeeds but gets the device's last-resort package, and the one-time packages stay
//!   for later: a claimer (or a crowd of them) cannot drain a user's one-time packages faster than
//!   this rate, and cannot stop others from adding that user either (finding 12).
//!
//! Trust: the server's clock drives the buckets; a node whose clock runs behind never refills a
//! bucket backwards (`updated` only moves forward).

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::net::IpAddr;

use haven_proto::UserName;

/// A token bucket's shape: it holds at most `burst` tokens and gains `refill_per_sec` a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRule {
    /// Most tokens held (the burst a fresh caller may spend at once).
    pub burst: f64,
    /// Tokens gained per second.
    pub refill_per_sec: f64,
}

/// Bounds that keep the bucket arithmetic in range on both backends.
const MAX_BURST: f64 = 1e9;
/// The slowest refill, per millisecond (one token in about eleven days).
const MIN_REFILL_PER_MS: f64 = 1e-9;

impl RateRule {
    /// A rule from a configured burst and refill rate.
    pub fn new(burst: u32, refill_per_sec: f64) -> Self {
        RateRule {
            burst: f64::from(burst),
            refill_per_sec,
        }
    }

    /// The burst, clamped to what the database arithmetic handles.
    pub(crate) fn burst_db(&self) -> f64 {
        if self.burst.is_finite() {
            self.burst.clamp(0.0, MAX_BURST)
        } else {
            MAX_BURST
        }
    }

    /// Tokens per millisecond, clamped so that the time to refill fits an `i64`.
    pub(crate) fn refill_per_ms_db(&self) -> f64 {
        let r = self.refill_per_sec / 1000.0;
        if r.is_finite() {
            r.clamp(MIN_REFILL_PER_MS, MAX_BURST)
        } else {
            MAX_BURST
        }
    }
}

/// A rate-limit bucket, by what it counts.
#[derive(Debug, Clone, Copy)]
pub enum Bucket<'a> {
    /// Registration, login challenges and device links from one client address.
    Auth(IpAddr),
    /// Authenticated writes by one account.
    Write(&'a UserName),
    /// Key-package claims made by one account.
    ClaimBy(&'a UserName),
    /// One-time key packages handed out of one account.
    ClaimOf(&'a UserName),
    /// Reports filed by one account.
    Report(&'a UserName),
}

impl Bucket<'_> {
    /// The bucket's key in the `rate_limits` table.
    pub fn key(&self) -> String {
        match self {
            Bucket::Auth(ip) => format!("ip/{}", ip_key(*ip)),
            Bucket::Write(u) => format!("write/{u}"),
            Bucket::ClaimBy(u) => format!("claim-by/{u}"),
            Bucket::ClaimOf(u) => format!("claim-of/{u}"),
            Bucket::Report(u) => format!("report/{u}"),
        }
    }
}

/// The address a per-IP bucket is kept for: an IPv4 address (also when mapped into IPv6), or the
/// /64 network of an IPv6 address (one subscriber's allocation, so rotating addresses inside it
/// does not buy new buckets).
fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
    }
}

/// The sender keys of a queue entry in `queue_shares`: `d/<device>` and `u/<user>`.
pub(crate) fn share_keys(sender_device: &str, sender_user: &str) -> [String; 2] {
    [format!("d/{sender_device}"), format!("u/{sender_user}")]
}

/// The share a sender key (`d/…` or `u/…`) is over with `entries` and `bytes` in one
/// recipient's queue, if any: what it is and its size.
pub(crate) fn over_share(
    key: &str,
    entries: i64,
    bytes: i64,
    limits: &crate::store::Limits,
) -> Option<(&'static str, u64)> {
    use crate::store::limit_to_db;
    let (depth, size, what_depth, what_bytes) = if key.starts_with("d/") {
        (
            limits.share_device_depth,
            limits.share_device_bytes,
            "the sending device's share of entries",
            "the sending device's share of bytes",
        )
    } else {
        (
            limits.share_account_depth,
            limits.share_account_bytes,
            "the sending account's share of entries",
            "the sending account's share of bytes",
        )
    };
    if entries > limit_to_db(depth) {
        return Some((what_depth, depth));
    }
    if bytes > limit_to_db(size) {
        return Some((what_bytes, size));
    }
    None
}

/// Which limits an enqueue checks (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checks {
    /// None: counted only (the device-linked notice).
    None,
    /// The recipients' total depth and byte quotas (handshake messages).
    Totals,
    /// The totals and the sender's shares (application messages).
    TotalsAndShares,
}

/// What leaves one device's queue: entries and bytes in all, and per sender key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Release {
    /// Entries removed.
    pub entries: i64,
    /// Their bytes.
    pub bytes: i64,
    /// Per sender key (`d/…`, `u/…`): entries and bytes.
    pub shares: std::collections::BTreeMap<String, (i64, i64)>,
}

impl Release {
    /// Counts one removed entry of `size` bytes from this sender (if it had one).
    pub(crate) fn add(&mut self, sender: Option<(&str, &str)>, size: i64) {
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(size);
        if let Some((device, user)) = sender {
            for key in share_keys(device, user) {
                let e = self.shares.entry(key).or_default();
                e.0 += 1;
                e.1 = e.1.saturating_add(size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_share_their_64_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Bucket::Auth(a).key(), Bucket::Auth(b).key());
        assert_ne!(Bucket::Auth(a).key(), Bucket::Auth(c).key());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Bucket::Auth(v4).key(), Bucket::Auth(mapped).key());
        assert_eq!(Bucket::Auth(v4).key(), "ip/192.0.2.7");
    }

    #[test]
    fn rules_are_clamped_for_the_database() {
        let r = RateRule::new(5, 0.0);
        assert_eq!(r.burst_db(), 5.0);
        assert!(r.refill_per_ms_db() > 0.0);
        let huge = RateRule {
            burst: f64::INFINITY,
            refill_per_sec: f64::NAN,
        };
        assert!(huge.burst_db().is_finite() && huge.refill_per_ms_db().is_finite());
        // The time to refill a full burst at the slowest rate fits an i64 of milliseconds.
        assert!(huge.burst_db() / RateRule::new(0, 0.0).refill_per_ms_db() < i64::MAX as f64);
    }
}
