//! The exactly-once verifier: reads every Parquet file of a run (a folder, or a bucket
//! through the S3 settings of the config) and checks that every generated id arrived
//! exactly once.
//!
//! Ids are `<seed hex>-<sequence>`; a run of `count` records with seed `seed` must
//! hold the sequences `0..count` once each. Anything else is reported: missing and
//! duplicated ids (the first few by name), and ids of other runs or beyond the count.

use anyhow::{Context, Result, bail};
use datagen::Generator;
use serde_json::{Value, json};
use std::path::Path;

/// Where the files are.
pub enum Source<'a> {
    Dir(&'a Path),
    /// A config (file and `D2P_*` environment) with the S3 settings of the writer.
    S3(Box<data2parquet::config::Config>),
}

/// Counts per sequence number of one run.
pub struct Tally {
    seed: u64,
    seen: Vec<u8>,
    unexpected: u64,
    unexpected_ids: Vec<String>,
    rows: u64,
    files: u64,
}

/// How many ids of each kind a report lists by name.
const SHOWN: usize = 10;

impl Tally {
    pub fn new(seed: u64, count: u64) -> Tally {
        Tally {
            seed,
            seen: vec![0; count as usize],
            unexpected: 0,
            unexpected_ids: Vec::new(),
            rows: 0,
            files: 0,
        }
    }

    /// Counts the ids of one file.
    pub fn add_file(&mut self, ids: Vec<Option<String>>) {
        self.files += 1;
        for id in ids {
            self.rows += 1;
            let seq = id.as_deref().and_then(|s| self.parse(s));
            match seq {
                Some(q) => self.seen[q] = self.seen[q].saturating_add(1),
                None => {
                    self.unexpected += 1;
                    if self.unexpected_ids.len() < SHOWN {
                        self.unexpected_ids
                            .push(id.unwrap_or_else(|| "<no id>".into()));
                    }
                }
            }
        }
    }

    /// The sequence number of an id of this run, if it is one.
    fn parse(&self, id: &str) -> Option<usize> {
        let (run, seq) = id.split_once('-')?;
        let run = u64::from_str_radix(run, 16).ok()?;
        let seq: usize = seq.parse().ok()?;
        (run == self.seed && seq < self.seen.len()).then_some(seq)
    }

    /// The report, and whether every id arrived exactly once.
    pub fn report(&self) -> (Value, bool) {
        let id = |q: usize| Generator::id_of(self.seed, q as u64);
        let missing: Vec<usize> = (0..self.seen.len())
            .filter(|&q| self.seen[q] == 0)
            .collect();
        let dup: Vec<usize> = (0..self.seen.len()).filter(|&q| self.seen[q] > 1).collect();
        let extra_copies: u64 = dup.iter().map(|&q| self.seen[q] as u64 - 1).sum();
        let ok = missing.is_empty() && dup.is_empty() && self.unexpected == 0;
        (
            json!({
                "ok": ok,
                "files": self.files,
                "rows": self.rows,
                "expected": self.seen.len(),
                "unique": self.seen.len() - missing.len(),
                "missing": missing.len(),
                "duplicated": dup.len(),
                "duplicate_rows": extra_copies,
                "unexpected": self.unexpected,
                "missing_ids": missing.iter().take(SHOWN).map(|&q| id(q)).collect::<Vec<_>>(),
                "duplicated_ids": dup.iter().take(SHOWN).map(|&q| format!("{} x{}", id(q), self.seen[q])).collect::<Vec<_>>(),
                "unexpected_ids": self.unexpected_ids,
            }),
            ok,
        )
    }
}

/// Reads every file of `source` into a tally.
pub fn scan(source: &Source<'_>, seed: u64, count: u64) -> Result<Tally> {
    let mut t = Tally::new(seed, count);
    match source {
        Source::Dir(d) => {
            if !d.is_dir() {
                bail!("{} is not a folder", d.display());
            }
            for f in data2parquet::readback::parquet_files(d) {
                let file = std::fs::File::open(&f).with_context(|| format!("{}", f.display()))?;
                let ids = data2parquet::readback::ids(file)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                t.add_file(ids);
            }
        }
        Source::S3(cfg) => {
            let s3 = data2parquet::writer::s3::S3Writer::new(cfg)?;
            for key in s3.list("")? {
                // The writer's own folders (dead letters, recovery) are not output.
                if !key.ends_with(".parquet") || key.split('/').any(|c| c.starts_with(['_', '.'])) {
                    continue;
                }
                let (data, _) = s3.get(&key)?;
                let ids = data2parquet::readback::ids(bytes::Bytes::from(data))
                    .map_err(|e| anyhow::anyhow!("s3://{}/{key}: {e}", cfg.s3.bucket))?;
                t.add_file(ids);
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_missing_duplicated_and_foreign_ids() {
        let mut t = Tally::new(7, 5);
        let id = |q| Some(Generator::id_of(7, q));
        t.add_file(vec![id(0), id(1), id(1), None]);
        t.add_file(vec![id(3), Some(Generator::id_of(8, 2)), id(9), id(4)]);
        let (r, ok) = t.report();
        assert!(!ok);
        assert_eq!(r["missing"], 1);
        assert_eq!(r["missing_ids"][0], Generator::id_of(7, 2));
        assert_eq!(r["duplicated"], 1);
        assert_eq!(
            r["duplicated_ids"][0],
            format!("{} x2", Generator::id_of(7, 1))
        );
        assert_eq!(r["unexpected"], 3, "no id, another run, beyond the count");
        assert_eq!(
            (r["files"].as_u64(), r["rows"].as_u64()),
            (Some(2), Some(8))
        );
        let mut t = Tally::new(7, 2);
        t.add_file(vec![id(1), id(0)]);
        assert!(t.report().1);
    }
}
