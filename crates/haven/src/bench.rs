//! `haven bench`: measurements against a real server on loopback.
//!
//! - `deliver`: end-to-end deliveries per second (encrypt → server → decrypt and store) and
//!   delivery latency. `--clients N` senders each own a group whose members are the same
//!   `--recipients R` receiving clients; each sender sends `--messages M` texts, so
//!   N·M·R deliveries. Recipients receive over WebSocket push and process what arrived together
//!   (waiting `--linger-ms` for more) in one local transaction, then acknowledge it in one frame.
//!   Latency is from the sender's clock before encryption (`sent_at` inside the content) to the
//!   recipient's stored copy. By default senders send as fast as the server answers, which
//!   measures saturation: the backlog then builds at the slowest stage and latency grows with the
//!   run. `--rate` paces the senders instead (an open-loop schedule; the JSON's
//!   `max_send_lag_ms` says how far they fell behind it, which latency does not include).
//! - `idle`: the resident memory of a `haven server` process holding `--connections` idle
//!   authenticated WebSocket connections, one per device.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ed25519_dalek::{Signer, SigningKey};
use haven_client::net::Api;
use haven_client::{Client, Event, Target};
use haven_proto::{api, UserName};
use haven_server::{ServerConfig, ServerLimits};
use serde_json::json;
use tokio::sync::Mutex;

/// The date of birth the benchmark's accounts register with: adults, whom the contact rules for
/// minors do not restrict.
const BENCH_BIRTH_DATE: &str = "1990-01-01";

#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// End-to-end delivery throughput and latency.
    Deliver {
        /// Sending clients (one group each).
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Receiving clients, members of every sender's group.
        #[arg(long, default_value_t = 10)]
        recipients: usize,
        /// Messages per sender.
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// How long a recipient waits after a pushed entry for more to process in the same
        /// transaction (milliseconds; 0 = only what has already arrived).
        #[arg(long, default_value_t = 2)]
        linger_ms: u64,
        /// Offered load in deliveries per second: each sender sends on a fixed schedule (its
        /// share of the rate) instead of as fast as it can, so latency is measured below
        /// saturation. How far senders fell behind that schedule is reported.
        #[arg(long)]
        rate: Option<f64>,
        /// Use this server instead of an in-process one on loopback.
        #[arg(long)]
        server: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Server memory with idle WebSocket connections.
    Idle {
        /// Idle connections (one device each).
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a benchmark on its own runtime. It has more worker threads than cores on purpose: the
/// benchmark hosts many clients in one process, and each client's engine does its SQLite work,
/// `fsync` included, synchronously on its task, as it would on its own process's thread. With one
/// worker per core, one client waiting for the disk would stall the server and every other client,
/// which separate processes would not.
pub fn main(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BENCH_WORKERS)
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(cmd))
}

/// Worker threads of the benchmark's runtime (see [`main`]).
const BENCH_WORKERS: usize = 16;

async fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Deliver {
            clients,
            recipients,
            messages,
            linger_ms,
            rate,
            server,
            json,
        } => {
            let shape = Shape {
                senders: clients,
                recipients,
                messages,
                linger: Duration::from_millis(linger_ms),
                rate,
            };
            deliver(shape, server, json).await
        }
        BenchCmd::Idle { connections, json } => idle(connections, json).await,
    }
}

