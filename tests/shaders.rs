//! Every shader parses, validates, and translates to SPIR-V, MSL, HLSL and GLSL, so a shader
//! that would break on Metal, DX12 or GL fails here without that hardware.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

#[test]
fn every_shader_validates_and_translates_to_all_backends() {
    let shaders = vramzip::gpu::shaders::ALL;
    assert!(
        !shaders.is_empty(),
        "the shader list is empty: nothing would be checked"
    );
    for (name, source) in shaders {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::default())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));

        // the specializations pipelines are built with: flags off and on, batch sizes 1 and 16
        let names: Vec<String> = module
            .overrides
            .iter()
            .filter_map(|(_, o)| o.name.clone())
            .collect();
        for value in [0.0, 1.0] {
            let mut constants = naga::back::PipelineConstants::default();
            for n in &names {
                let v = if n == "BATCH" {
                    1.0 + 15.0 * value
                } else {
                    value
                };
                constants.insert(n.clone(), v);
            }
            let (module, info) =
                naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
                    .unwrap_or_else(|e| panic!("{name} with overrides {value}: {e}"));
            translate_everywhere(name, &module, &info);
        }
    }
}

fn translate_everywhere(name: &str, module: &naga::Module, info: &naga::valid::ModuleInfo) {
    let words = spv::write_vec(module, info, &spv::Options::default(), None)
        .unwrap_or_else(|e| panic!("{name} SPIR-V: {e}"));
    assert!(words.len() > 100, "{name}: SPIR-V suspiciously short");

    // MSL 2.0, the oldest that wgpu's Metal backend runs (the decoders need reverse_bits, 1.2+)
    let metal_options = msl::Options {
        lang_version: (2, 0),
        ..Default::default()
    };
    let (metal, _) = msl::write_string(
        module,
        info,
        &metal_options,
        &msl::PipelineOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{name} MSL: {e}"));
    assert!(metal.contains("kernel"), "{name}: no kernel in MSL");

    let mut hlsl_out = String::new();
    hlsl::Writer::new(
        &mut hlsl_out,
        &hlsl::Options::default(),
        &hlsl::PipelineOptions::default(),
    )
    .write(module, info, None)
    .unwrap_or_else(|e| panic!("{name} HLSL: {e}"));
    assert!(
        hlsl_out.contains("numthreads"),
        "{name}: no entry point in HLSL"
    );

    for ep in &module.entry_points {
        let mut glsl_out = String::new();
        let options = glsl::Options {
            version: glsl::Version::Embedded {
                version: 310,
                is_webgl: false,
            },
            ..Default::default()
        };
        let pipeline = glsl::PipelineOptions {
            shader_stage: ep.stage,
            entry_point: ep.name.clone(),
            multiview: None,
        };
        glsl::Writer::new(
            &mut glsl_out,
            module,
            info,
            &options,
            &pipeline,
            naga::proc::BoundsCheckPolicies::default(),
        )
        .and_then(|mut w| w.write().map(|_| ()))
        .unwrap_or_else(|e| panic!("{name} GLSL ({}): {e}", ep.name));
        assert!(
            glsl_out.contains("local_size_x"),
            "{name}: no compute layout in GLSL"
        );
    }
}
