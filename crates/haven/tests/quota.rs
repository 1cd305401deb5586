//! Quotas and rate limits end to end: a real server on a loopback port and real clients (review
//! 2026-12, findings 4, 8 and 12). Server-side details are tested in `haven-server`'s
//! `tests/quota.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;
use support::ADULT_BIRTH_DATE;

use std::collections::BTreeSet;
use std::path::PathBuf;

use haven_client::{Body, Client, ClientError, Event, Target};
use haven_proto::api::ErrorCode;
use haven_proto::UserName;
use haven_server::{RunningServer, ServerConfig, ServerLimits};

fn u(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

struct World {
    dir: tempfile::TempDir,
    server: RunningServer,
    url: String,
}

impl World {
    async fn new(limits: ServerLimits) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::embedded(dir.path().join("server"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.limits = limits;
        let server = haven_server::start(config).await.unwrap();
        let url = server.url(false);
        World { dir, server, url }
    }

    fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join("clients").join(name)
    }

    async fn register(&self, name: &str) -> Client {
        Client::register(
            &self.home(name),
            &self.url,
            &u(name),
            "test",
            ADULT_BIRTH_DATE,
        )
        .await
        .unwrap()
    }
}

fn texts_from(events: &[Event], from: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } if message.from.as_str() == from => {
                match &message.body {
                    Body::Text(t) => Some(t.clone()),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

async fn available(c: &Client) -> u32 {
    c.api().key_package_count().await.unwrap().available
}

/// Finding 12 with the default limits: a claimer who drains a user's key packages is stopped by
/// the per-claimer limit with one-time packages to spare, a later add gets a fresh one-time
/// package (not the shared last-resort one), and the victim's next sync replaces what was taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_bounded_and_a_later_add_gets_a_fresh_one_time_package() {
    let limits = ServerLimits::default();
    let w = World::new(limits.clone()).await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let mut mallory = w.register("mallory").await;
    let full = available(&bob).await;
    assert_eq!(full, 30);

    // Creating her group claims mallory's own other devices: one claim of her budget.
    let trap = mallory.create_group("trap", &[]).await.unwrap();
    let mut handed = Vec::new();
    let refused = loop {
        match mallory.api().claim_key_packages(&u("bob"), &trap).await {
            Ok(c) => {
                assert_eq!(c.key_packages.len(), 1);
                handed.push(c.key_packages[0].key_package.clone());
            }
            Err(e) => break e,
        }
        assert!(handed.len() <= 40, "claims are never refused");
    };
    assert_eq!(refused.code(), Some(ErrorCode::RateLimited), "{refused}");
    assert_eq!(handed.len() as u32, limits.claim_burst - 1);
    let distinct: BTreeSet<&Vec<u8>> = handed.iter().collect();
    assert_eq!(
        distinct.len(),
        handed.len(),
        "each drained package is one-time"
    );
    let left = available(&bob).await;
    assert_eq!(left, full - handed.len() as u32);
    assert!(left > 0);

    // Alice adds bob afterwards: a one-time package is used (the count drops by one; handing out
    // the last-resort package would leave it unchanged), and it is none that mallory holds.
    let team = alice.create_group("team", &[u("bob")]).await.unwrap();
    assert_eq!(available(&bob).await, left - 1);
    let events = bob.sync().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Joined { .. } | Event::Invited { .. })),
        "{events:?}"
    );
    bob.accept("#team").unwrap();
    assert!(bob.engine().members(&team).unwrap().len() >= 2);
    // The sync topped bob up to the target again.
    assert_eq!(available(&bob).await, full);

    alice
        .send_text(&Target::Group("team".into()), "welcome, bob")
        .await
        .unwrap();
    assert_eq!(
        texts_from(&bob.sync().await.unwrap(), "alice"),
        vec!["welcome, bob".to_owned()]
    );
    w.server.shutdown().await;
}

/// Findings 4 and 8 with real clients: mallory puts bob in her group and floods it; she stops at
/// her share of bob's queue with a clear error naming bob's device, alice still reaches bob, and
/// bob gets every accepted message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_stops_at_the_senders_share_and_others_still_get_through() {
    let limits = ServerLimits {
        queue_share_device_depth: 12,
        queue_share_account_depth: 12,
        max_queue_depth: 40,
        ..ServerLimits::default()
    };
    let w = World::new(limits).await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let mut mallory = w.register("mallory").await;

    mallory.create_group("spam", &[u("bob")]).await.unwrap();
    let spam = Target::Group("spam".into());
    let mut sent = Vec::new();
    let refused = loop {
        let text = format!("spam {}", sent.len());
        match mallory.send_text(&spam, &text).await {
            Ok(_) => sent.push(text),
            Err(e) => break e,
        }
        assert!(sent.len() <= 40, "the flood is never refused");
    };
    let ClientError::Net(e) = &refused else {
        panic!("unexpected {refused:?}")
    };
    assert_eq!(e.code(), Some(ErrorCode::QueueShareExhausted), "{e}");
    assert!(e.to_string().contains(bob.device_id().as_str()), "{e}");
    // The Welcome and the group-name message count in mallory's share too.
    assert!(sent.len() < 12, "{}", sent.len());

    // Alice still reaches bob, directly and in a new group.
    alice
        .send_text(&Target::User(u("bob")), "are you there?")
        .await
        .unwrap();
    alice.create_group("team", &[u("bob")]).await.unwrap();

    let events = bob.sync().await.unwrap();
    // Bob has not accepted mallory's invitation, so her messages are not shown, but nothing
    // was lost or duplicated for what bob does read: alice's message, once.
    assert_eq!(
        texts_from(&events, "alice"),
        vec!["are you there?".to_owned()]
    );
    // Once bob's queue is drained, mallory may send again.
    mallory.send_text(&spam, "again").await.unwrap();
    w.server.shutdown().await;
}
