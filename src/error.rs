//! One error type for the library: every variant names what is wrong (table, position, value),
//! so a caller can act on it without a debugger.

use thiserror::Error as ThisError;

/// Errors of ttrec's library calls. New variants may come in minor releases (the enum is
/// `#[non_exhaustive]`): a `match` on it needs a `_` arm.
///
/// ```
/// fn kind(e: &ttrec::Error) -> &'static str {
///     match e {
///         ttrec::Error::Shape { .. } | ttrec::Error::Input { .. } => "caller's mistake",
///         ttrec::Error::NoAdapter(_) | ttrec::Error::Gpu(_) => "device",
///         ttrec::Error::File { .. } | ttrec::Error::Io(_) => "file",
///         ttrec::Error::Stopped(_) => "stopped",
///         _ => "other",
///     }
/// }
/// assert_eq!(kind(&ttrec::Error::input(Some(2), "index 7 at position 0")), "caller's mistake");
/// ```
///
/// Without the `_` arm the same `match` does not compile outside the crate:
///
/// ```compile_fail,E0004
/// fn kind(e: &ttrec::Error) -> &'static str {
///     match e {
///         ttrec::Error::Shape { .. } | ttrec::Error::Input { .. } => "caller's mistake",
///         ttrec::Error::NoAdapter(_) | ttrec::Error::Gpu(_) => "device",
///         ttrec::Error::File { .. } | ttrec::Error::Io(_) => "file",
///         ttrec::Error::Stopped(_) => "stopped",
///     }
/// }
/// ```
#[derive(Debug, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// No wgpu adapter could be found or the one asked for is absent.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The device could not be created or a GPU operation failed.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A TT shape (p, q, ranks, N, D) is invalid.
    #[error("invalid TT shape{}: {msg}", table_suffix(.table))]
    Shape { table: Option<usize>, msg: String },
    /// A batch (indices, offsets, weights, gradients) is invalid.
    #[error("invalid input{}: {msg}", table_suffix(.table))]
    Input { table: Option<usize>, msg: String },
    /// A file could not be read or written, or has the wrong format.
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A training run stopped before its end (interrupted, or its loss diverged); the message
    /// says where and what was kept.
    #[error("{0}")]
    Stopped(String),
}

fn table_suffix(table: &Option<usize>) -> String {
    match table {
        Some(t) => format!(" (table {t})"),
        None => String::new(),
    }
}

impl Error {
    /// An input error for `table` (None when the call has a single table).
    pub fn input(table: Option<usize>, msg: impl Into<String>) -> Self {
        Error::Input {
            table,
            msg: msg.into(),
        }
    }
    /// A shape error for `table`.
    pub fn shape(table: Option<usize>, msg: impl Into<String>) -> Self {
        Error::Shape {
            table,
            msg: msg.into(),
        }
    }
    /// A file error naming the path.
    pub fn file(path: impl AsRef<std::path::Path>, msg: impl Into<String>) -> Self {
        Error::File {
            path: path.as_ref().display().to_string(),
            msg: msg.into(),
        }
    }
    /// Attach a table number to input and shape errors that have none.
    pub fn with_table(self, t: usize) -> Self {
        match self {
            Error::Input { table: None, msg } => Error::Input {
                table: Some(t),
                msg,
            },
            Error::Shape { table: None, msg } => Error::Shape {
                table: Some(t),
                msg,
            },
            e => e,
        }
    }
}

/// Result with ttrec's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
