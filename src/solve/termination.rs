//! Termination status with scipy's codes and messages.

use std::fmt;

/// Why a solve stopped. Codes follow `scipy.optimize.least_squares`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `-1`: improper input (reported by the solver).
    ImproperInput,
    /// `0`: the maximum number of function evaluations was exceeded. Parameters are the best found.
    MaxNfev,
    /// `1`: `gtol` termination condition satisfied.
    Gtol,
    /// `2`: `ftol` termination condition satisfied.
    Ftol,
    /// `3`: `xtol` termination condition satisfied.
    Xtol,
    /// `4`: both `ftol` and `xtol` termination conditions satisfied.
    FtolXtol,
}

/// In-graph code of a solve that is still running.
pub(crate) const RUNNING: i64 = 99;
/// In-graph code of a solve whose residuals were not finite at the starting point.
pub(crate) const NONFINITE_START: i64 = -99;
/// In-graph code of a solve whose Jacobian at the starting point has a column that is not zero
/// but too small to square in double precision (see `outer::TINY_COLUMN`).
pub(crate) const TINY_JACOBIAN_START: i64 = -98;

impl Status {
    /// scipy's integer code.
    pub fn code(self) -> i32 {
        match self {
            Status::ImproperInput => -1,
            Status::MaxNfev => 0,
            Status::Gtol => 1,
            Status::Ftol => 2,
            Status::Xtol => 3,
            Status::FtolXtol => 4,
        }
    }

    /// From scipy's integer code.
    pub fn from_code(code: i64) -> Option<Status> {
        Some(match code {
            -1 => Status::ImproperInput,
            0 => Status::MaxNfev,
            1 => Status::Gtol,
            2 => Status::Ftol,
            3 => Status::Xtol,
            4 => Status::FtolXtol,
            _ => return None,
        })
    }

    /// True for codes > 0 (a tolerance was met).
    pub fn success(self) -> bool {
        self.code() > 0
    }

    /// scipy's message for the code.
    pub fn message(self) -> &'static str {
        match self {
            Status::ImproperInput => "Improper input parameters status returned from the solver.",
            Status::MaxNfev => "The maximum number of function evaluations is exceeded.",
            Status::Gtol => "`gtol` termination condition is satisfied.",
            Status::Ftol => "`ftol` termination condition is satisfied.",
            Status::Xtol => "`xtol` termination condition is satisfied.",
            Status::FtolXtol => "Both `ftol` and `xtol` termination conditions are satisfied.",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in -1..=4 {
            assert_eq!(Status::from_code(c).unwrap().code() as i64, c);
        }
        assert!(Status::from_code(RUNNING).is_none());
        assert!(Status::Gtol.success() && !Status::MaxNfev.success());
    }
}
