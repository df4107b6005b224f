//! Options and inputs of `curve_fit` and `least_squares`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::solve::SolverOptions;

/// The independent variable: one value per point (`[m]`), or `k` values per point (`[k, m]`,
/// one row per coordinate, like scipy's `xdata` of shape `(k, M)`).
#[derive(Clone, Debug)]
pub enum XData<'a> {
    /// `[m]`
    D1(ArrayView1<'a, f64>),
    /// `[k, m]`
    D2(ArrayView2<'a, f64>),
}

impl XData<'_> {
    /// Number of points `m`.
    pub fn len(&self) -> usize {
        match self {
            XData::D1(v) => v.len(),
            XData::D2(v) => v.ncols(),
        }
    }

    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> From<&'a [f64]> for XData<'a> {
    fn from(v: &'a [f64]) -> Self {
        XData::D1(ArrayView1::from(v))
    }
}
impl<'a> From<&'a Vec<f64>> for XData<'a> {
    fn from(v: &'a Vec<f64>) -> Self {
        XData::D1(ArrayView1::from(v.as_slice()))
    }
}
impl<'a, const N: usize> From<&'a [f64; N]> for XData<'a> {
    fn from(v: &'a [f64; N]) -> Self {
        XData::D1(ArrayView1::from(v.as_slice()))
    }
}
/// `From` for each ndarray form of x: `$ty` becomes `XData::$variant` through `$view`.
macro_rules! xdata_from {
    ($($ty:ty => $variant:ident, $view:expr;)*) => {$(
        impl<'a> From<$ty> for XData<'a> {
            fn from(v: $ty) -> Self {
                XData::$variant($view(v))
            }
        }
    )*};
}
xdata_from! {
    ArrayView1<'a, f64> => D1, std::convert::identity;
    &'a Array1<f64> => D1, Array1::view;
    ArrayView2<'a, f64> => D2, std::convert::identity;
    &'a Array2<f64> => D2, Array2::view;
}

/// Uncertainty of `ydata`.
#[derive(Clone, Debug, PartialEq)]
pub enum Sigma {
    /// Standard deviations, one per point: residuals are `(f - y) / sigma`.
    Std(Vec<f64>),
    /// Covariance matrix `[m, m]` (symmetric positive definite): residuals are whitened
    /// with its Cholesky factor, `L⁻¹ (f - y)` where `sigma = L Lᵀ`.
    Cov(Array2<f64>),
}

/// Options of [`crate::fit::curve_fit`], with scipy's names and defaults.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FitOptions {
    /// Uncertainty of `ydata`. Default `None` (all ones).
    pub sigma: Option<Sigma>,
    /// `sigma` is absolute: `pcov` is not scaled by the residual variance. Default `false`.
    pub absolute_sigma: bool,
    /// `(lower, upper)` bounds, each one value for all parameters or one per parameter;
    /// `±inf` for none. Default `None`.
    pub bounds: Option<(Vec<f64>, Vec<f64>)>,
    /// Reject NaN and infinite inputs with an error. Default `true`.
    pub check_finite: bool,
    /// Number of parameters when `p0` is not given (then `p0` is all ones). Default `None`.
    pub n_params: Option<usize>,
    /// Pad the number of points up to a bucket ([`crate::fit::bucket`]) so that varying
    /// lengths reuse a few executables. Padded rows have zero weight and change no result.
    /// Default `true`.
    pub bucket: bool,
    /// Walk the data in chunks of this many rows when evaluating the Jacobian (a Gram-matrix
    /// pass, or Householder TSQR where the Jacobian is ill-conditioned), so that each chunk
    /// stays in cache and the `m × n` Jacobian is never materialised during the solve: `None` (default) chunks by [`crate::fit::auto_chunk_rows`] rows (1,024 for 3
    /// parameters) from [`crate::fit::AUTO_CHUNK_FROM`] points on; `Some(0)` never chunks;
    /// `Some(c)` always chunks by `c` (the point count is padded to a multiple of `c`). A
    /// chunked fit evaluates `fun` and `jac` once more at the solution to return them while they
    /// have at most [`crate::fit::MATERIALIZE_MAX_ROWS`] rows; above that it returns neither
    /// (both `None`): keeping memory a small multiple of the data is the
    /// point. Not available with a 2-D `sigma`.
    pub chunk_rows: Option<usize>,
    /// Number of starts: `p0` and `starts − 1` more from a seeded low-discrepancy sequence
    /// around it, the best fit returned with [`CurveFit::starts`](crate::fit::CurveFit::starts)
    /// (see [`crate::fit::multistart`]). Default 1: `p0` only. [`curve_fit`](crate::fit::curve_fit)
    /// only (a `CurveFitter` or batch refuses more).
    pub starts: usize,
    /// Seed of the starting points of a multistart fit. Default 0.
    pub seed: u32,
    /// Solver options (method, tolerances, loss, ...).
    pub solver: SolverOptions,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            sigma: None,
            absolute_sigma: false,
            bounds: None,
            check_finite: true,
            n_params: None,
            bucket: true,
            chunk_rows: None,
            starts: 1,
            seed: 0,
            solver: SolverOptions::default(),
        }
    }
}

