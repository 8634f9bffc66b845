//! The WGSL sources under `shaders/`, embedded in the binary.

/// (name, source) of every shader; a test validates each with naga.
pub const ALL: &[(&str, &str)] = &[
    ("tt", include_str!("../../shaders/tt.wgsl")),
    (
        "tt_subgroup",
        include_str!("../../shaders/tt_subgroup.wgsl"),
    ),
    ("tt_route", include_str!("../../shaders/tt_route.wgsl")),
    ("tt_cache", include_str!("../../shaders/tt_cache.wgsl")),
    ("optim", include_str!("../../shaders/optim.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    (
        "interaction",
        include_str!("../../shaders/interaction.wgsl"),
    ),
    ("loss", include_str!("../../shaders/loss.wgsl")),
    ("embedding", include_str!("../../shaders/embedding.wgsl")),
];

/// The source of shader `name`.
pub fn source(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
