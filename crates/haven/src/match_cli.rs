//! `haven match` and `haven hashlist`: match images or hashes against a hash list, and build and
//! inspect hash-list snapshots. A thin shell over `haven_pdq::{hashlist, index}`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use haven_pdq::hashlist::{self, snapshot, HashList, InvalidLinePolicy};
use haven_pdq::index::{Index, IndexOptions, Match, Query, SearchOptions};
use haven_pdq::PdqHash;
use rayon::prelude::*;

/// What to do with an invalid line of a hash list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnInvalid {
    /// Report it on stderr with its line number and go on.
    Skip,
    /// Stop with an error naming the line.
    Fail,
}

impl From<OnInvalid> for InvalidLinePolicy {
    fn from(v: OnInvalid) -> Self {
        match v {
            OnInvalid::Skip => InvalidLinePolicy::Skip,
            OnInvalid::Fail => InvalidLinePolicy::Fail,
        }
    }
}

#[derive(clap::Args)]
pub struct MatchArgs {
    /// Hash list to match against (hex lines or CSV `hash,label[,…]`).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "index",
        conflicts_with = "index"
    )]
    pub list: Option<PathBuf>,
    /// Hash-list snapshot built by `haven hashlist build`.
    #[arg(long, value_name = "SNAPSHOT")]
    pub index: Option<PathBuf>,
    /// Largest Hamming distance that counts as a match (0–256).
    #[arg(long, default_value_t = haven_pdq::index::DEFAULT_RADIUS, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub radius: u32,
    /// Match all eight dihedral variants of image inputs (hash inputs are matched as given).
    #[arg(long)]
    pub dihedral: bool,
    /// Hashes of known quality below this are not matched: image inputs, and list entries with
    /// a quality column (unless --keep-low-quality-entries).
    #[arg(long, default_value_t = haven_pdq::index::DEFAULT_MIN_QUALITY, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub min_quality: u8,
    /// Match list entries whatever their quality (the query's quality is still checked).
    #[arg(long)]
    pub keep_low_quality_entries: bool,
    /// Print one JSON object per match (JSON Lines) instead of CSV.
    #[arg(long)]
    pub json: bool,
    /// Read further inputs from FILE, one per line (blank lines and `#` comments skipped).
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,
    /// What to do with invalid lines in --list.
    #[arg(long, value_enum, default_value_t = OnInvalid::Skip)]
    pub on_invalid: OnInvalid,
    /// Image paths or 64-hex-digit hashes (an input that parses as a hash is a hash).
    pub inputs: Vec<String>,
}

#[derive(clap::Args)]
pub struct HashlistArgs {
    #[command(subcommand)]
    pub command: HashlistCommand,
}

#[derive(clap::Subcommand)]
pub enum HashlistCommand {
    /// Parse a hash list (hex lines or CSV) and write a checksummed binary snapshot.
    Build {
        /// The hash list.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Where to write the snapshot (written to a temporary file, then renamed).
        #[arg(long = "out", value_name = "SNAPSHOT")]
        output: PathBuf,
        /// What to do with invalid lines.
        #[arg(long, value_enum, default_value_t = OnInvalid::Skip)]
        on_invalid: OnInvalid,
    },
    /// Check a snapshot (header and checksum) and print what it holds.
    Info {
        /// The snapshot.
        snapshot: PathBuf,
    },
}

/// Reads and parses a hash list, reporting invalid lines on stderr.
fn load_list(path: &Path, policy: InvalidLinePolicy) -> anyhow::Result<HashList> {
    let file = File::open(path).with_context(|| format!("opening hash list {}", path.display()))?;
    let outcome = hashlist::parse_list(BufReader::with_capacity(1 << 20, file), policy)
        .with_context(|| format!("hash list {}", path.display()))?;
    for bad in &outcome.invalid {
        eprintln!("haven: {}: skipped {bad}", path.display());
    }
    let unreported = outcome
        .invalid_count
        .saturating_sub(outcome.invalid.len() as u64);
    if unreported > 0 {
        eprintln!(
            "haven: {}: {unreported} more invalid lines skipped",
            path.display()
        );
    }
    if outcome.invalid_count > 0 || outcome.duplicates > 0 {
        eprintln!(
            "haven: {}: {} entries ({} invalid lines skipped, {} duplicates merged)",
            path.display(),
            outcome.list.len(),
            outcome.invalid_count,
            outcome.duplicates
        );
    }
    Ok(outcome.list)
}

