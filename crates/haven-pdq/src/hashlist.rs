//! Hash lists: parsing the text and CSV forms that hash-sharing programmes exchange, merging
//! duplicates, and a compact binary snapshot ([`snapshot`]) for loading large lists fast.
//!
//! # Text forms
//!
//! One entry per line. Blank lines and lines starting with `#` are ignored. A line is either a
//! bare 64-hex-digit hash or a CSV record (RFC 4180 quoting within the line) whose columns are
//! `hash,label[,…]`. The first record is a header when its first field is one of `hash`, `pdq`,
//! `pdq_hash`, `pdq_hex` or `hex` (case-insensitive); a header names the columns, and then the
//! hash comes from the column so named, the label from a column named `label` (or `labels`,
//! `category`, `tag`), and the quality from a column named `quality` (an integer 0–100). Without
//! a header the hash is the first column, the label the second, and further columns are ignored
//! — in particular the quality is only ever read from a column headed `quality`, never guessed
//! (the reference tool's `hash,quality,path` lines would otherwise turn paths into labels or
//! numbers into qualities).
//!
//! An invalid line (bad hash, bad quality, bad quoting, a line over [`MAX_LINE_BYTES`] or not
//! UTF-8) is reported with its 1-based line number and either skipped or fatal, as
//! [`InvalidLinePolicy`] says. Duplicate hashes are merged into one entry: their label sets are
//! combined and the highest known quality is kept.
//!
//! # In memory
//!
//! A [`HashList`] keeps the hashes as `[u64; 4]` words (the hot data of the matching index),
//! qualities as one byte each ([`NO_QUALITY`] when unknown), and labels as a deduplicated string
//! table referenced from a compressed-sparse-row array, so ten million unlabelled entries cost
//! about 360 MB and labels cost 4 bytes per reference plus each distinct string once.

pub mod snapshot;

use std::collections::HashMap;
use std::io::BufRead;

use crate::PdqHash;

/// Quality byte meaning "quality not known" (a list without a `quality` column).
pub const NO_QUALITY: u8 = u8::MAX;
/// Longest accepted input line, in bytes (bounds memory on hostile input).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest accepted label, in bytes.
pub const MAX_LABEL_BYTES: usize = 4096;
/// Most entries a list may hold (entry ids are packed into 28 bits inside the index).
pub const MAX_ENTRIES: usize = 1 << 28;
/// Invalid lines kept for reporting; further ones are only counted.
pub const MAX_REPORTED_INVALID: usize = 1000;

/// What to do with an invalid line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidLinePolicy {
    /// Report it and go on.
    #[default]
    Skip,
    /// Stop with [`ParseError::InvalidLine`].
    Fail,
}

/// Why one line of a list is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    /// The hash field is not 64 hex digits.
    #[error("invalid hash: {0}")]
    Hash(#[from] crate::ParseHashError),
    /// The quality field is not an integer 0–100.
    #[error("invalid quality {0:?} (expected an integer 0-100)")]
    Quality(String),
    /// An unterminated or misplaced double quote.
    #[error("malformed CSV quoting")]
    Quoting,
    /// The line has fewer columns than the header's hash/label/quality columns need.
    #[error("missing column {0:?}")]
    MissingColumn(&'static str),
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("line longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    /// A label longer than [`MAX_LABEL_BYTES`].
    #[error("label longer than {MAX_LABEL_BYTES} bytes")]
    LabelTooLong,
    /// Not valid UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
}

/// An invalid line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLine {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub problem: LineProblem,
}

impl std::fmt::Display for InvalidLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// Why a list could not be parsed at all.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Reading failed.
    #[error("reading the hash list: {0}")]
    Io(#[from] std::io::Error),
    /// An invalid line under [`InvalidLinePolicy::Fail`].
    #[error("{0}")]
    InvalidLine(InvalidLine),
    /// More than [`MAX_ENTRIES`] distinct hashes, or more than `u32::MAX` labels or
    /// (entry, label) pairs.
    #[error("hash list has more than {MAX_ENTRIES} distinct hashes or too many labels")]
    TooManyEntries,
    /// A label longer than [`MAX_LABEL_BYTES`] given to [`HashListBuilder::add`].
    #[error("label longer than {MAX_LABEL_BYTES} bytes")]
    LabelTooLong,
}

/// A parsed list and what was wrong with it.
#[derive(Debug)]
pub struct ParseOutcome {
    /// The distinct entries.
    pub list: HashList,
    /// The first [`MAX_REPORTED_INVALID`] invalid lines (all skipped).
    pub invalid: Vec<InvalidLine>,
    /// How many invalid lines there were in all.
    pub invalid_count: u64,
    /// How many valid lines named a hash already seen (merged into its entry).
    pub duplicates: u64,
}

/// A deduplicated list of PDQ hashes with optional qualities and labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HashList {
    pub(crate) words: Vec<[u64; 4]>,
    pub(crate) quality: Vec<u8>,
    /// `label_start[i]..label_start[i + 1]` indexes `label_refs` for entry `i`; length `len + 1`.
    pub(crate) label_start: Vec<u32>,
    pub(crate) label_refs: Vec<u32>,
    pub(crate) labels: Vec<String>,
}

