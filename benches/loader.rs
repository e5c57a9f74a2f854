//! Minibatch reads from the HDF5 store: loading a whole split, and gathering random batches of
//! 256 from it (what the training loaders do). Uses the real Fashion-MNIST when installed.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use ssl::data::import::{import, Format, ImportOptions};
use ssl::data::Store;

fn bench(c: &mut Criterion) {
    let src = Path::new("/usr/share/datasets/fashion-mnist");
    if !src.is_dir() {
        eprintln!("Fashion-MNIST not installed (scripts/setup.sh); skipping the loader bench");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fmnist.h5");
    import(Format::Idx, src, &out, &ImportOptions::default()).unwrap();
    let store = Store::open(&out).unwrap();

    let mut g = c.benchmark_group("loader");
    g.sample_size(10);
    g.throughput(Throughput::Elements(60_000));
    g.bench_function("load_split train 60k", |b| b.iter(|| store.load_split("train").unwrap()));

    let split = store.load_split("train").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut buf = Vec::new();
    g.sample_size(100);
    g.throughput(Throughput::Elements(256));
    g.bench_function("gather 256 random", |b| {
        b.iter(|| {
            let idx: Vec<usize> = (0..256).map(|_| rng.gen_range(0..split.len())).collect();
            split.gather_into(&idx, &mut buf);
            buf.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
