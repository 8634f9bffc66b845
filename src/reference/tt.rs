//! CPU twin of the TT-EmbeddingBag kernels (shaders/tt.wgsl).