impl HashList {
    /// Number of distinct hashes.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The hash of entry `id`, if it exists.
    pub fn hash(&self, id: u32) -> Option<PdqHash> {
        self.words.get(id as usize).map(|w| PdqHash::from_words(*w))
    }

    /// The quality of entry `id`, if it exists and is known.
    pub fn quality(&self, id: u32) -> Option<u8> {
        self.quality
            .get(id as usize)
            .copied()
            .filter(|&q| q != NO_QUALITY)
    }

    /// The labels of entry `id` (empty when it has none or does not exist).
    pub fn labels(&self, id: u32) -> impl Iterator<Item = &str> + '_ {
        let i = id as usize;
        let range = match (self.label_start.get(i), self.label_start.get(i + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        };
        self.label_refs
            .get(range)
            .unwrap_or_default()
            .iter()
            .filter_map(|&l| self.labels.get(l as usize).map(String::as_str))
    }

    /// Number of distinct label strings.
    pub fn label_count(&self) -> usize {
        self.labels.len()
    }

    /// Number of (entry, label) pairs.
    pub fn label_ref_count(&self) -> usize {
        self.label_refs.len()
    }

    /// Number of entries whose quality is known.
    pub fn known_quality_count(&self) -> usize {
        self.quality.iter().filter(|&&q| q != NO_QUALITY).count()
    }

    /// Bytes of heap memory held (approximately).
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * 32
            + self.quality.capacity()
            + self.label_start.capacity() * 4
            + self.label_refs.capacity() * 4
            + self.labels.iter().map(|s| s.capacity() + 24).sum::<usize>()
    }

    /// Builds a list from hashes alone (no labels, unknown quality), merging duplicates.
    pub fn from_hashes(hashes: impl IntoIterator<Item = PdqHash>) -> Result<HashList, ParseError> {
        let mut b = HashListBuilder::new();
        for h in hashes {
            b.add(h, None, std::iter::empty::<&str>())?;
        }
        Ok(b.finish())
    }

    /// The hashes' words, indexed by entry id.
    pub(crate) fn words(&self) -> &[[u64; 4]] {
        &self.words
    }

    /// Quality bytes, indexed by entry id ([`NO_QUALITY`] when unknown).
    pub(crate) fn quality_bytes(&self) -> &[u8] {
        &self.quality
    }
}

/// Builds a [`HashList`] entry by entry, merging duplicates.
#[derive(Debug, Default)]
pub struct HashListBuilder {
    ids: HashMap<[u64; 4], u32>,
    words: Vec<[u64; 4]>,
    quality: Vec<u8>,
    /// The first label of each entry, or `u32::MAX` for none.
    first_label: Vec<u32>,
    /// Second and further labels, for the few entries that have them.
    more_labels: HashMap<u32, Vec<u32>>,
    label_ids: HashMap<String, u32>,
    labels: Vec<String>,
    duplicates: u64,
    /// (entry, label) pairs so far, bounded by `u32::MAX` (the CSR offsets are u32).
    refs: u64,
}

const NO_LABEL: u32 = u32::MAX;

