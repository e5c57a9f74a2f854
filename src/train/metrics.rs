//! `metrics.jsonl`: one JSON object per line, flushed as written, so a crash loses nothing and
//! a plot can be made while the run goes on.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Context, Result};

/// An open metrics log.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending; with `keep_until = Some(step)`, first drops the lines
    /// logged after `step` (a resumed run writes them again).
    pub fn open(path: &Path, keep_until: Option<u64>) -> Result<Self> {
        if let (Some(step), true) = (keep_until, path.exists()) {
            let kept: Vec<String> = read(path)?
                .into_iter()
                .filter(|v| v.get("step").and_then(Value::as_u64).is_some_and(|s| s <= step))
                .map(|v| v.to_string())
                .collect();
            crate::fsutil::write_atomic(path, kept.iter().map(|l| format!("{l}\n")).collect::<String>())?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).at(path)?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    /// Appends one record.
    pub fn log(&mut self, record: &Value) -> Result<()> {
        writeln!(self.file, "{record}").at(&self.path)
    }
}

/// Every record of a metrics file, in order.
pub fn read(path: &Path) -> Result<Vec<Value>> {
    let f = File::open(path).at(path)?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.at(path)?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line).map_err(|e| crate::error::Error::bad_input(path, format!("line {}: {e}", i + 1)))?;
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn appends_and_truncates_for_a_resume() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        let mut m = MetricsLog::open(&p, None).unwrap();
        for s in 1..=5u64 {
            m.log(&json!({"step": s, "loss": 1.0 / s as f64})).unwrap();
        }
        drop(m);
        let mut m = MetricsLog::open(&p, Some(3)).unwrap();
        m.log(&json!({"step": 4, "loss": 0.0})).unwrap();
        let steps: Vec<u64> = read(&p).unwrap().iter().map(|v| v["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
    }
}
