//! Automatic TT shapes.
pub fn suggested_tt_shapes(_n: u64, _d: usize, _allow_round_up: bool) -> Vec<usize> { Vec::new() }
