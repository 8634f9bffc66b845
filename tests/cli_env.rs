//! The binary's environment handling: a private runtime directory for Mesa when
//! `XDG_RUNTIME_DIR` is unset, and a log subscriber through which wgpu's own log lines flow.

use std::process::Command;

fn info(env: &[(&str, &str)], remove: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ttrec"));
    cmd.arg("info").env_remove("RUST_LOG");
    for k in remove {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn no_runtime_dir_warning_without_xdg_runtime_dir() {
    let (ok, stderr) = info(&[], &["XDG_RUNTIME_DIR"]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}

#[test]
fn wgpu_logs_reach_stderr_with_rust_log_and_not_by_default() {
    let (ok, stderr) = info(&[("RUST_LOG", "wgpu_core=debug")], &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("DEBUG wgpu_core"), "{stderr}");
    let (ok, stderr) = info(&[], &[]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("wgpu_core"), "{stderr}");
}
