//! How a training run prints: a progress bar on a terminal, plain lines otherwise (see
//! [`crate::progress::Style::from_env`]). Metric lines go through the bar when there is one, so
//! they are not overwritten by it.

use indicatif::ProgressBar;

use crate::progress::{bar_style, Style};

/// The run's printer: plain lines, or one progress bar per epoch with lines printed above it.
pub(super) struct Output {
    pub(super) bar: Option<ProgressBar>,
    /// Prints nothing (the ranks other than 0 of a data-parallel run).
    muted: bool,
}

impl Output {
    pub(super) fn new() -> Self {
        Output {
            bar: None,
            muted: false,
        }
    }

    /// An output that prints nothing.
    pub(super) fn muted() -> Self {
        Output {
            bar: None,
            muted: true,
        }
    }

    /// One line of output, above the bar when there is one.
    pub(super) fn line(&self, s: &str) {
        if self.muted {
            return;
        }
        match &self.bar {
            Some(b) => b.println(s),
            None => println!("{s}"),
        }
    }

    pub(super) fn start_epoch(&mut self, epoch: u64, epochs: u64, total: u64, done: u64) {
        // A bar where every progress has one (a terminal, unless TTREC_PROGRESS says otherwise).
        if !self.muted && Style::from_env() == Style::Bar {
            let bar = ProgressBar::new(total).with_position(done);
            bar.set_style(bar_style("{pos}/{len} batches, {msg}"));
            bar.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
            self.bar = Some(bar);
        }
    }

    /// A step done: the bar moves; its message (`msg`, built only when shown) every 8 steps.
    pub(super) fn step(&self, msg: impl FnOnce() -> String) {
        if let Some(b) = &self.bar {
            b.inc(1);
            if b.position() % 8 == 0 {
                b.set_message(msg());
            }
        }
    }

    pub(super) fn end_epoch(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
