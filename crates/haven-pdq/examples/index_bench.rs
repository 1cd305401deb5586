//! Benchmark of the exact Hamming-range index (see `benches/index/run.sh` and the
//! "PDQ matching index" section of BENCHMARKS.md).
//!
//! ```text
//! index_bench gen  --n N --kind random|clustered --queries Q --seed S --out PREFIX
//!     writes PREFIX.data (N × 32 bytes) and PREFIX.queries (Q × 32 bytes): half the queries
//!     are members perturbed by 0–40 bits, half uniformly random non-members.
//! index_bench run  --in PREFIX [--radius 31] [--substrings M] [--check K] [--strategy auto|mih|scan]
//!     builds the index, times each query on one thread (p50/p99/mean), checks the first K
//!     queries' results against a scan, times the scan, and writes PREFIX.counts (matches per
//!     query, one per line) for the faiss script to compare.
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::Write;
use std::time::Instant;

use haven_pdq::hashlist::HashList;
use haven_pdq::index::{Index, IndexOptions, Query, SearchOptions, Strategy};
use haven_pdq::PdqHash;
use rand::{Rng, SeedableRng};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn flip(h: &mut [u8; 32], bits: usize, rng: &mut impl Rng) {
    let mut done = 0;
    let mut seen = [false; 256];
    while done < bits {
        let b = rng.gen_range(0..256usize);
        if !seen[b] {
            seen[b] = true;
            h[b / 8] ^= 1 << (b % 8);
            done += 1;
        }
    }
}

fn gen(args: &[String]) {
    let n: usize = arg(args, "--n").unwrap().parse().unwrap();
    let kind = arg(args, "--kind").unwrap_or_else(|| "random".into());
    let q: usize = arg(args, "--queries")
        .unwrap_or_else(|| "1000".into())
        .parse()
        .unwrap();
    let seed: u64 = arg(args, "--seed")
        .unwrap_or_else(|| "1".into())
        .parse()
        .unwrap();
    let out = arg(args, "--out").unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; n * 32];
    match kind.as_str() {
        "random" => rng.fill(&mut data[..]),
        "clustered" => {
            // Clusters of ~1000 near-duplicates: members 0–64 bits from their centre.
            let centres = (n / 1000).max(1);
            let cs: Vec<[u8; 32]> = (0..centres).map(|_| rng.gen()).collect();
            for chunk in data.chunks_exact_mut(32) {
                let mut h = cs[rng.gen_range(0..centres)];
                let k = rng.gen_range(0..=64);
                flip(&mut h, k, &mut rng);
                chunk.copy_from_slice(&h);
            }
        }
        other => panic!("unknown kind {other}"),
    }
    let mut queries = vec![0u8; q * 32];
    for (i, chunk) in queries.chunks_exact_mut(32).enumerate() {
        if i % 2 == 0 {
            let j = rng.gen_range(0..n);
            let mut h: [u8; 32] = data[j * 32..j * 32 + 32].try_into().unwrap();
            let k = rng.gen_range(0..=40);
            flip(&mut h, k, &mut rng);
            chunk.copy_from_slice(&h);
        } else {
            rng.fill(chunk);
        }
    }
    std::fs::write(format!("{out}.data"), &data).unwrap();
    std::fs::write(format!("{out}.queries"), &queries).unwrap();
    eprintln!("wrote {n} {kind} hashes and {q} queries to {out}.*");
}

