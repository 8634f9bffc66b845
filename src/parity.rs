//! CUDA-parity fixtures (ttrec-parity-v1).
