//! `--plot FILE.svg|FILE.png`: the data, the fitted curve and the residuals (plotters).
//!
//! Text needs a TrueType/OpenType font (plotters' `ab_glyph` backend reads font bytes; nothing
//! is bundled): `NLSQ_PLOT_FONT`, else a few usual system paths. Without one the plot is drawn
//! without text and a warning says so. `NLSQ_PLOT_FONT=none` forces that.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Above this many points, every k-th point is drawn.
const MAX_POINTS: usize = 20_000;
const SIZE: (u32, u32) = (960, 720);

/// What to draw.
pub struct PlotData {
    /// One independent variable: the data x; several: `None` (observed vs fitted is drawn).
    pub x: Option<Vec<f64>>,
    pub y: Vec<f64>,
    /// Standard deviations of y, for error bars.
    pub sigma: Option<Vec<f64>>,
    /// The model at the data points.
    pub fitted: Vec<f64>,
    /// The model on a dense grid (one independent variable only).
    pub curve: Option<(Vec<f64>, Vec<f64>)>,
    /// Half-width of the curve's confidence band on that grid (`nlsq::fit::predict`).
    pub band: Option<Vec<f64>>,
    /// The band's confidence level.
    pub level: f64,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
}

static FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Finds and registers a font as "sans-serif". `Ok(false)`: none (draw without text).
fn register_font() -> Result<bool> {
    let path: Option<PathBuf> = match std::env::var_os("NLSQ_PLOT_FONT") {
        Some(v) if v == "none" => return Ok(false),
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => FONT_CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file()),
    };
    let Some(path) = path else { return Ok(false) };
    let bytes =
        std::fs::read(&path).with_context(|| format!("cannot read plot font {} (NLSQ_PLOT_FONT)", path.display()))?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a TrueType/OpenType font (NLSQ_PLOT_FONT)", path.display()))?;
    Ok(true)
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (-1.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        0.05 * span
    } else {
        0.1 * lo.abs().max(1.0)
    };
    (lo - pad, hi + pad)
}

