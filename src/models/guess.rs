//! The starting-value estimates of the built-in models (the heuristics are described in the
//! [module documentation](super#starting-values)). Every function takes the points sorted by
//! x, at least two of them, all finite.

use std::f64::consts::{LN_2, PI};

use super::host::{eval, lin_grid, log_grid, lstsq, smooth};
use super::{Builtin, Component, Role};

/// The most points a grid search evaluates (the data are thinned evenly beyond it).
const GRID_POINTS: usize = 2000;

/// The starting point of a sum of components on the data `(xs, ys)`.
pub(super) fn composite(components: &[Component], n: usize, xs: &[f64], ys: &[f64]) -> Vec<f64> {
    let mut p = vec![0.0; n];
    let mut residual = ys.to_vec();
    let of = |role: Role| -> Vec<&Component> { components.iter().filter(|c| c.kind.role() == role).collect() };
    let (peaks, backgrounds, others) = (of(Role::Peak), of(Role::Background), of(Role::Other));
    let offset = !backgrounds.is_empty();
    let take = |c: &Component, values: Vec<f64>, residual: &mut Vec<f64>, p: &mut Vec<f64>| {
        for (i, r) in residual.iter_mut().enumerate() {
            let v = eval(&c.expr, xs[i], &values);
            if v.is_finite() {
                *r -= v;
            }
        }
        p[c.param_range()].copy_from_slice(&values);
    };
    if peaks.is_empty() {
        for c in &others {
            let values = other(c.kind, xs, &residual, offset);
            take(c, values, &mut residual, &mut p);
        }
        if let Some(c) = backgrounds.first() {
            let values = background(c.kind, xs, &residual);
            take(c, values, &mut residual, &mut p);
        }
        return p;
    }
    if let Some(c) = backgrounds.first() {
        let (ex, ey) = edges(xs, &residual, c.kind.params().len());
        let values = background(c.kind, &ex, &ey);
        take(c, values, &mut residual, &mut p);
    }
    for c in &others {
        let values = other(c.kind, xs, &residual, offset);
        take(c, values, &mut residual, &mut p);
    }
    let mut found: Vec<(f64, f64)> = Vec::new();
    for c in &peaks {
        let (values, center, fwhm) = peak(c.kind, xs, &residual, &found);
        take(c, values, &mut residual, &mut p);
        found.push((center - fwhm, center + fwhm));
    }
    p
}

/// The first and last fifth of the points (at least `coefs + 1` of each, all when there are
/// not enough for that).
fn edges(xs: &[f64], ys: &[f64], coefs: usize) -> (Vec<f64>, Vec<f64>) {
    let m = xs.len();
    let k = (m / 5).max(coefs + 1);
    if 2 * k >= m {
        return (xs.to_vec(), ys.to_vec());
    }
    let idx = (0..k).chain(m - k..m);
    idx.map(|i| (xs[i], ys[i])).unzip()
}

/// Every `⌈m / GRID_POINTS⌉`-th point.
fn thin(xs: &[f64], ys: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let step = xs.len().div_ceil(GRID_POINTS).max(1);
    xs.iter().zip(ys).step_by(step).map(|(a, b)| (*a, *b)).unzip()
}