fn hashes(bytes: &[u8]) -> Vec<PdqHash> {
    bytes
        .chunks_exact(32)
        .map(|c| PdqHash(c.try_into().unwrap()))
        .collect()
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run(args: &[String]) {
    let prefix = arg(args, "--in").unwrap();
    let radius: u32 = arg(args, "--radius")
        .unwrap_or_else(|| "31".into())
        .parse()
        .unwrap();
    let check: usize = arg(args, "--check")
        .unwrap_or_else(|| "50".into())
        .parse()
        .unwrap();
    let substrings = arg(args, "--substrings").map(|s| s.parse().unwrap());
    let rss0 = status_kb("VmRSS:");
    let data = std::fs::read(format!("{prefix}.data")).unwrap();
    let queries = hashes(&std::fs::read(format!("{prefix}.queries")).unwrap());

    let t = Instant::now();
    let list = HashList::from_hashes(hashes(&data)).unwrap();
    drop(data);
    let t_list = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let index = Index::build(
        list,
        IndexOptions {
            substrings,
            ..IndexOptions::default()
        },
    )
    .unwrap();
    let t_build = t.elapsed().as_secs_f64();
    let rss1 = status_kb("VmRSS:");
    let hwm = status_kb("VmHWM:");

    let strategy = match arg(args, "--strategy").as_deref() {
        Some("mih") => Strategy::Mih,
        Some("scan") => Strategy::Scan,
        _ => Strategy::Auto,
    };
    let opts = SearchOptions {
        radius,
        min_quality: 0,
        strategy,
        ..SearchOptions::default()
    };
    // One thread: time each query alone.
    let mut times = Vec::with_capacity(queries.len());
    let mut counts = Vec::with_capacity(queries.len());
    for q in &queries {
        let query = Query {
            hashes: std::slice::from_ref(q),
            quality: None,
        };
        let t = Instant::now();
        let r = index.search(&query, &opts);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        counts.push(r.len());
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = times.iter().sum::<f64>() / times.len() as f64;

    // Dihedral-shaped queries (8 hashes each: the query and 7 random ones).
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut times8 = Vec::new();
    for q in queries.iter().take(200) {
        let mut v = vec![*q];
        v.extend((0..7).map(|_| PdqHash(rng.gen())));
        let t = Instant::now();
        let r = index.search(
            &Query {
                hashes: &v,
                quality: None,
            },
            &opts,
        );
        times8.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(r);
    }
    times8.sort_by(|a, b| a.partial_cmp(b).unwrap());

    // Scan (brute force) on the same index, and exactness check against it.
    let scan_opts = SearchOptions {
        strategy: Strategy::Scan,
        ..opts
    };
    let mut scan_times = Vec::new();
    for (i, q) in queries.iter().take(check).enumerate() {
        let query = Query {
            hashes: std::slice::from_ref(q),
            quality: None,
        };
        let t = Instant::now();
        let s = index.search(&query, &scan_opts);
        scan_times.push(t.elapsed().as_secs_f64() * 1e3);
        let m = index.search(&query, &opts);
        assert_eq!(s, m, "query {i}: index and scan differ");
    }
    scan_times.sort_by(|a, b| a.partial_cmp(b).unwrap());

    // All cores: batch throughput.
    let qs: Vec<Query<'_>> = queries
        .iter()
        .map(|q| Query {
            hashes: std::slice::from_ref(q),
            quality: None,
        })
        .collect();
    let t = Instant::now();
    let batch = index.search_batch(&qs, &opts);
    let t_batch = t.elapsed().as_secs_f64();
    assert_eq!(batch.iter().map(Vec::len).collect::<Vec<_>>(), counts);

    let mut f = std::fs::File::create(format!("{prefix}.counts")).unwrap();
    for c in &counts {
        writeln!(f, "{c}").unwrap();
    }
    let total: usize = counts.iter().sum();
    println!(
        "haven  n={} radius={radius} strategy={:?} substrings={} list_s={t_list:.2} build_s={t_build:.2} \
         index_heap_MB={:.0} rss_after_build_MB={:.0} peak_rss_MB={:.0} \
         p50_ms={:.3} p99_ms={:.3} mean_ms={:.3} dihedral8_p50_ms={:.3} dihedral8_p99_ms={:.3} \
         scan_p50_ms={:.2} checked={} batch_qps={:.0} matches={total}",
        index.len(),
        if strategy == Strategy::Auto { index.choose(radius, 1) } else { strategy },
        index.substrings(),
        index.heap_bytes() as f64 / 1e6,
        rss1.saturating_sub(rss0) as f64 / 1e3,
        hwm as f64 / 1e3,
        pct(&sorted, 0.5),
        pct(&sorted, 0.99),
        mean,
        pct(&times8, 0.5),
        pct(&times8, 0.99),
        pct(&scan_times, 0.5),
        scan_times.len(),
        queries.len() as f64 / t_batch,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") => gen(&args),
        Some("run") => run(&args),
        _ => {
            eprintln!("usage: index_bench gen|run … (see the source)");
            std::process::exit(2);
        }
    }
}
