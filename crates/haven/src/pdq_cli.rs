//! `haven hash`: PDQ hashes of image files, in the reference tool's `hash,quality,path` format.
//!
//! Inputs are hashed in parallel (a rayon pool of `--jobs` threads) in batches, and each batch
//! is printed in input order, so output order never depends on scheduling. A file that cannot
//! be hashed gets a line on stderr and the run goes on; the exit code is 1 if any failed.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use haven_pdq::decode::{Limits, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS};
use haven_pdq::{hash_file, hash_file_dihedral, DecodeError, DihedralResult, PdqResult};
use rayon::prelude::*;

/// Extensions picked up when walking a directory (files named explicitly are always tried, and
/// the format is always sniffed from the content).
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "bmp", "dib", "tif", "tiff", "pnm", "ppm",
    "pgm", "pbm", "pam",
];

#[derive(clap::Args)]
pub struct HashArgs {
    /// Image files or directories (walked recursively in sorted order; only files with image
    /// extensions are taken from directories).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print the eight dihedral hashes per image: `pdq_hex,quality,path,variant`.
    #[arg(long)]
    pub dihedral: bool,
    /// One JSON object per line instead of CSV.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Refuse images with more pixels than this (checked from the header, before decoding).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Refuse files larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_BYTES)]
    pub max_file_bytes: u64,
}

enum Outcome {
    Plain(PdqResult),
    Dihedral(Box<DihedralResult>),
}

pub fn hash(args: HashArgs) -> anyhow::Result<ExitCode> {
    let limits = Limits {
        max_file_bytes: args.max_file_bytes,
        max_pixels: args.max_pixels,
    };
    let mut failures = 0usize;
    let mut files = Vec::new();
    for p in &args.paths {
        collect(p, true, &mut files, &mut failures);
    }

    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.jobs {
        anyhow::ensure!(n >= 1, "--jobs must be at least 1");
        builder = builder.num_threads(n);
    }
    let pool = builder.build()?;
    let threads = pool.current_num_threads();

    let done = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start(files.len(), Arc::clone(&done));

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let batch = (threads * 32).max(64);
    for chunk in files.chunks(batch) {
        let results: Vec<Result<Outcome, DecodeError>> = pool.install(|| {
            chunk
                .par_iter()
                .map(|path| {
                    let r = if args.dihedral {
                        hash_file_dihedral(path, &limits).map(|d| Outcome::Dihedral(Box::new(d)))
                    } else {
                        hash_file(path, &limits).map(Outcome::Plain)
                    };
                    done.fetch_add(1, Ordering::Relaxed);
                    r
                })
                .collect()
        });
        for (path, r) in chunk.iter().zip(results) {
            match r {
                Ok(o) => print_outcome(&mut out, path, &o, args.json)?,
                Err(e) => {
                    out.flush()?;
                    progress.clear_line();
                    eprintln!("haven: {}: {e}", path.display());
                    failures += 1;
                }
            }
        }
        out.flush()?;
    }
    progress.finish();

    Ok(if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_outcome(out: &mut impl Write, path: &Path, o: &Outcome, json: bool) -> anyhow::Result<()> {
    let p = path.display().to_string();
    match (o, json) {
        (Outcome::Plain(r), false) => writeln!(out, "{},{},{}", r.hash, r.quality, p)?,
        (Outcome::Plain(r), true) => {
            let v = serde_json::json!({"path": p, "pdq": r.hash.to_hex(), "quality": r.quality});
            writeln!(out, "{v}")?;
        }
        (Outcome::Dihedral(d), false) => {
            for (variant, h) in d.iter() {
                writeln!(out, "{},{},{},{}", h, d.quality, p, variant.name())?;
            }
        }
        (Outcome::Dihedral(d), true) => {
            let variants: Vec<_> = d
                .iter()
                .map(|(v, h)| serde_json::json!({"variant": v.name(), "pdq": h.to_hex()}))
                .collect();
            let v = serde_json::json!({"path": p, "quality": d.quality, "dihedral": variants});
            writeln!(out, "{v}")?;
        }
    }
    Ok(())
}

/// Appends `path` (a file) or the image files under it (a directory, walked in sorted order)
/// to `files`; entries that cannot be read get an error line and count as failures. Symbolic
/// links to directories are not followed inside a walk.
fn collect(path: &Path, top: bool, files: &mut Vec<PathBuf>, failures: &mut usize) {
    let meta = if top {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    let fail = |e: std::io::Error, failures: &mut usize| {
        eprintln!("haven: {}: {e}", path.display());
        *failures += 1;
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => return fail(e, failures),
    };
    if meta.is_dir() {
        let entries: std::io::Result<Vec<PathBuf>> =
            std::fs::read_dir(path).and_then(|rd| rd.map(|e| e.map(|e| e.path())).collect());
        match entries {
            Ok(mut entries) => {
                entries.sort();
                for e in entries {
                    collect(&e, false, files, failures);
                }
            }
            Err(e) => fail(e, failures),
        }
        return;
    }
    let is_file = meta.is_file() || (meta.is_symlink() && path.is_file());
    if top || (is_file && has_image_extension(path)) {
        files.push(path.to_path_buf());
    }
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        .unwrap_or(false)
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal and the run has
/// lasted more than half a second.
struct Progress {
    stop: Arc<AtomicBool>,
    drawn: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(total: usize, done: Arc<AtomicUsize>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let drawn = Arc::new(AtomicBool::new(false));
        let thread = (std::io::stderr().is_terminal() && total > 1).then(|| {
            let (stop, drawn) = (Arc::clone(&stop), Arc::clone(&drawn));
            std::thread::spawn(move || {
                let t0 = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if t0.elapsed() < Duration::from_millis(500) {
                        continue;
                    }
                    let n = done.load(Ordering::Relaxed).min(total);
                    let width = 30;
                    let filled = n * width / total.max(1);
                    let rate = n as f64 / t0.elapsed().as_secs_f64();
                    eprint!(
                        "\r[{}{}] {n}/{total} images, {rate:.0}/s ",
                        "#".repeat(filled),
                        " ".repeat(width - filled)
                    );
                    drawn.store(true, Ordering::Relaxed);
                }
            })
        });
        Progress {
            stop,
            drawn,
            thread,
        }
    }

    fn clear_line(&self) {
        if self.drawn.load(Ordering::Relaxed) {
            eprint!("\r\x1b[2K");
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.clear_line();
    }
}