/// The x range (positive: 1 when all x are equal).
fn span(xs: &[f64]) -> f64 {
    let s = xs[xs.len() - 1] - xs[0];
    if s > 0.0 {
        s
    } else {
        1.0
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Polynomial coefficients `c0..ck` (in x) of the least-squares fit of degree `k`, computed in
/// `t = (x − mean)/half range` and converted back; the mean and zeros when that fails.
fn polynomial(xs: &[f64], ys: &[f64], k: usize) -> Vec<f64> {
    let mut c = vec![0.0; k + 1];
    c[0] = mean(ys);
    if k == 0 {
        return c;
    }
    let (mu, s) = (mean(xs), 0.5 * span(xs));
    let t: Vec<f64> = xs.iter().map(|x| (x - mu) / s).collect();
    let cols: Vec<Vec<f64>> = (0..=k).map(|j| t.iter().map(|t| t.powi(j as i32)).collect()).collect();
    let Some((a, _)) = lstsq(&cols, ys) else { return c };
    // Σ_j a_j ((x − μ)/s)^j = Σ_j a_j s^−j Σ_i C(j, i) x^i (−μ)^(j−i).
    c.fill(0.0);
    for (j, aj) in a.iter().enumerate() {
        let mut binom = 1.0;
        for (i, ci) in c.iter_mut().enumerate().take(j + 1) {
            *ci += aj * s.powi(-(j as i32)) * binom * (-mu).powi((j - i) as i32);
            binom = binom * (j - i) as f64 / (i + 1) as f64;
        }
    }
    c
}

/// A background component's parameters fitted to `(xs, ys)` by linear least squares.
fn background(kind: Builtin, xs: &[f64], ys: &[f64]) -> Vec<f64> {
    match kind {
        Builtin::Constant => vec![mean(ys)],
        Builtin::Linear => {
            let c = polynomial(xs, ys, 1);
            vec![c[1], c[0]]
        }
        Builtin::Polynomial(k) => polynomial(xs, ys, k),
        other => vec![0.0; other.params().len()],
    }
}

/// The best of `candidates` by the residual sum of squares of the least-squares fit of the
/// columns each one gives (with a column of ones appended when `offset`): the candidate and
/// the linear coefficients.
fn best<T: Copy>(
    candidates: impl IntoIterator<Item = T>,
    ys: &[f64],
    offset: bool,
    columns: impl Fn(T) -> Vec<Vec<f64>>,
) -> Option<(T, Vec<f64>)> {
    let mut best: Option<(f64, T, Vec<f64>)> = None;
    for cand in candidates {
        let mut cols = columns(cand);
        if offset {
            cols.push(vec![1.0; ys.len()]);
        }
        if let Some((coef, sse)) = lstsq(&cols, ys) {
            if best.as_ref().map_or(true, |b| sse < b.0) {
                best = Some((sse, cand, coef));
            }
        }
    }
    best.map(|(_, c, coef)| (c, coef))
}

/// A component that is neither a peak nor a background, estimated on `(xs, ys)`; `offset`
/// lets the grid searches absorb a constant that the sum's background will take.
fn other(kind: Builtin, xs: &[f64], ys: &[f64], offset: bool) -> Vec<f64> {
    let (gx, gy) = thin(xs, ys);
    let s = span(&gx);
    let x0 = gx[0];
    let positive: Vec<f64> = gx.iter().copied().filter(|x| *x > 0.0).collect();
    let (pos_lo, pos_hi) = match (positive.first(), positive.last()) {
        (Some(&a), Some(&b)) if b > a => (a, b),
        (Some(&a), _) => (a, 2.0 * a),
        _ => (0.1, 1.0),
    };
    // exp(−(x − x0)/τ) for conditioning; the amplitude at x = 0 is the coefficient times e^(x0/τ).
    let decay = |tau: f64| -> Vec<f64> { gx.iter().map(|x| (-(x - x0) / tau).exp()).collect() };
    match kind {
        Builtin::ExpDecay => {
            let taus = log_grid(s / 100.0, 10.0 * s, 60);
            match best(taus, &gy, false, |tau| vec![decay(tau), vec![1.0; gy.len()]]) {
                Some((tau, c)) => vec![c[0] * (x0 / tau).exp(), tau, c[1]],
                None => vec![gy[0] - gy[gy.len() - 1], s / 3.0, gy[gy.len() - 1]],
            }
        }
        Builtin::ExpDecay2 => {
            let taus = log_grid(s / 100.0, 10.0 * s, 30);
            let cols: Vec<Vec<f64>> = taus.iter().map(|&t| decay(t)).collect();
            let pairs = (0..taus.len()).flat_map(|i| (i + 1..taus.len()).map(move |j| (i, j)));
            match best(pairs, &gy, false, |(i, j)| {
                vec![cols[i].clone(), cols[j].clone(), vec![1.0; gy.len()]]
            }) {
                Some(((i, j), c)) => vec![
                    c[0] * (x0 / taus[i]).exp(),
                    taus[i],
                    c[1] * (x0 / taus[j]).exp(),
                    taus[j],
                    c[2],
                ],
                None => {
                    let a = 0.5 * (gy[0] - gy[gy.len() - 1]);
                    vec![a, s / 10.0, a, s / 2.0, gy[gy.len() - 1]]
                }
            }
        }
        Builtin::Logistic => {
            let m = gx.len();
            let centers = lin_grid(gx[m / 20], gx[(m - 1) - m / 20], 40);
            let widths = log_grid(s / 400.0, s / 2.0, 30);
            let grid = centers.iter().flat_map(|&c| widths.iter().map(move |&w| (c, w)));
            match best(grid, &gy, offset, |(c, w)| {
                vec![gx.iter().map(|x| 1.0 / (1.0 + (-(x - c) / w).exp())).collect()]
            }) {
                Some(((c, w), coef)) => vec![coef[0], c, w],
                None => vec![gy[m - 1] - gy[0], gx[m / 2], s / 10.0],
            }
        }
        Builtin::Hill => {
            let ks = log_grid(pos_lo / 2.0, 2.0 * pos_hi, 30);
            let ns = log_grid(0.3, 8.0, 25);
            let grid = ks.iter().flat_map(|&k| ns.iter().map(move |&n| (k, n)));
            match best(grid, &gy, offset, |(k, n)| {
                vec![gx
                    .iter()
                    .map(|&x| {
                        let xn = x.max(0.0).powf(n);
                        xn / (k.powf(n) + xn)
                    })
                    .collect()]
            }) {
                Some(((k, n), c)) => vec![c[0], k, n],
                None => vec![gy[gy.len() - 1], 0.5 * (pos_lo + pos_hi), 1.0],
            }
        }
        Builtin::MichaelisMenten => {
            let kms = log_grid(pos_lo / 10.0, 10.0 * pos_hi, 80);
            match best(kms, &gy, offset, |km| vec![gx.iter().map(|&x| x / (km + x)).collect()]) {
                Some((km, c)) => vec![c[0], km],
                None => vec![gy[gy.len() - 1], 0.5 * (pos_lo + pos_hi)],
            }
        }
        Builtin::PowerLaw => {
            let (px, py): (Vec<f64>, Vec<f64>) = gx
                .iter()
                .zip(&gy)
                .filter(|(x, _)| **x > 0.0)
                .map(|(a, b)| (*a, *b))
                .unzip();
            let exponents = lin_grid(-4.0, 4.0, 401);
            match best(exponents, &py, offset, |b| vec![px.iter().map(|x| x.powf(b)).collect()]) {
                Some((b, c)) if !px.is_empty() => vec![c[0], b],
                _ => vec![1.0, 1.0],
            }
        }
        Builtin::DampedSine => damped_sine(&gx, &gy, offset),
        _ => background(kind, xs, ys),
    }
}

/// `[amplitude, frequency, shift, decay]` of a damped sine (thinned, sorted data).
fn damped_sine(gx: &[f64], gy: &[f64], offset: bool) -> Vec<f64> {
    let m = gx.len();
    let s = span(gx);
    let level = mean(gy);
    let centered: Vec<f64> = gy.iter().map(|y| y - level).collect();
    let smoothed = smooth(&centered, (m / 200).clamp(1, 10));
    let threshold = 0.2 * smoothed.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    // Zero crossings with hysteresis: a crossing counts once the signal has gone past the
    // threshold on the other side; it is placed at the last sign change before that.
    let (mut side, mut last_zero, mut crossings) = (None::<bool>, None::<f64>, Vec::new());
    for i in 0..m {
        if i > 0 && (smoothed[i - 1] < 0.0) != (smoothed[i] < 0.0) {
            let (a, b) = (smoothed[i - 1], smoothed[i]);
            last_zero = Some(gx[i - 1] + (gx[i] - gx[i - 1]) * a / (a - b));
        }
        if smoothed[i].abs() > threshold {
            let up = smoothed[i] > 0.0;
            if side == Some(!up) {
                if let Some(z) = last_zero {
                    crossings.push(z);
                }
            }
            side = Some(up);
        }
    }
    let nyquist = PI * (m - 1) as f64 / s;
    let frequencies = match (crossings.first(), crossings.last()) {
        (Some(&a), Some(&b)) if crossings.len() >= 2 && b > a => {
            let w = PI * (crossings.len() - 1) as f64 / (b - a);
            lin_grid(0.7 * w, 1.3 * w, 121)
        }
        _ => log_grid(PI / s, nyquist, 400),
    };
    let decays = log_grid(s / 20.0, 20.0 * s, 25);
    let x0 = gx[0];
    let grid = frequencies.iter().flat_map(|&w| decays.iter().map(move |&d| (w, d)));
    match best(grid, gy, offset, |(w, d)| {
        let env: Vec<f64> = gx.iter().map(|x| (-(x - x0) / d).exp()).collect();
        vec![
            gx.iter().zip(&env).map(|(x, e)| e * (w * x).sin()).collect(),
            gx.iter().zip(&env).map(|(x, e)| e * (w * x).cos()).collect(),
        ]
    }) {
        // a sin(wx) + b cos(wx) = R sin(wx + φ) with R cos φ = a, R sin φ = b.
        Some(((w, d), c)) => vec![c[0].hypot(c[1]) * (x0 / d).exp(), w, c[1].atan2(c[0]), d],
        None => vec![threshold / 0.2, 2.0 * PI / s, 0.0, s],
    }
}

/// A peak component on the residual `(xs, ys)`, skipping x inside the `found` intervals: its
/// parameters, center and FWHM.
fn peak(kind: Builtin, xs: &[f64], ys: &[f64], found: &[(f64, f64)]) -> (Vec<f64>, f64, f64) {
    let m = xs.len();
    let s = span(xs);
    let smoothed = smooth(ys, (m / 100).clamp(1, 25));
    let free = |i: &usize| !found.iter().any(|(lo, hi)| xs[*i] > *lo && xs[*i] < *hi);
    let by_size = |a: &usize, b: &usize| smoothed[*a].abs().total_cmp(&smoothed[*b].abs());
    let top = (0..m)
        .filter(free)
        .max_by(by_size)
        .or_else(|| (0..m).max_by(by_size))
        .unwrap_or(0);
    let height = smoothed[top];
    let sign = if height < 0.0 { -1.0 } else { 1.0 };
    let half = 0.5 * height.abs();
    let level = |i: usize| sign * smoothed[i];
    // The half-maximum crossings, interpolated between the points on either side.
    let left = (0..top).rev().find(|&j| level(j) <= half).map(|j| {
        let (a, b) = (level(j), level(j + 1));
        xs[j] + (xs[j + 1] - xs[j]) * (half - a) / (b - a)
    });
    let right = (top + 1..m).find(|&j| level(j) <= half).map(|j| {
        let (a, b) = (level(j - 1), level(j));
        xs[j - 1] + (xs[j] - xs[j - 1]) * (a - half) / (a - b)
    });
    let at = xs[top];
    let (center, fwhm) = match (left, right) {
        (Some(l), Some(r)) => (0.5 * (l + r), r - l),
        (Some(l), None) => (at, 2.0 * (at - l)),
        (None, Some(r)) => (at, 2.0 * (r - at)),
        (None, None) => (at, 0.25 * s),
    };
    let fwhm = fwhm.max(2.0 * s / (m - 1).max(1) as f64);
    let values = match kind {
        Builtin::Gaussian => {
            let sigma = fwhm / (2.0 * (2.0 * LN_2).sqrt());
            vec![height * sigma * (2.0 * PI).sqrt(), center, sigma]
        }
        Builtin::Lorentzian => {
            let sigma = 0.5 * fwhm;
            vec![height * PI * sigma, center, sigma]
        }
        _ => {
            // pseudo-Voigt with fraction ½: height = A ((1 − f)/(σ_g √(2π)) + f/(π σ)).
            let sigma = 0.5 * fwhm;
            let sigma_g = sigma / (2.0 * LN_2).sqrt();
            let per_area = 0.5 / (sigma_g * (2.0 * PI).sqrt()) + 0.5 / (PI * sigma);
            vec![height / per_area, center, sigma, 0.5]
        }
    };
    (values, center, fwhm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::parse;

    fn curve(spec: &str, p: &[f64], xs: &[f64]) -> Vec<f64> {
        let m = parse(spec).unwrap();
        xs.iter().map(|&x| eval(m.expr(), x, p)).collect()
    }

    fn close(got: &[f64], want: &[f64], rtol: f64) -> bool {
        got.iter()
            .zip(want)
            .all(|(g, w)| (g - w).abs() <= rtol * w.abs().max(1e-12))
    }

    #[test]
    fn backgrounds_are_exact_on_exact_data() {
        let xs: Vec<f64> = (0..40).map(|i| 100.0 + 0.5 * f64::from(i)).collect();
        let p = [1.5, -0.25, 0.01, 2e-4];
        let g = parse("polynomial(3)")
            .unwrap()
            .guess(&xs, &curve("polynomial(3)", &p, &xs))
            .unwrap();
        assert!(close(&g, &p, 1e-6), "{g:?}");
        let g = parse("linear")
            .unwrap()
            .guess(&xs, &curve("linear", &[2.0, -3.0], &xs))
            .unwrap();
        assert!(close(&g, &[2.0, -3.0], 1e-9), "{g:?}");
    }

    #[test]
    fn a_clean_gaussian_is_read_off_closely() {
        let xs: Vec<f64> = (0..401).map(|i| -5.0 + 0.025 * f64::from(i)).collect();
        let p = [3.0, 0.7, 0.4];
        let g = parse("gaussian")
            .unwrap()
            .guess(&xs, &curve("gaussian", &p, &xs))
            .unwrap();
        assert!(close(&g, &p, 0.05), "{g:?}");
    }

    #[test]
    fn two_peaks_are_found_apart_largest_first_above_the_background() {
        let spec = "gaussian+gaussian+linear";
        let xs: Vec<f64> = (0..500).map(|i| 0.02 * f64::from(i)).collect();
        let p = [2.0, 3.0, 0.3, 1.0, 7.0, 0.4, 0.1, 1.0];
        let g = parse(spec).unwrap().guess(&xs, &curve(spec, &p, &xs)).unwrap();
        assert!((g[1] - 3.0).abs() < 0.1 && (g[4] - 7.0).abs() < 0.1, "{g:?}");
        assert!(close(&[g[0], g[2], g[3], g[5]], &[2.0, 0.3, 1.0, 0.4], 0.3), "{g:?}");
    }

    #[test]
    fn a_damped_sine_gets_its_frequency_from_the_crossings() {
        let xs: Vec<f64> = (0..300).map(|i| 0.05 * f64::from(i)).collect();
        let p = [2.0, 4.0, 0.5, 6.0];
        let g = parse("damped_sine")
            .unwrap()
            .guess(&xs, &curve("damped_sine", &p, &xs))
            .unwrap();
        assert!(close(&g[..3], &p[..3], 0.05) && close(&g[3..], &p[3..], 0.15), "{g:?}");
    }
}