/// Reads a snapshot file, checking its header's implied length against the file's before
/// reading the body.
fn load_snapshot(path: &Path) -> anyhow::Result<HashList> {
    let mut file =
        File::open(path).with_context(|| format!("opening snapshot {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut header = Vec::new();
    (&mut file).take(48).read_to_end(&mut header)?;
    let (_, total) =
        snapshot::read_info(&header).with_context(|| format!("snapshot {}", path.display()))?;
    if total != len {
        anyhow::bail!(
            "snapshot {}: {}",
            path.display(),
            snapshot::SnapshotError::Length {
                expected: total,
                actual: len
            }
        );
    }
    let mut bytes = header;
    bytes.reserve_exact(usize::try_from(len)?.saturating_sub(bytes.len()));
    file.read_to_end(&mut bytes)?;
    snapshot::from_bytes(&bytes).with_context(|| format!("snapshot {}", path.display()))
}

/// One resolved input: its hashes (one, or eight dihedral variants) and quality if known.
struct Resolved {
    hashes: Vec<PdqHash>,
    quality: Option<u8>,
}

/// An input is a hash when it parses as 64 hex digits, otherwise an image path.
fn resolve(input: &str, dihedral: bool) -> anyhow::Result<Resolved> {
    if let Ok(h) = input.parse::<PdqHash>() {
        return Ok(Resolved {
            hashes: vec![h],
            quality: None,
        });
    }
    hash_image(Path::new(input), dihedral)
}

/// Hashes an image file (its hash and quality, or its eight dihedral variants).
fn hash_image(path: &Path, dihedral: bool) -> anyhow::Result<Resolved> {
    let limits = haven_pdq::decode::Limits::default();
    if dihedral {
        let r = haven_pdq::decode::hash_file_dihedral(path, &limits)?;
        Ok(Resolved {
            hashes: r.hashes.to_vec(),
            quality: Some(r.quality),
        })
    } else {
        let r = haven_pdq::decode::hash_file(path, &limits)?;
        Ok(Resolved {
            hashes: vec![r.hash],
            quality: Some(r.quality),
        })
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

fn print_match(
    out: &mut impl Write,
    json: bool,
    input: &str,
    list: &HashList,
    m: &Match,
) -> std::io::Result<()> {
    let hash = list.hash(m.id).map(|h| h.to_string()).unwrap_or_default();
    let labels: Vec<&str> = list.labels(m.id).collect();
    if json {
        let v = serde_json::json!({
            "input": input,
            "matched_hash": hash,
            "distance": m.distance,
            "labels": labels,
            "quality": list.quality(m.id),
        });
        writeln!(out, "{v}")
    } else {
        writeln!(
            out,
            "{},{},{},{}",
            csv_field(input),
            hash,
            m.distance,
            csv_field(&labels.join(";"))
        )
    }
}

pub fn match_cmd(args: MatchArgs) -> anyhow::Result<ExitCode> {
    let mut inputs = args.inputs.clone();
    if let Some(path) = &args.queries {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading queries {}", path.display()))?;
        inputs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    if inputs.is_empty() {
        anyhow::bail!("no inputs: give image paths or hashes, or --queries FILE");
    }
    let list = match (&args.list, &args.index) {
        (Some(path), _) => load_list(path, args.on_invalid.into())?,
        (None, Some(path)) => load_snapshot(path)?,
        (None, None) => anyhow::bail!("give --list FILE or --index SNAPSHOT"),
    };
    let index = Index::build(list, IndexOptions::default())?;

    let resolved: Vec<anyhow::Result<Resolved>> = inputs
        .par_iter()
        .map(|i| resolve(i, args.dihedral))
        .collect();
    let opts = SearchOptions {
        radius: args.radius,
        min_quality: args.min_quality,
        filter_list_quality: !args.keep_low_quality_entries,
        ..SearchOptions::default()
    };
    let queries: Vec<Option<Query<'_>>> = resolved
        .iter()
        .map(|r| {
            r.as_ref().ok().map(|r| Query {
                hashes: &r.hashes,
                quality: r.quality,
            })
        })
        .collect();
    let results: Vec<Vec<Match>> = queries
        .par_iter()
        .map(|q| {
            q.as_ref()
                .map(|q| index.search(q, &opts))
                .unwrap_or_default()
        })
        .collect();

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut failed = 0usize;
    for ((input, r), matches) in inputs.iter().zip(&resolved).zip(&results) {
        match r {
            Err(e) => {
                failed += 1;
                eprintln!("haven: {input}: {e:#}");
            }
            Ok(r) => {
                if let Some(q) = r.quality.filter(|&q| q < args.min_quality) {
                    eprintln!(
                        "haven: {input}: quality {q} is below --min-quality {}, not matched",
                        args.min_quality
                    );
                }
                for m in matches {
                    print_match(&mut out, args.json, input, index.list(), m)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// failure never leaves a half-written snapshot under the final name.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("snapshot path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> anyhow::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing snapshot {}", path.display()))
}

pub fn hashlist(args: HashlistArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        HashlistCommand::Build {
            input,
            output,
            on_invalid,
        } => {
            let list = load_list(&input, on_invalid.into())?;
            let bytes = snapshot::to_bytes(&list);
            write_atomically(&output, &bytes)?;
            println!(
                "{}: {} entries, {} labels, {} label references, {} with known quality, {} bytes",
                output.display(),
                list.len(),
                list.label_count(),
                list.label_ref_count(),
                list.known_quality_count(),
                bytes.len()
            );
        }
        HashlistCommand::Info { snapshot: path } => {
            let list = load_snapshot(&path)?;
            let len = std::fs::metadata(&path)?.len();
            println!("snapshot: {}", path.display());
            println!("format version: {}", snapshot::VERSION);
            println!("bytes: {len}");
            println!("checksum: ok (SHA-256)");
            println!("entries: {}", list.len());
            println!("labels: {}", list.label_count());
            println!("label references: {}", list.label_ref_count());
            println!("entries with known quality: {}", list.known_quality_count());
        }
    }
    Ok(ExitCode::SUCCESS)
}
