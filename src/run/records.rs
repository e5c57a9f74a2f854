//! `metrics.jsonl`: one typed record per line ([`Record`]: a step or an epoch), flushed as
//! written, so a crash loses nothing and a plot can be made while the run goes on.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Context, Result};

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Step(StepRecord),
    Epoch(EpochRecord),
}

/// After each step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based epoch; steps of the whole run so far, this one included.
    pub epoch: usize,
    pub step: u64,
    /// Images in the batch (each seen as the method's views).
    pub images: usize,
    pub loss: f64,
    /// Fraction of the batch predicted right (fine-tuning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    pub lr: f64,
    /// Throughput of this step: views (pretraining) or images (fine-tuning) per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_per_s: Option<f64>,
    /// Training time of the run so far, seconds.
    pub elapsed_s: f64,
    /// A method's own values (BYOL's `tau`).
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

/// After each epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub step: u64,
    /// Mean training loss of the epoch, and training accuracy (fine-tuning).
    pub loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// The rate of the epoch's last step.
    pub lr: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views_per_s: Option<f64>,
    pub elapsed_s: f64,
    /// What was measured after it: `knn_top1` (pretraining's monitor), `val_top1`
    /// (fine-tuning's validation), as fractions.
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

impl EpochRecord {
    /// A value by its key: `loss`, `accuracy`, or a measured one (`knn_top1`, `val_top1`).
    pub fn get(&self, key: &str) -> Option<f64> {
        match key {
            "loss" => Some(self.loss),
            "accuracy" => self.accuracy,
            k => self.values.get(k).copied(),
        }
    }
}

/// The step and the epoch records of a metrics file, each in order.
pub fn read_steps_and_epochs(path: &Path) -> Result<(Vec<StepRecord>, Vec<EpochRecord>)> {
    let (mut steps, mut epochs) = (Vec::new(), Vec::new());
    for r in read_records(path)? {
        match r {
            Record::Step(s) => steps.push(s),
            Record::Epoch(e) => epochs.push(e),
        }
    }
    Ok((steps, epochs))
}

/// An open metrics log (or, on the ranks of a data-parallel job but the first, none).
pub struct MetricsLog {
    path: PathBuf,
    file: Option<File>,
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
        Ok(MetricsLog { path: path.to_path_buf(), file: Some(file) })
    }

    /// A log that writes nothing: the ranks of a data-parallel job that do not write files.
    pub fn discard() -> Self {
        MetricsLog { path: PathBuf::new(), file: None }
    }

    /// Appends one record.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        let Some(file) = &mut self.file else { return Ok(()) };
        let line = serde_json::to_string(record).expect("a record serialises");
        writeln!(file, "{line}").at(&self.path)
    }
}

/// Record `line` (0-based `i`) of the metrics file at `path`.
fn parse_line(path: &Path, i: usize, line: &str) -> Result<Value> {
    serde_json::from_str(line).map_err(|e| crate::error::Error::bad_input(path, format!("line {}: {e}", i + 1)))
}

/// Every record of a metrics file, in order, typed.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    read(path)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| serde_json::from_value(v).map_err(|e| crate::error::Error::bad_input(path, format!("record {}: {e}", i + 1))))
        .collect()
}

/// Every record of a metrics file, in order, as JSON.
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

    fn step(step: u64, loss: f64) -> Record {
        let values = [("tau".to_string(), 0.99)].into();
        Record::Step(StepRecord { epoch: 1, step, images: 8, loss, accuracy: None, lr: 0.1, views_per_s: Some(10.0), images_per_s: None, elapsed_s: 1.0, values })
    }

    #[test]
    fn records_round_trip_and_older_lines_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        let mut m = MetricsLog::open(&p, None).unwrap();
        m.write(&step(1, 2.5)).unwrap();
        drop(m);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"kind\":\"step\"") && text.contains("\"tau\":0.99") && !text.contains("accuracy"), "{text}");
        // A line as the loops wrote it before records were typed (keys sorted).
        let old = "{\"elapsed_s\":3.0,\"epoch\":2,\"knn_top1\":0.5,\"kind\":\"epoch\",\"loss\":4.4,\"lr\":0.1,\"step\":32,\"views_per_s\":700.0}\n";
        std::fs::write(&p, format!("{text}{old}")).unwrap();
        let r = read_records(&p).unwrap();
        assert_eq!(r[0], step(1, 2.5));
        let Record::Epoch(e) = &r[1] else { panic!("{r:?}") };
        assert_eq!((e.epoch, e.step, e.values["knn_top1"], e.accuracy), (2, 32, 0.5, None));
    }

    #[test]
    fn appends_and_truncates_for_a_resume() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        let mut m = MetricsLog::open(&p, None).unwrap();
        for s in 1..=5u64 {
            m.write(&step(s, 1.0 / s as f64)).unwrap();
        }
        drop(m);
        let mut m = MetricsLog::open(&p, Some(3)).unwrap();
        m.write(&step(4, 0.0)).unwrap();
        let steps: Vec<u64> = read(&p).unwrap().iter().map(|v| v["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
        // Kept lines keep their text: a float that serde_json would print back differently.
        std::fs::write(&p, "{\"step\":1,\"loss\":1.0726428031921387}\n{\"step\":2,\"lr\":0.0015624999999999999}\n").unwrap();
        drop(MetricsLog::open(&p, Some(1)).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"step\":1,\"loss\":1.0726428031921387}\n");
    }
}
