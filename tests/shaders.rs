//! Every shader under shaders/ parses and validates with naga, and every .wgsl file there is
//! embedded (so a new kernel cannot be forgotten by the binary).

#[test]
fn every_shader_validates_with_naga() {
    for (name, source) in ttrec::gpu::shaders::ALL {
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| {
            panic!(
                "shaders/{name}.wgsl does not parse:\n{}",
                e.emit_to_string(source)
            )
        });
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        validator.validate(&module).unwrap_or_else(|e| {
            panic!(
                "shaders/{name}.wgsl does not validate:\n{}",
                e.emit_to_string(source)
            )
        });
        assert!(
            !module.entry_points.is_empty(),
            "shaders/{name}.wgsl has no entry point"
        );
    }
}

#[test]
fn every_wgsl_file_is_embedded() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).expect("shaders/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("wgsl") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            let on_disk = std::fs::read_to_string(&path).unwrap();
            let embedded = ttrec::gpu::shaders::source(&stem).unwrap_or_else(|| {
                panic!("{} is not listed in src/gpu/shaders.rs", path.display())
            });
            assert_eq!(
                embedded,
                on_disk,
                "{} differs from the embedded copy",
                path.display()
            );
        }
    }
}
