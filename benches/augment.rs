//! The two-view SimCLR augmentation at 28x28x1, 32x32x3 and 96x96x3 on 1 and 2 threads, 256
//! images a batch written into the float batch buffer. Throughput is in source images.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssl::augment::{AugmentConfig, Pipeline};
use ssl::data::{ImageShape, Split};

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

fn bench(c: &mut Criterion) {
    ssl::alloc::keep_freed_memory();
    let mut g = c.benchmark_group("augment_two_views_b256");
    g.sample_size(20);
    g.throughput(Throughput::Elements(256));
    let indices: Vec<usize> = (0..256).collect();
    for (size, channels) in [(28, 1), (32, 3), (96, 3)] {
        let split = Split::random(256, ImageShape { height: size, width: size, channels }, 0);
        let pipeline = Pipeline::for_split(AugmentConfig::simclr(), &split).unwrap();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut out = Vec::new();
            let mut epoch = 0;
            g.bench_function(format!("{size}x{size}x{channels} threads {threads}"), |b| {
                b.iter(|| {
                    epoch += 1;
                    pool.install(|| pipeline.views_into(&split, &indices, 2, 0, epoch, &mut out));
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