/// Splits a polyline at non-finite values.
fn segments(xs: &[f64], ys: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for (&x, &y) in xs.iter().zip(ys) {
        if x.is_finite() && y.is_finite() {
            out.last_mut().expect("non-empty").push((x, y));
        } else if !out.last().expect("non-empty").is_empty() {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &PlotData, text: bool) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (_, h) = root.dim_in_pixel();
    let (top, bottom) = root.split_vertically((h as f64 * 0.68) as u32);
    let stride = d.y.len().div_ceil(MAX_POINTS).max(1);
    let idx: Vec<usize> = (0..d.y.len()).step_by(stride).collect();
    // The library's sign: `fun = model - y`.
    let residuals: Vec<f64> = d.y.iter().zip(&d.fitted).map(|(y, f)| f - y).collect();
    let label_x = if text { 48 } else { 0 };
    let label_y = if text { 80 } else { 0 };
    let point_size = if idx.len() > 2000 { 1 } else { 3 };
    let data_color = RGBColor(31, 119, 180);
    let fit_color = RGBColor(214, 39, 40);

    // Upper panel: data and fit (one variable), or observed vs fitted (several).
    let (xs, ys): (Vec<f64>, Vec<f64>) = match &d.x {
        Some(x) => (
            idx.iter().map(|&i| x[i]).collect(),
            idx.iter().map(|&i| d.y[i]).collect(),
        ),
        None => (
            idx.iter().map(|&i| d.fitted[i]).collect(),
            idx.iter().map(|&i| d.y[i]).collect(),
        ),
    };
    let curve: Vec<Vec<(f64, f64)>> = match (&d.x, &d.curve) {
        (Some(_), Some((cx, cy))) => segments(cx, cy),
        _ => {
            let (lo, hi) = range(xs.iter().chain(&ys).copied());
            vec![vec![(lo, lo), (hi, hi)]]
        }
    };
    let bars: Vec<(f64, f64, f64)> = match (&d.x, &d.sigma) {
        (Some(x), Some(s)) if idx.len() <= 2000 => idx.iter().map(|&i| (x[i], d.y[i] - s[i], d.y[i] + s[i])).collect(),
        _ => Vec::new(),
    };
    let (x0, x1) = range(xs.iter().copied().chain(curve.iter().flatten().map(|p| p.0)));
    let (y0, y1) = range(
        ys.iter()
            .copied()
            .chain(curve.iter().flatten().map(|p| p.1))
            .chain(bars.iter().flat_map(|b| [b.1, b.2])),
    );
    let mut builder = ChartBuilder::on(&top);
    builder.margin(12).x_label_area_size(label_x).y_label_area_size(label_y);
    if text {
        builder.caption(&d.title, ("sans-serif", 18));
    }
    let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?;
    let (x_desc, y_desc) = match &d.x {
        Some(_) => (d.x_label.clone(), d.y_label.clone()),
        None => (format!("fitted {}", d.y_label), format!("observed {}", d.y_label)),
    };
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if text {
        mesh.x_desc(x_desc).y_desc(y_desc).label_style(("sans-serif", 13));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(err)?;
    if !text {
        chart
            .draw_series(std::iter::once(Rectangle::new([(x0, y0), (x1, y1)], BLACK.mix(0.6))))
            .map_err(err)?;
    }
    for (x, lo, hi) in &bars {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*x, *lo), (*x, *hi)],
                data_color.mix(0.5),
            )))
            .map_err(err)?;
    }
    let data_series = chart
        .draw_series(
            xs.iter()
                .zip(&ys)
                .map(|(&x, &y)| Circle::new((x, y), point_size, data_color.filled())),
        )
        .map_err(err)?;
    if text {
        let label = if d.x.is_some() { "data" } else { "observed vs fitted" };
        data_series
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, data_color.filled()));
    }
    // The confidence band, where it is finite over the whole grid.
    if let (Some(_), Some((cx, cy)), Some(band)) = (&d.x, &d.curve, &d.band) {
        let finite = cy.iter().zip(band).all(|(y, b)| y.is_finite() && b.is_finite());
        if finite && !band.is_empty() {
            let upper = cx
                .iter()
                .zip(cy)
                .zip(band)
                .map(|((&x, &y), &b)| (x, (y + b).min(y1).max(y0)));
            let lower = cx
                .iter()
                .zip(cy)
                .zip(band)
                .map(|((&x, &y), &b)| (x, (y - b).min(y1).max(y0)));
            let outline: Vec<(f64, f64)> = upper.chain(lower.rev()).collect();
            let series = chart
                .draw_series(std::iter::once(Polygon::new(outline, fit_color.mix(0.18).filled())))
                .map_err(err)?;
            if text {
                let label = format!("{}% confidence band", 100.0 * d.level);
                series
                    .label(label)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 20, y + 4)], fit_color.mix(0.18).filled()));
            }
        }
    }
    for (i, seg) in curve.into_iter().enumerate() {
        let series = chart
            .draw_series(LineSeries::new(seg, fit_color.stroke_width(2)))
            .map_err(err)?;
        if text && i == 0 {
            let label = if d.x.is_some() { "fit" } else { "y = x" };
            series
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], fit_color.stroke_width(2)));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
    }

    // Lower panel: residuals f - y against x (one variable) or the point index (several).
    let rx: Vec<f64> = match &d.x {
        Some(x) => idx.iter().map(|&i| x[i]).collect(),
        None => idx.iter().map(|&i| i as f64).collect(),
    };
    let ry: Vec<f64> = idx.iter().map(|&i| residuals[i]).collect();
    let (rx0, rx1) = if d.x.is_some() {
        (x0, x1)
    } else {
        range(rx.iter().copied())
    };
    let (ry0, ry1) = range(ry.iter().copied().chain([0.0]));
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(label_x)
        .y_label_area_size(label_y)
        .build_cartesian_2d(rx0..rx1, ry0..ry1)
        .map_err(err)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if text {
        let xd = if d.x.is_some() {
            d.x_label.clone()
        } else {
            "point".to_string()
        };
        mesh.x_desc(xd)
            .y_desc("residual (fit - y)")
            .label_style(("sans-serif", 13));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(err)?;
    if !text {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(rx0, ry0), (rx1, ry1)],
                BLACK.mix(0.6),
            )))
            .map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(vec![(rx0, 0.0), (rx1, 0.0)], BLACK.mix(0.6)))
        .map_err(err)?;
    chart
        .draw_series(
            rx.iter()
                .zip(&ry)
                .map(|(&x, &y)| Circle::new((x, y), point_size.min(2), data_color.filled())),
        )
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Writes the plot to `path` (`.svg` or `.png`). Returns a warning to print, if any.
pub fn write(path: &Path, d: &PlotData) -> Result<Option<String>> {
    let text = register_font()?;
    let warning = (!text).then(|| {
        "no TrueType font found for the plot's text (set NLSQ_PLOT_FONT to a .ttf file); it has no labels".to_string()
    });
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => {
            let mut s = String::new();
            {
                let root = SVGBackend::with_string(&mut s, SIZE).into_drawing_area();
                draw(&root, d, text)?;
            }
            std::fs::write(path, s).with_context(|| format!("cannot write plot {}", path.display()))?;
        }
        Some("png") => {
            let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
                draw(&root, d, text)?;
            }
            let file = std::fs::File::create(path).with_context(|| format!("cannot write plot {}", path.display()))?;
            let mut enc = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc
                .write_header()
                .with_context(|| format!("cannot write plot {}", path.display()))?;
            w.write_image_data(&buf)
                .with_context(|| format!("cannot write plot {}", path.display()))?;
            w.finish()
                .with_context(|| format!("cannot write plot {}", path.display()))?;
        }
        _ => bail!("--plot {}: the file must end in .svg or .png", path.display()),
    }
    Ok(warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_at_non_finite_values() {
        let s = segments(&[0.0, 1.0, 2.0, 3.0, 4.0], &[1.0, f64::NAN, 2.0, 3.0, f64::INFINITY]);
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }

    #[test]
    fn ranges_are_padded_and_never_empty() {
        assert_eq!(range([1.0, 1.0].into_iter()), (0.9, 1.1));
        assert_eq!(range([f64::NAN].into_iter()), (-1.0, 1.0));
        let (lo, hi) = range([0.0, 10.0].into_iter());
        assert!(lo < 0.0 && hi > 10.0);
    }
}
