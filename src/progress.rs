//! Progress of long operations for programs (the CLI, a training run): an indicatif bar on a
//! terminal, in the training bar's style, and plain lines when stderr is not a terminal (a log
//! file, CI, a pipe): one at every tenth of the work, one at least every 30 s, one at the end.
//! `TTREC_PROGRESS=plain` asks for plain lines on a terminal too, `TTREC_PROGRESS=off` for
//! nothing. Everything goes to stderr, so stdout stays the command's output.
//!
//! The library's own long operations never print; they take a callback
//! ([`crate::data::SyntheticCriteo::write_raw_with_progress`],
//! [`crate::data::inspect_file_with_progress`], [`crate::data::BuildProgress`]) that a program
//! points at a [`Progress`].

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressStyle};

/// Longest silence between two plain lines.
const PLAIN_EVERY: Duration = Duration::from_secs(30);

/// What a progress counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (shown as KiB, MiB, ...).
    Bytes,
    /// Things, named in the plural ("samples", "measurements").
    Items(&'static str),
}

impl Unit {
    fn show(self, n: u64) -> String {
        match self {
            Unit::Bytes => HumanBytes(n).to_string(),
            Unit::Items(_) => HumanCount(n).to_string(),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Unit::Bytes => "",
            Unit::Items(name) => name,
        }
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Bar,
    Plain,
    Off,
}

impl Style {
    /// `TTREC_PROGRESS` (`plain`, `off`), else a bar when stderr is a terminal, else plain lines.
    pub fn from_env() -> Self {
        match std::env::var("TTREC_PROGRESS").as_deref() {
            Ok("off") | Ok("0") | Ok("none") => Style::Off,
            Ok("plain") => Style::Plain,
            _ if std::io::stderr().is_terminal() => Style::Bar,
            _ => Style::Plain,
        }
    }
}

/// The bar style every ttrec progress bar uses (the training bar's): `template` between the
/// prefix and the times, `=> ` as the bar's characters.
pub fn bar_style(middle: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix}} [{{bar:30}}] {middle}, {{elapsed}} < {{eta}}"
    ))
    .expect("valid progress template")
    .progress_chars("=> ")
}

/// One long operation's progress.
#[derive(Debug)]
pub struct Progress {
    what: String,
    unit: Unit,
    total: u64,
    done: u64,
    msg: String,
    style: Style,
    bar: Option<ProgressBar>,
    start: Instant,
    last_line: Instant,
    /// Tenths of the work already announced by a plain line.
    last_tenth: u64,
    /// A plain line at every step (a few long steps, as in a benchmark).
    every_step: bool,
    /// Whether any progress was reported (a plain run that did nothing ends without a line).
    started: bool,
}

impl Progress {
    /// Progress of `what` over `total` units (0 when not known yet: see [`set_total`]), shown
    /// as [`Style::from_env`] says.
    ///
    /// [`set_total`]: Progress::set_total
    pub fn new(what: impl Into<String>, total: u64, unit: Unit) -> Self {
        Self::with_style(what, total, unit, Style::from_env())
    }

    /// Progress over a few long steps (benchmark measurements): plain output has a line at each.
    pub fn steps(what: impl Into<String>, total: u64, unit: Unit) -> Self {
        let mut p = Self::new(what, total, unit);
        p.every_step = true;
        p
    }

    /// Progress shown in `style`.
    pub fn with_style(what: impl Into<String>, total: u64, unit: Unit, style: Style) -> Self {
        let what = what.into();
        let bar = (style == Style::Bar).then(|| {
            let middle = match unit {
                Unit::Bytes => "{bytes}/{total_bytes}, {bytes_per_sec}{msg}".to_string(),
                Unit::Items(name) => format!("{{human_pos}}/{{human_len}} {name}{{msg}}"),
            };
            let b = ProgressBar::new(total);
            b.set_style(bar_style(&middle));
            b.set_prefix(what.clone());
            b
        });
        let now = Instant::now();
        Progress {
            what,
            unit,
            total,
            done: 0,
            msg: String::new(),
            style,
            bar,
            start: now,
            last_line: now,
            last_tenth: 0,
            every_step: false,
            started: false,
        }
    }