impl HashListBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many added hashes were merged into an earlier entry.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Adds one hash with its quality and labels; a hash seen before is merged into its entry.
    pub fn add<'a>(
        &mut self,
        hash: PdqHash,
        quality: Option<u8>,
        labels: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ParseError> {
        // Check everything before changing anything, so a rejected add leaves no trace.
        let labels: Vec<&str> = labels
            .into_iter()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if labels.iter().any(|l| l.len() > MAX_LABEL_BYTES) {
            return Err(ParseError::LabelTooLong);
        }
        let w = hash.words();
        let id = match self.ids.get(&w) {
            Some(&id) => {
                self.duplicates += 1;
                id
            }
            None => {
                if self.words.len() >= MAX_ENTRIES {
                    return Err(ParseError::TooManyEntries);
                }
                let id = u32::try_from(self.words.len()).map_err(|_| ParseError::TooManyEntries)?;
                self.ids.insert(w, id);
                self.words.push(w);
                self.quality.push(NO_QUALITY);
                self.first_label.push(NO_LABEL);
                id
            }
        };
        if let (Some(q), Some(slot)) = (quality, self.quality.get_mut(id as usize)) {
            let q = q.min(100);
            if *slot == NO_QUALITY || q > *slot {
                *slot = q;
            }
        }
        for label in labels {
            let lid = match self.label_ids.get(label) {
                Some(&l) => l,
                None => {
                    let l =
                        u32::try_from(self.labels.len()).map_err(|_| ParseError::TooManyEntries)?;
                    self.label_ids.insert(label.to_owned(), l);
                    self.labels.push(label.to_owned());
                    l
                }
            };
            let Some(first) = self.first_label.get_mut(id as usize) else {
                continue;
            };
            let added = if *first == NO_LABEL {
                *first = lid;
                true
            } else if *first != lid {
                let more = self.more_labels.entry(id).or_default();
                let new = !more.contains(&lid);
                if new {
                    more.push(lid);
                }
                new
            } else {
                false
            };
            if added {
                self.refs += 1;
                if self.refs > u64::from(u32::MAX) {
                    return Err(ParseError::TooManyEntries);
                }
            }
        }
        Ok(())
    }

    /// The finished list (entries in order of first appearance).
    pub fn finish(mut self) -> HashList {
        self.ids = HashMap::new();
        self.words.shrink_to_fit();
        self.quality.shrink_to_fit();
        let n = self.words.len();
        let mut label_start = Vec::with_capacity(n + 1);
        let mut label_refs = Vec::new();
        label_start.push(0u32);
        for (id, &first) in self.first_label.iter().enumerate() {
            if first != NO_LABEL {
                label_refs.push(first);
                if let Some(more) = u32::try_from(id)
                    .ok()
                    .and_then(|i| self.more_labels.get(&i))
                {
                    label_refs.extend_from_slice(more);
                }
            }
            // `add` keeps the number of references within u32.
            label_start.push(u32::try_from(label_refs.len()).unwrap_or(u32::MAX));
        }
        label_refs.shrink_to_fit();
        HashList {
            words: self.words,
            quality: self.quality,
            label_start,
            label_refs,
            labels: self.labels,
        }
    }
}

/// Which columns of a CSV record hold what.
#[derive(Debug, Clone, Copy)]
struct Columns {
    hash: usize,
    label: Option<usize>,
    quality: Option<usize>,
}

const DEFAULT_COLUMNS: Columns = Columns {
    hash: 0,
    label: Some(1),
    quality: None,
};

fn header_columns(fields: &[String]) -> Option<Columns> {
    let lower: Vec<String> = fields
        .iter()
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    let first = lower.first()?;
    if !matches!(
        first.as_str(),
        "hash" | "pdq" | "pdq_hash" | "pdq_hex" | "hex"
    ) {
        return None;
    }
    let find = |names: &[&str]| lower.iter().position(|f| names.contains(&f.as_str()));
    Some(Columns {
        hash: 0,
        label: find(&["label", "labels", "category", "tag"]),
        quality: find(&["quality"]),
    })
}

/// Splits one CSV line into fields (RFC 4180 quoting, no embedded newlines).
fn split_csv(line: &str) -> Result<Vec<String>, LineProblem> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                cur.push(c);
            }
        } else {
            match c {
                ',' => {
                    fields.push(std::mem::take(&mut cur));
                    was_quoted = false;
                }
                '"' if cur.trim().is_empty() && !was_quoted => {
                    cur.clear();
                    in_quotes = true;
                    was_quoted = true;
                }
                '"' => return Err(LineProblem::Quoting),
                _ if was_quoted && !c.is_whitespace() => return Err(LineProblem::Quoting),
                _ => cur.push(c),
            }
        }
    }
    if in_quotes {
        return Err(LineProblem::Quoting);
    }
    fields.push(cur);
    Ok(fields)
}

