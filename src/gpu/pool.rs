//! A pool of storage buffers by size class, so plans built for new shapes reuse the memory of
//! plans that were dropped instead of allocating afresh.

use std::collections::HashMap;

/// Sizes are rounded up to a power of two (at least 256 bytes) so buffers are interchangeable.
pub fn size_class(bytes: u64) -> u64 {
    bytes.max(256).next_power_of_two()
}

/// Free buffers by size class.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
}

impl BufferPool {
    /// A free buffer of exactly `size` (a size class), if any.
    pub fn take(&mut self, size: u64) -> Option<wgpu::Buffer> {
        self.free.get_mut(&size).and_then(|v| v.pop())
    }
    /// Puts a buffer back.
    pub fn put(&mut self, buffer: wgpu::Buffer) {
        self.free.entry(buffer.size()).or_default().push(buffer);
    }
    /// Bytes held by free buffers.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|(s, v)| s * v.len() as u64).sum()
    }
}