    /// How this progress is shown.
    pub fn style(&self) -> Style {
        self.style
    }

    /// Sets the amount of work (when it is known only after the start).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    /// A note shown after the counts (the bar) or at the end of the step's line (plain).
    pub fn set_message(&mut self, msg: impl Into<String>) {
        self.msg = msg.into();
        if let Some(b) = &self.bar {
            b.set_message(if self.msg.is_empty() {
                String::new()
            } else {
                format!(", {}", self.msg)
            });
        }
    }

    /// Adds `n` units done.
    pub fn inc(&mut self, n: u64) {
        self.set(self.done + n);
    }

    /// Sets the units done so far.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        self.started = true;
        match self.style {
            Style::Bar => {
                if let Some(b) = &self.bar {
                    b.set_position(done);
                }
            }
            Style::Off => {}
            Style::Plain => {
                let tenth = (done.saturating_mul(10))
                    .checked_div(self.total)
                    .unwrap_or(0)
                    .min(10);
                let due = if self.every_step {
                    // The last step's line is the one `finish` prints.
                    done < self.total || self.total == 0
                } else {
                    (tenth > self.last_tenth && done < self.total)
                        || self.last_line.elapsed() >= PLAIN_EVERY
                };
                if due {
                    self.last_tenth = tenth;
                    self.last_line = Instant::now();
                    eprintln!("{}", self.plain_line());
                }
            }
        }
    }

    /// Runs `f` (which prints to stdout) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// The plain line for the current state.
    fn plain_line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        let unit = self.unit.name();
        let counts = if self.total > 0 {
            format!(
                "{:.0}% ({}/{}{}{unit})",
                100.0 * self.done as f64 / self.total as f64,
                self.unit.show(self.done),
                self.unit.show(self.total),
                if unit.is_empty() { "" } else { " " }
            )
        } else {
            format!(
                "{}{}{unit}",
                self.unit.show(self.done),
                if unit.is_empty() { "" } else { " " }
            )
        };
        let mut line = format!("{}: {counts}, {:.1} s", self.what, secs);
        if self.done > 0 && self.total > self.done && !self.every_step {
            let left = secs * (self.total - self.done) as f64 / self.done as f64;
            line.push_str(&format!(", about {left:.0} s left"));
        }
        if !self.msg.is_empty() {
            line.push_str(&format!(", {}", self.msg));
        }
        line
    }

    /// Ends the progress: clears the bar, or prints a last plain line with the time taken (none
    /// when no progress was ever reported: there was nothing to do).
    pub fn finish(self) {
        match self.style {
            Style::Plain if !self.started => {}
            Style::Bar => {
                if let Some(b) = &self.bar {
                    b.finish_and_clear();
                }
            }
            Style::Off => {}
            Style::Plain => {
                let secs = self.start.elapsed().as_secs_f64();
                let unit = self.unit.name();
                let rate = if secs > 0.0 && !self.every_step {
                    format!(
                        ", {}{}{unit}/s",
                        self.unit.show((self.done as f64 / secs) as u64),
                        if unit.is_empty() { "" } else { " " }
                    )
                } else {
                    String::new()
                };
                eprintln!(
                    "{}: done, {}{}{unit} in {secs:.1} s{rate}",
                    self.what,
                    self.unit.show(self.done),
                    if unit.is_empty() { "" } else { " " },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_show_counts_and_units() {
        let mut p = Progress::with_style("writing", 2000, Unit::Items("samples"), Style::Plain);
        p.done = 500;
        let line = p.plain_line();
        assert!(
            line.starts_with("writing: 25% (500/2,000 samples), "),
            "{line}"
        );
        assert!(line.contains("left"), "{line}");
        let mut p = Progress::with_style("reading", 0, Unit::Bytes, Style::Plain);
        p.done = 3 << 20;
        assert!(
            p.plain_line().starts_with("reading: 3.00 MiB, "),
            "{}",
            p.plain_line()
        );
        p.set_total(6 << 20);
        p.set_message("file 2 of 3");
        let line = p.plain_line();
        assert!(
            line.starts_with("reading: 50% (3.00 MiB/6.00 MiB), "),
            "{line}"
        );
        assert!(line.ends_with(", file 2 of 3"), "{line}");
    }
}