/// The setters that [`FitOptions`] and [`LeastSquaresOptions`] share, with one meaning.
macro_rules! shared_setters {
    () => {
        /// Sets `absolute_sigma`.
        pub fn with_absolute_sigma(mut self, v: bool) -> Self {
            self.absolute_sigma = v;
            self
        }
        /// Sets `(lower, upper)` bounds, each one value for all parameters or one per parameter.
        pub fn with_bounds(mut self, lower: impl Into<Vec<f64>>, upper: impl Into<Vec<f64>>) -> Self {
            self.bounds = Some((lower.into(), upper.into()));
            self
        }
        /// Sets `check_finite`.
        pub fn with_check_finite(mut self, v: bool) -> Self {
            self.check_finite = v;
            self
        }
        crate::solve::options::solver_setters!(solver);
    };
}

impl FitOptions {
    /// Sets 1-D `sigma` (standard deviations).
    pub fn with_sigma(mut self, sigma: impl Into<Vec<f64>>) -> Self {
        self.sigma = Some(Sigma::Std(sigma.into()));
        self
    }
    /// Sets a 2-D `sigma` (covariance matrix).
    pub fn with_sigma_cov(mut self, cov: Array2<f64>) -> Self {
        self.sigma = Some(Sigma::Cov(cov));
        self
    }
    shared_setters!();
    /// Sets the number of parameters (used when `p0` is `None`).
    pub fn with_n_params(mut self, n: usize) -> Self {
        self.n_params = Some(n);
        self
    }
    /// Turns bucket padding on or off.
    pub fn with_bucket(mut self, v: bool) -> Self {
        self.bucket = v;
        self
    }
    /// Sets the chunk size of the Jacobian evaluation (`0`: never chunk).
    pub fn with_chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = Some(rows);
        self
    }
    /// Sets the number of starts of a multistart fit (see [`FitOptions::starts`]).
    pub fn with_starts(mut self, starts: usize) -> Self {
        self.starts = starts;
        self
    }
    /// Sets the seed of a multistart fit's starting points.
    pub fn with_seed(mut self, seed: u32) -> Self {
        self.seed = seed;
        self
    }
}

/// Options of [`crate::fit::least_squares`]: the bounds, the finiteness check, how to read the
/// covariance, and the solver options. Every field is used.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LeastSquaresOptions {
    /// The residuals are already divided by known standard deviations: `pcov` is
    /// `(JᵀJ)⁻¹`, not scaled by the residual variance `2·cost / (m − n)`. Default `false`.
    pub absolute_sigma: bool,
    /// `(lower, upper)` bounds, each one value for all parameters or one per parameter;
    /// `±inf` for none. Default `None`.
    pub bounds: Option<(Vec<f64>, Vec<f64>)>,
    /// Reject NaN and infinite data and starting points with an error. Default `true`.
    pub check_finite: bool,
    /// Solver options (method, tolerances, loss, ...).
    pub solver: SolverOptions,
}

impl Default for LeastSquaresOptions {
    fn default() -> Self {
        LeastSquaresOptions {
            absolute_sigma: false,
            bounds: None,
            check_finite: true,
            solver: SolverOptions::default(),
        }
    }
}

impl LeastSquaresOptions {
    shared_setters!();
}
