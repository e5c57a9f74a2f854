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
    /// logged after `step` (a resumed run writes them again). The lines kept are kept as they
    /// were written, byte for byte (parsing and printing again could change a float's last
    /// digit), and the file is not touched when nothing is dropped.
    pub fn open(path: &Path, keep_until: Option<u64>) -> Result<Self> {
        if let (Some(step), true) = (keep_until, path.exists()) {
            let text = std::fs::read_to_string(path).at(path)?;
            let mut kept = String::new();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v = parse_line(path, i, line)?;
                if v.get("step").and_then(Value::as_u64).is_some_and(|s| s <= step) {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
            if kept != text {
                crate::fsutil::write_atomic(path, kept)?;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path).at(path)?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    /// Appends one record.
    pub fn log(&mut self, record: &Value) -> Result<()> {
        writeln!(self.file, "{record}").at(&self.path)
    }
}

/// Record `line` (0-based `i`) of the metrics file at `path`.
fn parse_line(path: &Path, i: usize, line: &str) -> Result<Value> {
    serde_json::from_str(line).map_err(|e| crate::error::Error::bad_input(path, format!("line {}: {e}", i + 1)))
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
        out.push(parse_line(path, i, &line)?);
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
        // Kept lines keep their text: a float that serde_json would print back differently.
        std::fs::write(&p, "{\"step\":1,\"loss\":1.0726428031921387}\n{\"step\":2,\"lr\":0.0015624999999999999}\n").unwrap();
        drop(MetricsLog::open(&p, Some(1)).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"step\":1,\"loss\":1.0726428031921387}\n");
    }
}
