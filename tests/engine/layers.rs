//! The layer rule of `docs/ARCHITECTURE.md`: no module names a layer above its own.

use std::collections::BTreeMap;
use std::path::Path;

const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Device", "device"),
    ("Error", "error"),
    ("Result", "error"),
    ("Tensor", "tensor"),
    ("DType", "tensor"),
    ("wgsl_source", "shader"),
    ("uniform", "shader"),
    ("flags", "shader"),
];

/// The layers in order, read from the marked list of the architecture document.
fn layer_order() -> Vec<String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md");
    let start = doc.find("<!-- layers -->").expect("the layers block") + "<!-- layers -->".len();
    let end = doc.find("<!-- /layers -->").expect("the end of the layers block");
    doc[start..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|l| l.split(':').next().unwrap().trim().to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::<name>` a source names outside comments.
fn named_layers(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in src.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.push(name);
            rest = after;
        }
    }
    out
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let order = layer_order();
    assert!(order.len() >= 8, "layer list too short: {order:?}");
    let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut placed = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if matches!(top.as_str(), "lib" | "main") || top.ends_with("_cmds") {
            continue; // the crate root and the binary sit above every layer
        }
        let Some(&own) = rank.get(top.as_str()) else {
            violations
                .push(format!("{}: module `{top}` is in no layer of docs/ARCHITECTURE.md", rel.display()));
            continue;
        };
        placed += 1;
        for name in named_layers(&std::fs::read_to_string(f).unwrap()) {
            let layer = ROOT_ITEMS.iter().find(|(item, _)| *item == name).map_or(name.as_str(), |(_, l)| l);
            match rank.get(layer) {
                Some(&r) if r <= own => {}
                Some(_) => violations
                    .push(format!("{}: `{top}` names `crate::{name}`, a layer above it", rel.display())),
                None => violations.push(format!("{}: `crate::{name}` belongs to no layer", rel.display())),
            }
        }
    }
    assert!(placed > 30, "only {placed} files checked");
    assert!(violations.is_empty(), "layer violations:\n{}", violations.join("\n"));
}

#[test]
fn the_layer_scanner_sees_imports_and_skips_comments() {
    let src = "use crate::ops::x; // crate::model\n/// [`crate::bench`]\nlet a = crate::Device::new();";
    assert_eq!(named_layers(src), vec!["ops".to_string(), "Device".to_string()]);
}