/// The benchmark's server: the rate limits stay in force (every write still takes its token
/// from the database bucket, so their cost is measured) but are set high enough that the load
/// generator is never refused.
fn bench_limits() -> ServerLimits {
    ServerLimits {
        auth_burst: 1_000_000,
        auth_refill_per_sec: 1_000_000.0,
        write_burst: 1_000_000,
        write_refill_per_sec: 1_000_000.0,
        claim_burst: 1_000_000,
        claim_refill_per_sec: 1_000_000.0,
        claim_target_burst: 1_000_000,
        claim_target_refill_per_sec: 1_000_000.0,
        max_queue_depth: 1_000_000,
        ..ServerLimits::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(idx.min(sorted.len() - 1))
        .copied()
        .unwrap_or(f64::NAN)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What `bench deliver` runs.
struct Shape {
    senders: usize,
    recipients: usize,
    messages: usize,
    linger: Duration,
    /// Offered deliveries per second, if paced.
    rate: Option<f64>,
}

impl Shape {
    /// The time between one sender's messages when paced: the senders share the offered rate,
    /// and each message makes `recipients` deliveries.
    fn send_interval(&self) -> anyhow::Result<Option<Duration>> {
        let Some(rate) = self.rate else {
            return Ok(None);
        };
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of deliveries per second");
        }
        let secs = (self.senders * self.recipients) as f64 / rate;
        Ok(Some(
            Duration::try_from_secs_f64(secs).context("--rate is out of range")?,
        ))
    }
}

async fn deliver(shape: Shape, server: Option<String>, as_json: bool) -> anyhow::Result<ExitCode> {
    let (n, r, m, linger) = (
        shape.senders,
        shape.recipients,
        shape.messages,
        shape.linger,
    );
    if n == 0 || r == 0 || m == 0 {
        bail!("--clients, --recipients and --messages must be at least 1");
    }
    let interval = shape.send_interval()?;
    let dir = tempfile::tempdir()?;
    let (url, running) = match server {
        Some(u) => (u, None),
        None => {
            let mut config = ServerConfig::embedded(dir.path().join("server"));
            config.listen = "127.0.0.1:0".parse()?;
            config.limits = bench_limits();
            let s = haven_server::start(config).await?;
            (s.url(false), Some(s))
        }
    };
    let tag: u32 = rand_u32();
    eprintln!("setting up {n} senders and {r} recipients on {url} …");
    let mut recipients = Vec::new();
    let mut names = Vec::new();
    for i in 0..r {
        let name = UserName::new(&format!("r{tag:x}x{i}"))?;
        recipients.push(
            Client::register(
                &dir.path().join(name.as_str()),
                &url,
                &name,
                "bench",
                BENCH_BIRTH_DATE,
            )
            .await?,
        );
        names.push(name);
    }
    let mut senders = Vec::new();
    for i in 0..n {
        let name = UserName::new(&format!("s{tag:x}x{i}"))?;
        let mut c = Client::register(
            &dir.path().join(name.as_str()),
            &url,
            &name,
            "bench",
            BENCH_BIRTH_DATE,
        )
        .await?;
        c.create_group(&format!("g{i}"), &names).await?;
        senders.push(c);
    }
    for c in &mut recipients {
        c.sync().await?;
    }
    let expected = n * m;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n * m * r)));
    let start = Instant::now();
    let cpu_start = process_cpu_seconds();
    let mut tasks = Vec::new();
    for mut c in recipients {
        let lat = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0usize;
            let mut stream = c.push_stream().await?;
            let mut local = Vec::with_capacity(expected);
            while got < expected {
                let batch = match tokio::time::timeout(
                    Duration::from_secs(60),
                    stream.next_batch(haven_client::PUSH_BATCH, linger),
                )
                .await
                {
                    Ok(Ok(b)) if b.is_empty() => bail!("server closed the stream"),
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => bail!("timed out with {got} of {expected} messages"),
                };
                for e in c.on_pushed(&mut stream, &batch).await? {
                    if let Event::Message { message, .. } = e {
                        local.push(now_ms().saturating_sub(message.sent_at) as f64);
                        got += 1;
                    }
                }
            }
            lat.lock().await.extend(local);
            anyhow::Ok(())
        }));
    }
    let mut send_tasks = Vec::new();
    let t0 = tokio::time::Instant::now();
    for (i, mut c) in senders.into_iter().enumerate() {
        send_tasks.push(tokio::spawn(async move {
            let to = Target::Group(format!("g{i}"));
            let mut lag = Duration::ZERO;
            for k in 0..m {
                if let Some(every) = interval {
                    // Senders are staggered across one interval so that their sends interleave.
                    let due = t0 + every.mul_f64(k as f64 + i as f64 / n as f64);
                    lag = lag.max(tokio::time::Instant::now().saturating_duration_since(due));
                    tokio::time::sleep_until(due).await;
                }
                c.send_text(&to, &format!("bench message {k}")).await?;
            }
            anyhow::Ok(lag)
        }));
    }
    let mut max_lag = Duration::ZERO;
    for t in send_tasks {
        max_lag = max_lag.max(t.await??);
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // CPU time of the whole process (server and clients) over the measured interval, or NaN
    // where /proc is not available.
    let cpu = match (cpu_start, process_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let mut lat = latencies.lock().await.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let deliveries = lat.len();
    let rate = deliveries as f64 / elapsed;
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    let cpu_us_per_delivery = cpu * 1e6 / deliveries as f64;
    if as_json {
        println!(
            "{}",
            json!({"deliveries": deliveries, "seconds": elapsed, "deliveries_per_sec": rate, "p50_ms": p50, "p99_ms": p99,
                   "cpu_seconds": cpu, "cpu_us_per_delivery": cpu_us_per_delivery,
                   "clients": n, "recipients": r, "messages": m, "linger_ms": linger.as_millis(),
                   "offered_per_sec": shape.rate, "max_send_lag_ms": max_lag.as_secs_f64() * 1e3})
        );
    } else {
        println!("{deliveries} deliveries in {elapsed:.2} s: {rate:.0} deliveries/s; latency p50 {p50:.1} ms, p99 {p99:.1} ms; {cpu_us_per_delivery:.0} µs of CPU per delivery");
        if let Some(offered) = shape.rate {
            println!(
                "offered {offered:.0} deliveries/s; senders fell behind their schedule by at most {:.1} ms",
                max_lag.as_secs_f64() * 1e3
            );
        }
    }
    if let Some(s) = running {
        s.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// User plus system CPU time of this process so far (`/proc/self/stat`, fields 14 and 15).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is parenthesised and may hold spaces: split after it.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks; 100 per second on Linux (USER_HZ).
    Some((utime + stime) / 100.0)
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    u32::from_le_bytes(b)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

async fn idle(connections: usize, as_json: bool) -> anyhow::Result<ExitCode> {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--auth-burst",
            "1000000",
            // Every bench connection comes from 127.0.0.1.
            "--max-connections-per-address",
            "1000000",
            "--data",
        ])
        .arg(dir.path().join("server"))
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("server pid")?;
    let stderr = child.stderr.take().context("server stderr")?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .context("server exited")?;
        if let Some(u) = line.strip_prefix("haven server listening on ") {
            break u.trim().to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let baseline = rss_kib(pid)?;
    eprintln!("server pid {pid} at {url}: {baseline} KiB before connections; connecting {connections} devices …");
    let mut streams = Vec::with_capacity(connections);
    let tag = rand_u32();
    for i in 0..connections {
        let mut api = Api::new(&url)?;
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let user = UserName::new(&format!("i{tag:x}x{i}"))?;
        // An idle device never joins a group: any Ed25519 key serves as its MLS key.
        let mls_key = SigningKey::from_bytes(&rand::random::<[u8; 32]>())
            .verifying_key()
            .to_bytes()
            .to_vec();
        let reg = api
            .register(&api::RegisterRequest {
                user,
                device_name: "idle".into(),
                auth_key: key.verifying_key().to_bytes().to_vec(),
                mls_key_signature: key
                    .sign(&api::mls_key_message(&mls_key))
                    .to_bytes()
                    .to_vec(),
                mls_key,
                birth_date: BENCH_BIRTH_DATE.into(),
            })
            .await?;
        let ch = api
            .challenge(&api::ChallengeRequest {
                device_id: reg.device_id.clone(),
            })
            .await?;
        let sig = key
            .sign(&api::login_message(&reg.device_id, &ch.nonce))
            .to_bytes()
            .to_vec();
        let login = api
            .login(&api::LoginRequest {
                device_id: reg.device_id,
                nonce: ch.nonce,
                signature: sig,
            })
            .await?;
        api.set_token(Some(login.token));
        streams.push(api.push_stream().await?);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let with = rss_kib(pid)?;
    let per_conn = (with.saturating_sub(baseline)) as f64 / connections as f64;
    if as_json {
        println!(
            "{}",
            json!({"connections": connections, "baseline_rss_kib": baseline, "rss_kib": with, "per_connection_kib": per_conn})
        );
    } else {
        println!(
            "{connections} idle WebSocket connections: server RSS {:.1} MiB (baseline {:.1} MiB, {per_conn:.1} KiB per connection)",
            with as f64 / 1024.0,
            baseline as f64 / 1024.0
        );
    }
    drop(streams);
    let _ = child.kill().await;
    Ok(ExitCode::SUCCESS)
}
