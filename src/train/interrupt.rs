//! Ctrl-C during a run: the loop finishes the current step, writes a checkpoint and stops; a
//! second Ctrl-C stops at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Set by Ctrl-C: the loop finishes the current step, writes a checkpoint and stops.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The process's interrupt flag, with the handler that sets it installed on first use.
pub(super) fn interrupt_flag() -> Arc<AtomicBool> {
    INTERRUPTED
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            // If a handler is already installed (the embedding app's), Ctrl-C keeps its meaning.
            if let Err(e) = ctrlc::set_handler(move || {
                if f.swap(true, Ordering::SeqCst) {
                    // A second Ctrl-C: stop now.
                    std::process::exit(130);
                }
            }) {
                log::info!("Ctrl-C keeps its meaning (no checkpoint on interrupt): {e}");
            }
            flag
        })
        .clone()
}
