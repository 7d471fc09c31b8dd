//! The scaling report: a log-log SVG plot of time against sequence length, one line per
//! variant, and the fitted exponent of each (time ∝ L^k; linear-time kernels give k ≈ 1).

use super::BenchRow;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Points (L, seconds) of one variant.
pub type Series = Vec<(f64, f64)>;

/// Groups rows of one case kind into series by variant; the length is read from the shape's
/// `L=` field.
pub fn series(rows: &[BenchRow], case: &str) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.case == case) {
        if let Some(l) = length_of(&r.shape) {
            out.entry(r.variant.clone()).or_default().push((l, r.stats.median));
        }
    }
    out
}

/// The same series from a saved `linseq bench --scaling --json` file (to redraw a plot).
pub fn series_from_json(doc: &serde_json::Value, case: &str) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for r in doc["rows"].as_array().into_iter().flatten().filter(|r| r["case"] == case) {
        let len = length_of(r["shape"].as_str().unwrap_or(""));
        if let (Some(l), Some(t), Some(v)) = (len, r["stats"]["median"].as_f64(), r["variant"].as_str()) {
            out.entry(v.to_string()).or_default().push((l, t));
        }
    }
    out
}

/// The value of `key` (such as `"L="`) in a shape description like "B=1 d=384 L=4096 N=16".
pub fn shape_field<'a>(shape: &'a str, key: &str) -> Option<&'a str> {
    shape.split_whitespace().find_map(|f| f.strip_prefix(key))
}

/// The sequence length of a shape description.
fn length_of(shape: &str) -> Option<f64> {
    shape_field(shape, "L=").and_then(|v| v.parse().ok())
}

/// Least-squares slope of ln(time) against ln(L) over the points with L ≥ `min_len` (None
/// with fewer than two such points).
pub fn fitted_exponent(points: &[(f64, f64)], min_len: f64) -> Option<f64> {
    let pts: Vec<(f64, f64)> =
        points.iter().filter(|p| p.0 >= min_len && p.1 > 0.0).map(|&(l, t)| (l.ln(), t.ln())).collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

const COLORS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// Renders the series as a log-log SVG plot (time in ms against L), with decade grid lines and
/// a legend that gives each variant's fitted exponent over L ≥ `fit_from`.
pub fn svg(title: &str, series: &BTreeMap<String, Series>, fit_from: f64) -> String {
    let (w, h) = (760.0, 500.0);
    let (left, right, top, bottom) = (80.0, 230.0, 50.0, 60.0);
    let all: Vec<(f64, f64)> = series.values().flatten().copied().collect();
    let lo_hi = |f: &dyn Fn(&(f64, f64)) -> f64| {
        let lo = all.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi = all.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        // A point a hair past a decade line does not open a whole empty decade.
        let (a, b) = ((lo.log10() + 0.03).floor(), (hi.log10() - 0.03).ceil());
        (a, b.max(a + 1.0))
    };
    let (x0, x1) = if all.is_empty() { (3.0, 6.0) } else { lo_hi(&|p| p.0) };
    let (y0, y1) = if all.is_empty() { (-1.0, 1.0) } else { lo_hi(&|p| p.1 * 1e3) };
    let pw = w - left - right;
    let ph = h - top - bottom;
    let px = |l: f64| left + (l.log10() - x0) / (x1 - x0) * pw;
    let py = |ms: f64| top + ph - (ms.log10() - y0) / (y1 - y0) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="15" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        escape(title)
    );
    // Decade grid and labels.
    for e in x0 as i32..=x1 as i32 {
        let x = px(10f64.powi(e));
        let _ =
            writeln!(s, r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##, top + ph);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            top + ph + 18.0,
            pow10_label(e)
        );
    }
    for e in y0 as i32..=y1 as i32 {
        let y = py(10f64.powi(e));
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            left + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + 4.0,
            ms_label(e)
        );
    }
    let _ =
        writeln!(s, r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">sequence length L (tokens)</text>"#,
        left + pw / 2.0,
        h - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">time per call (ms)</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> =
            pts.iter().map(|&(l, t)| format!("{:.1},{:.1}", px(l), py(t * 1e3))).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for &(l, t) in pts {
            let _ =
                writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, px(l), py(t * 1e3));
        }
        let k = fitted_exponent(pts, fit_from).map_or("–".to_string(), |k| format!("{k:.3}"));
        let ly = top + 14.0 + 20.0 * i as f64;
        let lx = left + pw + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/>"#,
            ly - 4.0,
            lx + 20.0,
            ly - 4.0
        );
        let short = name.rsplit_once("selective_scan.").map_or(name.as_str(), |(_, v)| v);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{ly:.1}">{} (k = {k})</text>"#, lx + 26.0, escape(short));
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" fill="#555">k: fitted exponent, L ≥ {}</text>"##,
        left + pw + 14.0,
        top + 14.0 + 20.0 * series.len() as f64 + 6.0,
        fit_from
    );
    s.push_str("</svg>\n");
    s
}

fn pow10_label(e: i32) -> String {
    match e {
        3 => "1K".into(),
        4 => "10K".into(),
        5 => "100K".into(),
        6 => "1M".into(),
        7 => "10M".into(),
        _ => format!("1e{e}"),
    }
}

fn ms_label(e: i32) -> String {
    if e >= 0 {
        format!("{}", 10f64.powi(e))
    } else {
        format!("{:.*}", (-e) as usize, 10f64.powi(e))
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponent_of_power_laws() {
        let lin: Vec<(f64, f64)> = (10..20).map(|e| (2f64.powi(e), 3e-9 * 2f64.powi(e))).collect();
        assert!((fitted_exponent(&lin, 0.0).unwrap() - 1.0).abs() < 1e-12);
        let quad: Vec<(f64, f64)> = (10..20).map(|e| (2f64.powi(e), 1e-12 * 4f64.powi(e))).collect();
        assert!((fitted_exponent(&quad, 0.0).unwrap() - 2.0).abs() < 1e-12);
        // A constant floor below 2^14 is left out of the fit.
        let floor: Vec<(f64, f64)> =
            (10..20).map(|e| (2f64.powi(e), (1e-9 * 2f64.powi(e)).max(1e-5))).collect();
        assert!((fitted_exponent(&floor, 16384.0).unwrap() - 1.0).abs() < 1e-12);
        assert!(fitted_exponent(&lin[..1], 0.0).is_none());
    }

    #[test]
    fn svg_has_a_line_per_variant() {
        let mut s = BTreeMap::new();
        s.insert("selective_scan.tiled".to_string(), vec![(1024.0, 1e-4), (2048.0, 2e-4)]);
        s.insert("selective_scan.solo".to_string(), vec![(1024.0, 2e-4), (2048.0, 4e-4)]);
        let svg = svg("scan <test>", &s, 0.0);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("tiled (k = 1.000)") && svg.contains("&lt;test&gt;"));
    }
}
