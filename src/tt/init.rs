//! Initialisation of TT cores.

/// Distribution of the initial cores (see `spec/tt-rec.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TtInit {
    #[default]
    SampledGaussian,
}
