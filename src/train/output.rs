//! How a training run prints: progress bars on a terminal, plain lines otherwise (see
//! [`crate::progress::Style::from_env`]). On a terminal every printed line (the "Finished
//! training it" and "Testing at" lines included) goes above the bars, so the log stays on the
//! screen; an evaluation has a bar of its own under the epoch's.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};

use crate::progress::{bar_style, Style};

/// The run's printer: plain lines, or one progress bar per epoch (and one per evaluation)
/// with lines printed above them.
pub(super) struct Output {
    /// The bars' shared area (a terminal only).
    multi: Option<MultiProgress>,
    pub(super) bar: Option<ProgressBar>,
    eval_bar: Option<ProgressBar>,
    /// Prints nothing (the ranks other than 0 of a data-parallel run).
    muted: bool,
}

impl Output {
    pub(super) fn new() -> Self {
        // Bars where every progress has them (a terminal, unless TTREC_PROGRESS says otherwise).
        let multi = (Style::from_env() == Style::Bar)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Output {
            multi,
            bar: None,
            eval_bar: None,
            muted: false,
        }
    }

    /// An output that prints no lines, only the bars (on a terminal): a run whose caller prints
    /// the results (`ttrec bench compress`).
    pub(super) fn bars_only() -> Self {
        Output {
            muted: true,
            ..Output::new()
        }
    }

    /// An output that prints nothing.
    pub(super) fn muted() -> Self {
        Output {
            multi: None,
            bar: None,
            eval_bar: None,
            muted: true,
        }
    }

    /// Whether this output prints no lines.
    pub(super) fn is_muted(&self) -> bool {
        self.muted
    }

    /// One line of output, above the bars when there are any.
    pub(super) fn line(&self, s: &str) {
        if self.muted {
            return;
        }
        // To stdout (the run's log, even when only stderr is a terminal), with the bars
        // cleared meanwhile and redrawn under it.
        match &self.multi {
            Some(m) => m.suspend(|| println!("{s}")),
            None => println!("{s}"),
        }
    }

    pub(super) fn start_epoch(&mut self, epoch: u64, epochs: u64, total: u64, done: u64) {
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new(total).with_position(done));
            // The message carries its own leading ", " so an empty one leaves no empty field.
            bar.set_style(bar_style("{pos}/{len} batches{msg}"));
            bar.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
            self.bar = Some(bar);
        }
    }

    /// A step done: the bar moves; its message (`msg`, built only when shown) every 8 steps.
    pub(super) fn step(&self, msg: impl FnOnce() -> String) {
        if let Some(b) = &self.bar {
            b.inc(1);
            if b.position() % 8 == 0 {
                self.set_message(msg());
            }
        }
    }

    /// The epoch bar's note after its counts (nothing shown when empty).
    pub(super) fn set_message(&self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(if msg.is_empty() {
                msg
            } else {
                format!(", {msg}")
            });
        }
    }

    pub(super) fn end_epoch(&mut self) {
        self.end_eval();
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&b);
            }
        }
    }

    /// An evaluation of `batches` batches starts: its own bar under the epoch's.
    pub(super) fn start_eval(&mut self, batches: u64) {
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new(batches));
            bar.set_style(bar_style("{pos}/{len} evaluation batches"));
            bar.set_prefix("evaluating");
            self.eval_bar = Some(bar);
        }
    }

    /// An evaluation batch done.
    pub(super) fn eval_step(&self) {
        if let Some(b) = &self.eval_bar {
            b.inc(1);
        }
    }

    pub(super) fn end_eval(&mut self) {
        if let Some(b) = self.eval_bar.take() {
            b.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&b);
            }
        }
    }
}
