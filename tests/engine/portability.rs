//! Every registered variant validates with naga and translates to each target its features
//! allow: f32 to all four, f16 to SPIR-V/MSL/HLSL, cooperative matrices to SPIR-V/MSL.

use linseq::ops::{self as shader, FAMILIES};
use linseq::shader::validate::{self, Outcome, Target};

#[test]
fn every_variant_reaches_every_target_its_features_allow() {
    let reports = validate::quietly(|| validate::check_all(&shader::registry()));
    assert!(reports.len() >= 40, "only {} variants registered", reports.len());
    let mut failures = Vec::new();
    for r in &reports {
        if let Some(e) = &r.validation {
            failures.push(format!("{}: {e}", r.variant));
            continue;
        }
        let v = shader::find(&r.variant).unwrap();
        for (t, o) in &r.targets {
            let expected = match t {
                Target::Glsl => !v.requires.f16 && !v.requires.coop_matrix,
                Target::Hlsl => !v.requires.coop_matrix,
                Target::SpirV | Target::Msl => true,
            };
            match (o, expected) {
                (Outcome::Ok, _) => {}
                (Outcome::NotApplicable(_), false) => {}
                (o, _) => failures.push(format!("{} -> {}: {o:?}", r.variant, t.name())),
            }
        }
    }
    assert!(failures.is_empty(), "portability failures:\n{}", failures.join("\n"));
    // The feature classes the foundation promises are all represented.
    let all = shader::registry();
    assert!(all.iter().any(|v| v.requires.subgroups), "no subgroup variant");
    assert!(all.iter().any(|v| v.requires.f16 && !v.requires.coop_matrix), "no f16 variant");
    assert!(all.iter().any(|v| v.requires.coop_matrix), "no cooperative-matrix variant");
}

#[test]
fn variant_names_are_unique_and_every_family_is_used() {
    let all = shader::registry();
    let mut names: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    let n = names.len();
    names.dedup();
    assert_eq!(n, names.len(), "duplicate variant names");
    for f in FAMILIES {
        for src in f.sources {
            assert!(all.iter().any(|v| v.source == src), "{}: source {} has no variant", f.name, src.name);
        }
        assert!(
            (f.variants)().iter().all(|v| f.sources.contains(v.source)),
            "{} registers a foreign source",
            f.name
        );
    }
    assert!(shader::find("no.such.variant").is_err());
}

#[test]
fn every_kernel_declares_its_uniform_block_as_the_wgsl_lays_it_out() {
    let failures: Vec<String> =
        shader::registry().iter().filter_map(|v| linseq::shader::uniform::check_layout(v).err()).collect();
    assert!(failures.is_empty(), "uniform layout mismatches:\n{}", failures.join("\n"));
}

#[test]
fn the_layout_check_catches_a_field_out_of_place() {
    linseq::uniform! {
        struct Swapped { n4: u32, extra: f32 }
    }
    let v = shader::find("copy.vec4").unwrap().with_params::<Swapped>();
    let e = linseq::shader::uniform::check_layout(&v).unwrap_err();
    assert!(e.contains("Swapped") && e.contains("extra"), "{e}");
    let mut none = shader::find("copy.vec4").unwrap();
    none.params = None;
    assert!(linseq::shader::uniform::check_layout(&none).unwrap_err().contains("no Rust layout"));
}
