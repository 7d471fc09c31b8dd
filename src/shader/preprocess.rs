//! The `{{NAME}}` / `#if NAME` preprocessor applied to WGSL family sources.

use std::collections::BTreeMap;

fn truthy(defines: &BTreeMap<&'static str, String>, name: &str) -> bool {
    defines.get(name).is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// Applies conditionals and substitutions. Errors name the line at fault.
pub fn preprocess(src: &str, defines: &BTreeMap<&'static str, String>) -> Result<String, String> {
    // Stack of (this branch active, any enclosing inactive).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut out = String::with_capacity(src.len());
    for (lineno, line) in src.lines().enumerate() {
        let t = line.trim_start();
        let active = stack.iter().all(|&(on, _)| on);
        if let Some(rest) = t.strip_prefix("#if ") {
            let (neg, name) = match rest.trim().strip_prefix('!') {
                Some(n) => (true, n.trim()),
                None => (false, rest.trim()),
            };
            stack.push((truthy(defines, name) != neg, !active));
            out.push('\n');
            continue;
        }
        if t.starts_with("#else") {
            let top = stack.last_mut().ok_or(format!("line {}: #else without #if", lineno + 1))?;
            top.0 = !top.0;
            out.push('\n');
            continue;
        }
        if t.starts_with("#endif") {
            stack.pop().ok_or(format!("line {}: #endif without #if", lineno + 1))?;
            out.push('\n');
            continue;
        }
        if !active {
            out.push('\n'); // keep line numbers aligned with the source file
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let end = rest[start..].find("}}").ok_or(format!("line {}: unclosed {{{{", lineno + 1))?;
            let name = &rest[start + 2..start + end];
            let value =
                defines.get(name).ok_or(format!("line {}: define {name:?} is not set", lineno + 1))?;
            out.push_str(&rest[..start]);
            out.push_str(value);
            rest = &rest[start + end + 2..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    if !stack.is_empty() {
        return Err("unterminated #if".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditionals_and_substitution() {
        let mut d = BTreeMap::new();
        d.insert("T", "f16".to_string());
        d.insert("A", "1".to_string());
        let src = "x: {{T}}\n#if A\na\n#if !B\nnb\n#else\nb\n#endif\n#else\nna\n#endif\nend";
        let out = preprocess(src, &d).unwrap();
        let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, vec!["x: f16", "a", "nb", "end"]);
        assert_eq!(out.lines().count(), src.lines().count());
    }

    #[test]
    fn errors_name_the_problem() {
        let d = BTreeMap::new();
        assert!(preprocess("{{X}}", &d).unwrap_err().contains("\"X\""));
        assert!(preprocess("#if A\n", &d).unwrap_err().contains("unterminated"));
        assert!(preprocess("#endif\n", &d).unwrap_err().contains("without"));
    }
}
