//! Issue 19 item 5: a data store is never overwritten silently. A store built from other
//! sources or with another `max_ind_range` is an error that names the difference and the flag
//! that rebuilds (`ttrec train --rebuild-data-store`, `ttrec data preprocess --force`), and the
//! file is left as it was; with the flag it is rebuilt.

mod common;

use std::process::Command;

use common::*;
use ttrec::train::TrainData;

const BIN: &str = env!("CARGO_BIN_EXE_ttrec");

#[test]
fn a_store_of_other_sources_or_settings_is_an_error_until_the_flag_rebuilds_it() {
    let dir = temp_dir("store-guard");
    let text = sample_text();
    let source = dir.join("day.txt");
    std::fs::write(&source, &text).unwrap();
    let store = dir.join("day.store");
    let open = |src: &std::path::Path, range: Option<u64>, rebuild: bool| {
        TrainData::criteo_rebuilding(
            &[src.to_path_buf()],
            Some(store.clone()),
            range,
            Some(0.2),
            0,
            rebuild,
            None,
        )
    };
    let first = open(&source, None, false).unwrap();
    assert!(first.describe().contains("built: was missing"), "{first:?}");
    drop(first);
    let bytes = std::fs::read(&store).unwrap();

    // Another max_ind_range: named, with the flag; the store untouched.
    let err = open(&source, Some(50), false).unwrap_err().to_string();
    assert!(
        err.contains("max_ind_range 0, asked for 50") && err.contains("--rebuild-data-store"),
        "{err}"
    );
    assert_eq!(std::fs::read(&store).unwrap(), bytes);

    // Another source (half the lines) named at the same store: the same.
    let other = dir.join("other.txt");
    let half: Vec<&str> = text.lines().take(100).collect();
    std::fs::write(&other, half.join("\n") + "\n").unwrap();
    let err = open(&other, None, false).unwrap_err().to_string();
    assert!(
        err.contains("source size changed") && err.contains("--rebuild-data-store"),
        "{err}"
    );
    assert_eq!(std::fs::read(&store).unwrap(), bytes);

    // The same through the CLI's preprocess, whose flag is --force.
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["data", "preprocess", other.to_str().unwrap(), "--store"])
            .arg(&store)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&store).unwrap(), bytes);

    // With the flag: rebuilt, with the settings asked for.
    let rebuilt = open(&source, Some(50), true).unwrap();
    assert!(
        rebuilt.describe().contains("built: was stale"),
        "{rebuilt:?}"
    );
    assert_eq!(rebuilt.dataset().unwrap().max_ind_range(), Some(50));
    drop(rebuilt);
    let out = run(&["--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}