fn parse_quality(s: &str) -> Result<Option<u8>, LineProblem> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u8>() {
        Ok(q) if q <= 100 => Ok(Some(q)),
        _ => Err(LineProblem::Quality(s.chars().take(32).collect())),
    }
}

/// Parses a hash list (see the module docs for the forms accepted).
pub fn parse_list<R: BufRead>(
    mut reader: R,
    policy: InvalidLinePolicy,
) -> Result<ParseOutcome, ParseError> {
    let mut builder = HashListBuilder::new();
    let mut invalid = Vec::new();
    let mut invalid_count = 0u64;
    let mut columns: Option<Columns> = None;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX) + 1;
        let n = std::io::Read::take(&mut reader, limit).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let result = if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
            // Skip the rest of the over-long line so the next read starts on a new line.
            loop {
                let mut rest = Vec::new();
                let m = std::io::Read::take(&mut reader, limit).read_until(b'\n', &mut rest)?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            Err(LineProblem::TooLong)
        } else {
            match std::str::from_utf8(&buf) {
                Ok(text) => parse_line(text, &mut columns, &mut builder),
                Err(_) => Err(LineProblem::NotUtf8),
            }
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(fatal)) => return Err(fatal),
            Err(problem) => {
                let bad = InvalidLine {
                    line: line_no,
                    problem,
                };
                if policy == InvalidLinePolicy::Fail {
                    return Err(ParseError::InvalidLine(bad));
                }
                invalid_count += 1;
                if invalid.len() < MAX_REPORTED_INVALID {
                    invalid.push(bad);
                }
            }
        }
    }
    let duplicates = builder.duplicates();
    Ok(ParseOutcome {
        list: builder.finish(),
        invalid,
        invalid_count,
        duplicates,
    })
}

