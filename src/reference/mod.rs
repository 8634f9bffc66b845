//! CPU twins of the GPU kernels, computed in f64: the oracle of every test.

pub mod finite;
pub mod nn;
pub mod tt;
