// Prepended to every shader under shaders/ (src/gpu/shaders.rs): what several kernel families
// share. Each uniform struct here has a Rust twin (named beside it) whose layout a test checks
// (tests/shaders.rs).

const WG: u32 = 64u; // threads per workgroup of every 1-D kernel (kernels::WORKGROUP)

// The global invocation index of a 1-D launch whose workgroups may be folded into y (gpu::grid).
fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// One chunk of the TT lookups of a call; every chunk has its own uniform. Rust: kernels::tt::ChunkParams.
struct Chunk {
    start: u32,     // first (global) lookup of the chunk
    len: u32,       // lookups in the chunk (0 for chunks past the call's lookups)
    cap: u32,       // stride between the per-core sections of `digits` and `sorted`
    num_bags: u32,  // bags of the call
    index: u32,     // chunk number (selects the segment tables of the chunk)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// A batch of TT lookups as the routing kernels take it. Rust: kernels::tt_route::RouteParams.
struct Route {
    nnz: u32,       // lookups of the batch
    num_bags: u32,  // bags of the batch (all tables)
    tables: u32,    // tables of the group
    cap: u32,       // stride between the per-core sections of `digits` and `sorted`
    pool: u32,      // 0 sum, 1 mean, 2 sum weighted by per-sample weights
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// An optimizer's parameters. Rust: kernels::optim::OptParams.
struct OptParams {
    lr: f32,
    eps: f32,
    len: u32,
    _pad: u32,
}

// Which slot of the loss statistics ring a step writes. Rust: kernels::loss::StepParams.
struct StepParams {
    slot: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
