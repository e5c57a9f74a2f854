//! Two-view SimCLR augmentation throughput, like `../shared/bench/torch_augment.py`:
//! `cargo run --release --example augment_throughput -- THREADS N SIZE CHANNELS`.
//! Prints source images/s (each image gives two views written into a float batch buffer).

use ssl::augment::{AugmentConfig, Pipeline};
use ssl::data::{ImageShape, Split};

#[global_allocator]
static ALLOC: ssl::alloc::Allocator = ssl::alloc::Allocator {};

fn main() {
    ssl::alloc::keep_freed_memory();
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let threads = args.first().copied().unwrap_or(2);
    let n = args.get(1).copied().unwrap_or(20_000);
    let size = args.get(2).copied().unwrap_or(32);
    let channels = args.get(3).copied().unwrap_or(3);
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().unwrap();
    let split = Split::random(256, ImageShape { height: size, width: size, channels }, 0);
    let pipeline = Pipeline::for_split(AugmentConfig::simclr(), &split).unwrap();
    let batch = 256;
    let indices: Vec<usize> = (0..batch).collect();
    let mut out = Vec::new();
    pipeline.views_into(&split, &indices, 2, 0, 0, &mut out);
    let t0 = std::time::Instant::now();
    let mut done = 0;
    let mut epoch = 1;
    while done < n {
        pipeline.views_into(&split, &indices, 2, 0, epoch, &mut out);
        done += batch;
        epoch += 1;
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "ssl two-view SimCLR augment {size}x{size}x{channels}: {:.0} images/s ({:.0} views/s), threads {threads}",
        done as f64 / dt,
        2.0 * done as f64 / dt
    );
}
