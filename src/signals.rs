//! SIGINT (Ctrl-C) and SIGTERM in ttrec's programs. While a training loop runs (inside a
//! [`Deferred`] scope) the first signal only asks it to stop: the loop finishes its step,
//! writes a checkpoint and returns an error. At any other time (a data store being built,
//! plans compiling, `data preprocess`), or at the second signal, the process removes the
//! temporary files it is writing ([`crate::io::remove_temp_files`]) and exits at once. Either
//! way the exit code is the conventional 128 + signal: 130 for SIGINT, 143 for SIGTERM
//! ([`exit_code`]).
//!
//! On Unix the handlers are signal-hook's (they chain with an application's own); elsewhere
//! Ctrl-C through the `ctrlc` crate (an application's handler, if it installed one first,
//! keeps its meaning).

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Once;

/// SIGINT's number (the same on every platform).
pub const SIGINT: i32 = 2;
/// SIGTERM's number.
pub const SIGTERM: i32 = 15;

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Live [`Deferred`] scopes.
static DEFERRING: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Installs the handlers (once per process; later calls do nothing).
pub fn install() {
    INSTALL.call_once(|| {
        if let Err(e) = install_handlers() {
            log::info!("signals keep their default meaning (no checkpoint on interrupt): {e}");
        }
    });
}

#[cfg(unix)]
fn install_handlers() -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("ttrec signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                on_signal(signal);
            }
        })?;
    Ok(())
}

#[cfg(not(unix))]
fn install_handlers() -> std::io::Result<()> {
    ctrlc::set_handler(|| on_signal(SIGINT)).map_err(std::io::Error::other)
}

/// What a signal does (on the handlers' thread, not in signal context).
fn on_signal(signal: i32) {
    let first = RECEIVED
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if first && DEFERRING.load(Ordering::SeqCst) > 0 {
        return;
    }
    crate::io::remove_temp_files();
    let code = 128 + RECEIVED.load(Ordering::SeqCst);
    std::process::exit(code);
}

/// The first signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The conventional exit code of a process stopped by the signal received (130, 143), if any.
pub fn exit_code() -> Option<u8> {
    received().map(|s| (128 + s) as u8)
}

/// The signal's name, for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// While alive, the first signal is recorded for [`received`] instead of ending the process.
#[derive(Debug)]
pub struct Deferred(());

impl Deferred {
    pub fn new() -> Self {
        DEFERRING.fetch_add(1, Ordering::SeqCst);
        Deferred(())
    }
}

impl Default for Deferred {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        DEFERRING.fetch_sub(1, Ordering::SeqCst);
    }
}