/// Parses one line: `Err` is a problem with the line, `Ok(Err)` a fatal error for the whole list.
fn parse_line(
    text: &str,
    columns: &mut Option<Columns>,
    builder: &mut HashListBuilder,
) -> Result<Result<(), ParseError>, LineProblem> {
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(Ok(()));
    }
    if !text.contains(',') && !text.contains('"') {
        // A header may only be the first record.
        if columns.is_none() {
            if let Some(h) = header_columns(&[text.to_owned()]) {
                *columns = Some(h);
                return Ok(Ok(()));
            }
        }
        columns.get_or_insert(DEFAULT_COLUMNS);
        let hash: PdqHash = text.parse()?;
        return Ok(builder.add(hash, None, std::iter::empty::<&str>()));
    }
    let fields = split_csv(text)?;
    let cols = match *columns {
        Some(c) => c,
        None => {
            // The first record: a header, or the default layout from here on.
            if let Some(h) = header_columns(&fields) {
                *columns = Some(h);
                return Ok(Ok(()));
            }
            *columns.insert(DEFAULT_COLUMNS)
        }
    };
    let hash_field = fields
        .get(cols.hash)
        .ok_or(LineProblem::MissingColumn("hash"))?;
    let hash: PdqHash = hash_field.trim().parse()?;
    let quality = match cols.quality {
        Some(i) => parse_quality(fields.get(i).ok_or(LineProblem::MissingColumn("quality"))?)?,
        None => None,
    };
    let label = cols.label.and_then(|i| fields.get(i)).map(|s| s.trim());
    if label.is_some_and(|l| l.len() > MAX_LABEL_BYTES) {
        return Err(LineProblem::LabelTooLong);
    }
    Ok(builder.add(hash, quality, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn parse(text: &str, policy: InvalidLinePolicy) -> Result<ParseOutcome, ParseError> {
        parse_list(text.as_bytes(), policy)
    }

    #[test]
    fn plain_hex_lines_with_blank_and_comment() {
        let text = format!("# a comment\n{}\n\n{}\r\n{}\n", h('a'), h('b'), h('A'));
        let out = parse(&text, InvalidLinePolicy::Fail).unwrap();
        assert_eq!(out.list.len(), 2, "upper-case hex is the same hash");
        assert_eq!(out.duplicates, 1);
        assert_eq!(out.list.hash(0).unwrap().to_string(), h('a'));
        assert_eq!(out.list.labels(0).count(), 0);
        assert_eq!(out.list.quality(0), None);
    }

    #[test]
    fn csv_with_header_labels_quality_and_merging() {
        let text = format!(
            "hash,label,quality\n{a},cat one,90\n{b},\"dog, quoted\",40\n{a},cat two,95\n{a},cat one,10\n",
            a = h('1'),
            b = h('2')
        );
        let out = parse(&text, InvalidLinePolicy::Fail).unwrap();
        let l = &out.list;
        assert_eq!(l.len(), 2);
        assert_eq!(out.duplicates, 2);
        assert_eq!(l.labels(0).collect::<Vec<_>>(), vec!["cat one", "cat two"]);
        assert_eq!(l.labels(1).collect::<Vec<_>>(), vec!["dog, quoted"]);
        assert_eq!(l.quality(0), Some(95), "highest known quality kept");
        assert_eq!(l.quality(1), Some(40));
        assert_eq!(l.label_count(), 3);
    }

    #[test]
    fn csv_without_header_ignores_extra_columns() {
        let text = format!("{},lbl,77,extra\n", h('c'));
        let out = parse(&text, InvalidLinePolicy::Fail).unwrap();
        assert_eq!(out.list.labels(0).collect::<Vec<_>>(), vec!["lbl"]);
        assert_eq!(
            out.list.quality(0),
            None,
            "quality only from a quality column"
        );
    }

    #[test]
    fn header_with_columns_in_other_order() {
        let text = format!(
            "pdq_hex,quality,path,category\n{},60,/x.jpg,known\n",
            h('d')
        );
        let out = parse(&text, InvalidLinePolicy::Fail).unwrap();
        assert_eq!(out.list.quality(0), Some(60));
        assert_eq!(out.list.labels(0).collect::<Vec<_>>(), vec!["known"]);
    }

    #[test]
    fn invalid_lines_reported_with_numbers_and_skipped() {
        let text = format!(
            "{}\nnot a hash\n{},x\n{}0\n{},\"unterminated\n",
            h('a'),
            h('b'),
            h('c'),
            h('e')
        );
        let out = parse(&text, InvalidLinePolicy::Skip).unwrap();
        assert_eq!(out.list.len(), 2);
        assert_eq!(out.invalid_count, 3);
        let lines: Vec<u64> = out.invalid.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![2, 4, 5]);
        assert!(matches!(out.invalid[2].problem, LineProblem::Quoting));
        let err = parse(&text, InvalidLinePolicy::Fail).unwrap_err();
        match err {
            ParseError::InvalidLine(bad) => {
                assert_eq!(bad.line, 2);
                assert!(bad.to_string().starts_with("line 2: invalid hash"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn builder_rejects_overlong_label() {
        let mut b = HashListBuilder::new();
        let long = "x".repeat(MAX_LABEL_BYTES + 1);
        let err = b.add(PdqHash::ZERO, None, [long.as_str()]).unwrap_err();
        assert!(matches!(err, ParseError::LabelTooLong));
        b.add(PdqHash::ZERO, None, ["ok", "ok", "second"]).unwrap();
        assert_eq!(b.duplicates(), 0, "the rejected add left no entry behind");
        let l = b.finish();
        assert_eq!(l.labels(0).collect::<Vec<_>>(), vec!["ok", "second"]);
        assert_eq!(l.label_ref_count(), 2);
    }

    #[test]
    fn bad_quality_and_long_line_and_non_utf8() {
        let mut text = format!("hash,quality\n{},101\n", h('a')).into_bytes();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        text.push(b'\n');
        text.extend_from_slice(b"\xff\xfe\n");
        text.extend_from_slice(format!("{},5\n", h('b')).as_bytes());
        let out = parse_list(&text[..], InvalidLinePolicy::Skip).unwrap();
        let problems: Vec<(u64, &LineProblem)> =
            out.invalid.iter().map(|i| (i.line, &i.problem)).collect();
        assert_eq!(problems.len(), 3);
        assert_eq!(problems[0].0, 2);
        assert!(matches!(problems[0].1, LineProblem::Quality(_)));
        assert_eq!((problems[1].0, problems[1].1), (3, &LineProblem::TooLong));
        assert_eq!((problems[2].0, problems[2].1), (4, &LineProblem::NotUtf8));
        assert_eq!(out.list.len(), 1);
        assert_eq!(out.list.quality(0), Some(5));
    }
}
