//! `haven demo`: a narrated tour on an in-process server in a temporary directory.

use std::process::ExitCode;

use anyhow::Context;
use haven_client::{Body, Client, Event, Target};
use haven_proto::UserName;
use haven_server::ServerConfig;

/// The date of birth the demo's accounts register with: adults, whom the contact rules for
/// minors do not restrict.
const DEMO_BIRTH_DATE: &str = "1990-01-01";

fn step(n: &mut u32, text: &str) {
    *n += 1;
    println!("\n{n}. {text}");
}

fn show(events: &[Event]) {
    for e in events {
        match e {
            Event::Message {
                message,
                conversation,
            } => match &message.body {
                Body::Text(t) => println!("   [{conversation}] {}: {t}", message.from),
                Body::Attachment(a) => println!(
                    "   [{conversation}] {}: file {} ({} bytes)",
                    message.from, a.name, a.size
                ),
                Body::GroupName(_) => {}
            },
            Event::Joined { conversation, .. } => println!("   joined {conversation}"),
            Event::Notice(n) => println!("   notice from the operator about case {}", n.case),
            Event::Invited {
                conversation, by, ..
            } => println!(
                "   re-added to {conversation} by {}: an invitation to accept",
                by.as_ref().map_or("someone", |u| u.as_str())
            ),
            Event::Renamed {
                conversation,
                requested,
                ..
            } => println!("   {conversation} renamed (asked for #{requested})"),
            Event::Membership {
                conversation,
                added,
                removed,
                self_removed,
            } => {
                if *self_removed {
                    println!("   removed from {conversation}");
                }
                for u in added {
                    println!("   {u} was added to {conversation}");
                }
                for u in removed {
                    println!("   {u} was removed from {conversation}");
                }
            }
            Event::Dropped { reason, .. } => println!("   dropped an entry: {reason}"),
        }
    }
}

pub async fn run() -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut n = 0;
    step(
        &mut n,
        "Starting a Haven server on its embedded default (SQLite + local blob directory).",
    );
    let mut config = ServerConfig::embedded(dir.path().join("server"));
    config.listen = "127.0.0.1:0".parse()?;
    let server = haven_server::start(config).await?;
    let url = server.url(false);
    println!(
        "   listening on {url}, data in {}",
        dir.path().join("server").display()
    );

    step(
        &mut n,
        "Registering alice, bob and carol, each with one device and its own keys.",
    );
    let mut clients = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let c = Client::register(
            &dir.path().join(name),
            &url,
            &UserName::new(name)?,
            "demo",
            DEMO_BIRTH_DATE,
        )
        .await?;
        println!("   {name}: device {}", c.device_id());
        clients.push(c);
    }
    let [mut alice, mut bob, mut carol] =
        <[Client; 3]>::try_from(clients).map_err(|_| anyhow::anyhow!("three clients"))?;

    step(
        &mut n,
        "alice writes to bob: Haven opens a 1:1 conversation (a two-member MLS group).",
    );
    alice
        .send_text(
            &Target::User(UserName::new("bob")?),
            "hi bob, this is end-to-end encrypted",
        )
        .await?;
    println!("   bob syncs:");
    show(&bob.sync().await?);

    step(&mut n, "alice creates #friends with bob and carol; the server orders the commit and releases the Welcomes.");
    alice
        .create_group("friends", &[UserName::new("bob")?, UserName::new("carol")?])
        .await?;
    for (name, c) in [("bob", &mut bob), ("carol", &mut carol)] {
        println!("   {name} syncs:");
        show(&c.sync().await?);
    }

    step(&mut n, "Everyone talks in #friends. Each message carries a franking commitment the server binds to sender, group and time.");
    let friends = Target::Group("friends".into());
    bob.send_text(&friends, "hello both!").await?;
    carol.send_text(&friends, "hey! carol here").await?;
    for (name, c) in [
        ("alice", &mut alice),
        ("bob", &mut bob),
        ("carol", &mut carol),
    ] {
        println!("   {name} syncs:");
        show(&c.sync().await?);
    }

    step(&mut n, "carol shares a file: encrypted with a fresh key, uploaded as ciphertext, its hash committed in the message.");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"meeting notes: the server never sees this text\n")?;
    let sent = carol.send_file(&friends, &file).await?;
    println!("   bob syncs:");
    show(&bob.sync().await?);
    let out = dir.path().join("notes-from-carol.txt");
    bob.get_file(sent.id.as_str(), &Default::default(), &out)
        .await?;
    println!(
        "   bob downloads and decrypts it: {:?}",
        std::fs::read_to_string(&out)?.trim()
    );

    step(
        &mut n,
        "alice removes carol; carol cannot read what follows.",
    );
    alice
        .remove_member("friends", &UserName::new("carol")?)
        .await?;
    alice
        .send_text(&friends, "just between us now, bob")
        .await?;
    println!("   bob syncs:");
    show(&bob.sync().await?);
    println!("   carol syncs:");
    show(&carol.sync().await?);

    step(&mut n, "mia registers as a 14-year-old: the server keeps her age band, not her birth date, and adults outside her contacts cannot reach her.");
    let today = haven_safety::age::utc_day(haven_server::service::now_ms());
    let born = today
        .replace_year(today.year() - 14)
        .or_else(|_| {
            today
                .replace_day(28)
                .and_then(|d| d.replace_year(today.year() - 14))
        })
        .map_err(|e| anyhow::anyhow!("a date 14 years ago: {e}"))?;
    let mut mia = Client::register(
        &dir.path().join("mia"),
        &url,
        &UserName::new("mia")?,
        "demo",
        &haven_safety::age::format_date(born),
    )
    .await?;
    let mia_name = UserName::new("mia")?;
    match carol
        .send_text(&Target::User(mia_name.clone()), "hi, want to chat?")
        .await
    {
        Err(e) => println!("   carol writes to mia: refused: {e}"),
        Ok(_) => anyhow::bail!("the server let an unconnected adult write to a minor"),
    }
    mia.contact_request(&UserName::new("alice")?).await?;
    alice.contact_answer(&mia_name, true).await?;
    println!("   mia asks alice (her aunt) to connect; alice accepts");
    alice
        .send_text(&Target::User(mia_name), "hi mia, it's your aunt")
        .await?;
    println!("   mia syncs:");
    show(&mia.sync().await?);

    step(&mut n, "The server's data directory holds only ciphertext: searching it for the texts above finds nothing.");
    let mut found = false;
    for marker in [
        "this is end-to-end encrypted",
        "just between us now",
        "meeting notes",
    ] {
        found |= contains_anywhere(&dir.path().join("server"), marker.as_bytes())?;
    }
    println!("   plaintext found in server data: {found}");

    server.shutdown().await;
    println!("\nDone. Try it for real: `haven server` in one terminal, then `haven register NAME --birth-date YYYY-MM-DD --server http://127.0.0.1:7878`.");
    Ok(if found {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether `needle` occurs in any file under `dir`.
pub fn contains_anywhere(dir: &std::path::Path, needle: &[u8]) -> anyhow::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if contains_anywhere(&path, needle)? {
                return Ok(true);
            }
        } else if std::fs::read(&path)?
            .windows(needle.len())
            .any(|w| w == needle)
        {
            return Ok(true);
        }
    }
    Ok(false)
}
