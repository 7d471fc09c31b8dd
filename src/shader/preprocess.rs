//! The `{{NAME}}` / `#if NAME` / `#for NAME in LO..HI` preprocessor applied to WGSL family
//! sources. `#for` repeats its body (up to the matching `#endfor`) with `{{NAME}}` set to each
//! index: it names values that must stay in registers, such as cooperative-matrix fragments,
//! which an array indexed in a loop may leave in memory.

use std::collections::BTreeMap;

fn truthy(defines: &BTreeMap<&str, String>, name: &str) -> bool {
    defines.get(name).is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// A `#for` bound: a number, or a define that holds one.
fn bound(defines: &BTreeMap<&str, String>, b: &str, lineno: usize) -> Result<usize, String> {
    let b = b.trim();
    let v = defines.get(b).map_or(b, String::as_str);
    v.parse().map_err(|_| format!("line {lineno}: #for bound {b:?} is not a number"))
}

/// Applies conditionals, loops and substitutions. Errors name the line at fault.
pub fn preprocess(src: &str, defines: &BTreeMap<&str, String>) -> Result<String, String> {
    // Stack of (this branch active, any enclosing inactive).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut out = String::with_capacity(src.len());
    let lines: Vec<&str> = src.lines().collect();
    let mut next = 0;
    while next < lines.len() {
        let (lineno, line) = (next, lines[next]);
        next += 1;
        let t = line.trim_start();
        let active = stack.iter().all(|&(on, _)| on);
        if let Some(rest) = t.strip_prefix("#for ") {
            // The body, up to the matching #endfor.
            let mut depth = 1;
            let start = next;
            while depth > 0 {
                let l =
                    lines.get(next).ok_or(format!("line {}: #for without #endfor", lineno + 1))?.trim_start();
                depth += usize::from(l.starts_with("#for ")) - usize::from(l.starts_with("#endfor"));
                next += 1;
            }
            let body = lines[start..next - 1].join("\n");
            if active {
                let err = || format!("line {}: expected `#for NAME in LO..HI`", lineno + 1);
                let (name, range) = rest.split_once(" in ").ok_or_else(err)?;
                let (lo, hi) = range.split_once("..").ok_or_else(err)?;
                let (lo, hi) = (bound(defines, lo, lineno + 1)?, bound(defines, hi, lineno + 1)?);
                let mut inner: BTreeMap<&str, String> = defines.clone();
                for i in lo..hi {
                    inner.insert(name.trim(), i.to_string());
                    out.push_str(&preprocess(&body, &inner)?);
                }
            }
            continue;
        }
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
        if t.starts_with("#endfor") {
            return Err(format!("line {}: #endfor without #for", lineno + 1));
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
    fn loops_repeat_their_body_with_the_index() {
        let mut d = BTreeMap::new();
        d.insert("N", "2".to_string());
        d.insert("A", "1".to_string());
        let src = "#for K in 0..N\nv{{K}}\n#for J in 1..3\n#if A\nw{{K}}{{J}}\n#endif\n#endfor\n#endfor\nend";
        let out = preprocess(src, &d).unwrap();
        let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, vec!["v0", "w01", "w02", "v1", "w11", "w12", "end"]);
        // An inactive loop needs no bounds.
        assert_eq!(preprocess("#if B\n#for K in 0..M\nx\n#endfor\n#endif\ny", &d).unwrap().trim(), "y");
        assert!(preprocess("#for K in 0..M\nx\n#endfor", &d).unwrap_err().contains("\"M\""));
        assert!(preprocess("#for K in 0..2\nx", &d).unwrap_err().contains("without #endfor"));
    }

    #[test]
    fn errors_name_the_problem() {
        let d = BTreeMap::new();
        assert!(preprocess("{{X}}", &d).unwrap_err().contains("\"X\""));
        assert!(preprocess("#if A\n", &d).unwrap_err().contains("unterminated"));
        assert!(preprocess("#endif\n", &d).unwrap_err().contains("without"));
    }
}
