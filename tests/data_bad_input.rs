//! Every bad input of `ssl data` gets one clear line naming the file, a non-zero exit, and no
//! partial output; an existing output is never clobbered by a failed import.

mod common;

use std::path::Path;

use common::*;

fn assert_no_output(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".h5") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn truncated_gzip() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_idx_dataset(&src, 50, 5, true);
    let f = src.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let out = t.path().join("o.h5");
    ssl_fails(&["data", "import", "idx", s(&src), s(&out)], &["train-images-idx3-ubyte.gz", "gzip"]);
    assert_no_output(t.path());
}

#[test]
fn wrong_idx_magic() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_idx_dataset(&src, 5, 5, false);
    let f = src.join("t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[3] = 3;
    std::fs::write(&f, bytes).unwrap();
    ssl_fails(&["data", "import", "idx", s(&src), s(&t.path().join("o.h5"))], &["t10k-labels-idx1-ubyte", "magic"]);
    assert_no_output(t.path());
}

#[test]
fn image_and_label_counts_disagree() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_idx_dataset(&src, 5, 5, false);
    std::fs::write(src.join("train-labels-idx1-ubyte"), idx_bytes(&[4], &[0, 1, 2, 3])).unwrap();
    ssl_fails(&["data", "import", "idx", s(&src), s(&t.path().join("o.h5"))], &["train-labels-idx1-ubyte", "4 labels for 5 images"]);
    assert_no_output(t.path());
}

#[test]
fn label_out_of_range() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_idx_dataset(&src, 3, 3, false);
    std::fs::write(src.join("train-labels-idx1-ubyte"), idx_bytes(&[3], &[0, 12, 2])).unwrap();
    ssl_fails(&["data", "import", "idx", s(&src), s(&t.path().join("o.h5"))], &["train-labels-idx1-ubyte", "label 12", "out of range"]);
    assert_no_output(t.path());
}

#[test]
fn non_image_file_in_folder() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src/cls");
    std::fs::create_dir_all(&src).unwrap();
    write_png(&src.join("a.png"), 4, 4, 1);
    std::fs::write(src.join("notes.png"), "this is text, not a picture").unwrap();
    ssl_fails(&["data", "import", "folder", s(&t.path().join("src")), s(&t.path().join("o.h5"))], &["notes.png", "not"]);
    assert_no_output(t.path());
}

#[test]
fn empty_folder_and_empty_class() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("empty");
    std::fs::create_dir_all(&src).unwrap();
    ssl_fails(&["data", "import", "folder", s(&src), s(&t.path().join("o.h5"))], &["empty", "no images"]);
    std::fs::create_dir_all(src.join("a")).unwrap();
    ssl_fails(&["data", "import", "folder", s(&src), s(&t.path().join("o.h5"))], &["empty/a", "no images"]);
    assert_no_output(t.path());
}

#[test]
fn missing_and_unreadable_paths() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    for fmt in ["idx", "cifar10", "cifar100", "stl10", "folder"] {
        ssl_fails(&["data", "import", fmt, s(&missing), s(&t.path().join("o.h5"))], &["nope", "No such file"]);
    }
    // A path through a regular file cannot be read, even by root.
    let file = t.path().join("plain.txt");
    std::fs::write(&file, "x").unwrap();
    ssl_fails(&["data", "import", "folder", s(&file.join("sub")), s(&t.path().join("o.h5"))], &["plain.txt/sub"]);
    ssl_fails(&["data", "info", s(&missing)], &["nope", "No such file"]);
    ssl_fails(&["data", "import", "idx", s(&file), s(&t.path().join("o.h5"))], &["plain.txt", "folder"]);
    ssl_fails(&["data", "import", "idx", s(t.path()), s(&t.path().join("no/such/dir/o.h5"))], &["o.h5", "folder"]);
}

#[test]
fn existing_output_refused_and_never_clobbered() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write_idx_dataset(&src, 4, 4, false);
    let out = t.path().join("o.h5");
    std::fs::write(&out, b"precious").unwrap();
    ssl_fails(&["data", "import", "idx", s(&src), s(&out)], &["o.h5", "already exists", "--force"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    // A failed import with --force keeps the old file too.
    std::fs::write(src.join("train-labels-idx1-ubyte"), b"garbage").unwrap();
    ssl_fails(&["data", "import", "idx", s(&src), s(&out), "--force"], &["train-labels-idx1-ubyte"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    write_idx_dataset(&src, 4, 4, false);
    ssl_ok(&["data", "import", "idx", s(&src), s(&out), "--force"]);
    assert_ne!(std::fs::read(&out).unwrap(), b"precious");
}

#[test]
fn corrupt_or_foreign_file_given_to_info() {
    let t = tempfile::tempdir().unwrap();
    let text = t.path().join("notes.h5");
    std::fs::write(&text, "not hdf5 at all").unwrap();
    ssl_fails(&["data", "info", s(&text)], &["notes.h5", "not an HDF5 file"]);
    // A store cut in half.
    let src = t.path().join("src");
    write_idx_dataset(&src, 2000, 10, false);
    let good = t.path().join("good.h5");
    ssl_ok(&["data", "import", "idx", s(&src), s(&good)]);
    let bytes = std::fs::read(&good).unwrap();
    let cut = t.path().join("cut.h5");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = ssl(&["data", "info", s(&cut)]);
    assert!(!r.ok && r.stderr.lines().count() == 1 && r.stderr.contains("cut.h5"), "{}", r.stderr);
    // Valid HDF5 that is not a store.
    // HDF5 opens files without close-on-exec: an `ssl` another test thread spawns while this file is open inherits
    // the descriptor and its lock for its whole run. Hand `ssl` a copy (a new inode, so no lock) of the file.
    hdf5::File::create(t.path().join("made.h5")).unwrap().close().unwrap();
    std::fs::copy(t.path().join("made.h5"), t.path().join("other.h5")).unwrap();
    ssl_fails(&["data", "info", s(&t.path().join("other.h5"))], &["other.h5", "not an ssl dataset store"]);
    ssl_fails(&["data", "preview", s(&good), "--split", "nope", "--out", s(&t.path().join("p.png"))], &["no split named 'nope'"]);
}

/// A PNG whose header claims `w` x `h` pixels, followed by no image data.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut crc = flate2::Crc::new();
    crc.update(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc.sum().to_be_bytes());
    png
}

#[test]
fn decompression_bomb_refused() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("bomb.png"), bomb_png(100_000, 100_000)).unwrap();
    ssl_fails(&["data", "import", "folder", s(&src), s(&t.path().join("o.h5"))], &["bomb.png", "size limit"]);
    assert_no_output(t.path());
}

#[test]
fn symlink_loop_in_folder() {
    let t = tempfile::tempdir().unwrap();
    let cls = t.path().join("src/cls");
    std::fs::create_dir_all(&cls).unwrap();
    write_png(&cls.join("a.png"), 4, 4, 1);
    std::os::unix::fs::symlink(&cls, cls.join("again")).unwrap();
    ssl_fails(&["data", "import", "folder", s(&t.path().join("src")), s(&t.path().join("o.h5"))], &["again", "symlink loop"]);
    assert_no_output(t.path());
}
