//! Command-line parsing (hand-written: every error is one line, and exit codes are ours).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use nlsq::solve::{Loss, Method};

pub const MAIN_HELP: &str = "\
nlsq: nonlinear least-squares curve fitting, compiled to one XLA program per fit.

Usage:
  nlsq fit --model EXPR --data FILE [options]   fit an expression to columns of a data file
  nlsq batch --model EXPR --data FILE... [--group COL] [options]
                                                 fit many datasets in one batched program
  nlsq nist DIR [options]                        run the NIST StRD nonlinear suite in DIR
  nlsq --help | nlsq COMMAND --help | nlsq --version

Examples:
  nlsq fit --model 'a*exp(-k*x) + c' --data decay.csv --p0 a=2,k=1,c=0
  nlsq fit --model 'a*exp(-((x-mu)/w)^2)' --data peak.tsv --lower w=0 --json
  nlsq nist ../shared/nist_strd --method trf --start both

Exit codes: 0 success; 1 the fit ran but did not converge (status <= 0); 2 bad input
(unreadable file, bad column, bad expression, NaN data, p0 outside bounds, bad option, ...);
3 the runtime failed (PJRT plugin not found or not loadable, XLA error).

Environment: NLSQ_PJRT_PLUGIN (a PJRT plugin .so to run on, e.g. a GPU plugin);
NLSQ_CACHE_DIR (where the CPU plugin and compiled executables are cached; NLSQ_DISK_CACHE=0
turns the executable cache off); NLSQ_PLOT_FONT (a .ttf/.otf for plot text).
";

pub const FIT_HELP: &str = "\
nlsq fit: fit a model written as an expression to columns of a CSV, TSV or whitespace file.

Usage: nlsq fit --model EXPR --data FILE [options]

Model and data:
  --model EXPR            the model, e.g. 'a*exp(-k*x) + c'. Numbers, + - * / ^ (or **), unary
                          minus, parentheses, functions exp log ln sqrt sin cos tan asin acos
                          atan sinh cosh tanh abs erf erfc, constants pi and e. Names that are
                          not independent variables are parameters (in order of appearance).
                          '@FILE' reads the expression from FILE.
  --data FILE             the data file ('-' reads standard input). Delimiter: ',' for .csv,
                          tab for .tsv, otherwise detected from the first line (',', tab or
                          whitespace). Blank lines and lines starting with '#' are skipped.
  --header, --no-header   the first line names the columns, or does not. Default: detected
                          (a header is a first line with text where the next line has numbers).
  --x COL[,COL...]        the independent variable(s): column names (with a header) or 1-based
                          indices. In the model a column is called by its header name, or x
                          (x1, x2, ... for several) without one; NAME=COL picks the name, e.g.
                          --x u=1,v=2. Default: the columns whose header is a name in the model;
                          else the column named x, else column 1, called x.
  --y COL                 the dependent variable. Default: the column after the last --x column.
  --sigma COL             standard deviations of y (residuals are divided by them).
  --absolute-sigma        sigma is absolute: pcov is not scaled by the reduced chi-square.

Parameters:
  --p0 NAME=VALUE,...     starting values. A parameter not given starts at 1, or inside its
                          bounds as scipy does (midpoint; lower + 1; upper - 1).
  --lower NAME=VALUE,...  lower bounds (default -inf); a bare VALUE applies to every parameter.
  --upper NAME=VALUE,...  upper bounds (default inf); a bare VALUE applies to every parameter.

Solver (scipy.optimize.curve_fit names and defaults):
  --method trf|lm|dogbox  default lm without bounds and with the linear loss, trf otherwise
                          (dogbox is not supported yet).
  --loss linear|soft_l1|huber|cauchy|arctan   robust loss (trf only). Default linear.
  --f-scale F             soft margin between inlier and outlier residuals. Default 1.
  --max-nfev N            maximum residual evaluations. Default 100*n (trf) or 100*(n+1) (lm).
  --ftol F, --xtol F, --gtol F   tolerances on cost, step and gradient. Default 1e-8 each.

Output:
  --json                  print one JSON object: params, stderr, pcov, param_names, rank,
                          not_determined (parameters the data do not determine), cost, nfev,
                          njev, status, message, success, timing {compile_ms, execute_ms,
                          cache, trace_ms, total_ms}. Non-finite numbers are null.
  --plot FILE.svg|FILE.png   draw the data, the fitted curve and the residuals.
  -h, --help              this help.

Examples:
  nlsq fit --model 'a*exp(-k*x) + c' --data decay.csv --p0 a=2,k=1,c=0
  nlsq fit --model 'a*exp(-k*t)' --data runs.tsv --x t --y counts --sigma err --absolute-sigma
  nlsq fit --model 'A*exp(-((u-u0)^2 + (v-v0)^2)/(2*s^2))' --data grid.txt --no-header \\
           --x u=1,v=2 --y 3 --p0 A=1,u0=0,v0=0,s=1 --lower s=0 --plot residuals.png
  nlsq fit --model 'b/(1+exp(-(x-m)/w))' --data d.csv --loss soft_l1 --f-scale 0.1 --json

Exit codes: 0 converged; 1 ran but did not converge (status <= 0; results are still printed);
2 bad input; 3 runtime failure.
";

pub const BATCH_HELP: &str = "\
nlsq batch: fit one model to many datasets at once (one batched XLA program per chunk of
datasets), printing one JSON line per dataset.
Usage: nlsq batch --model EXPR --data FILE [--data FILE ...] [--group COL] [options]
  --data FILE             a data file; repeat it for one dataset per file.
  --group COL             a long-format file: the rows of each value of column COL (any text)
                          form one dataset, in order of first appearance.
  All options of nlsq fit apply to every dataset (--model, --header, --x with one column, --y,
  --sigma, --absolute-sigma, --p0, --lower, --upper, --method, --loss, --f-scale, --max-nfev,
  --ftol, --xtol, --gtol), except --plot and --json (the output is always JSON lines).
Output: one line per dataset: {\"dataset\": FILE or group value, \"n_points\", \"params\",
\"stderr\", \"pcov\", \"param_names\", \"rank\", \"not_determined\", \"cost\", \"nfev\", \"njev\", \"status\", \"message\",
\"success\", \"timing\"}, or {\"dataset\", \"error\"} for a dataset that could not be fitted.
A dataset with bad values (not numbers, not finite, sigma <= 0) or a file that cannot be read
gets its error line; the others are fitted. Exit codes: 0 every dataset converged; 1 some did
not converge or were refused (their lines say why); 2 bad options, or every dataset refused;
3 runtime failure.
Examples:
  nlsq batch --model 'a*exp(-k*t) + c' --data curves.csv --group id --x t --y v --p0 a=2,k=1,c=0
  nlsq batch --model 'a*exp(-k*x) + c' --data run1.csv --data run2.csv --data run3.csv
";

/// Options of `nlsq batch`: those of `fit`, the data files and the group column.
pub struct BatchArgs {
    pub fit: FitArgs,
    pub files: Vec<PathBuf>,
    pub group: Option<String>,
}

pub const NIST_HELP: &str = "\
nlsq nist: run the NIST StRD nonlinear regression problems and score them by the log relative
error (LRE) of the estimates against the certified values.

Usage: nlsq nist DIR [options]

  DIR                     a folder holding nist_strd.json (as ../shared/nist_strd/ does).
  --method trf|lm|dogbox  the method (default lm; dogbox is not supported yet).
  --start 1|2|both        NIST's first start, second start, or both (default both).
  --ftol F, --xtol F, --gtol F   tolerances (default 1e-8 each).
  --max-nfev N            default 100*n, or 2000 when any tolerance is below 1e-10.
  --problem NAME,...      run only these problems (default all).
  --json                  print a JSON array of objects with problem, start, method, lre_min,
                          success, status, nfev.
  -h, --help              this help.

Per problem and start it prints the minimum LRE over the parameters (capped at the file's
lre_cap), the status and the time; then how many runs reach LRE >= 4 and >= 6. A run that did
not succeed scores 0 in those totals. Exit code 0 when the suite ran, 2 for bad input.

Examples:
  nlsq nist ../shared/nist_strd
  nlsq nist ../shared/nist_strd --method trf --start 1 --ftol 1e-15 --xtol 1e-15 --gtol 1e-15
  nlsq nist ../shared/nist_strd --problem Misra1a,Thurber --json
";

/// A column: a header name or a 1-based index (resolved against the file later).
#[derive(Clone, Debug, PartialEq)]
pub struct ColSpec {
    /// The name the column has in the model (`NAME=COL`), if given.
    pub alias: Option<String>,
    /// The column as written.
    pub col: String,
}

/// A `NAME=VALUE` list, or one bare value for every parameter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamValues {
    pub all: Option<f64>,
    pub named: Vec<(String, f64)>,
}

#[derive(Clone, Debug, Default)]
pub struct FitArgs {
    pub model: String,
    pub data: PathBuf,
    pub header: Option<bool>,
    pub x: Option<Vec<ColSpec>>,
    pub y: Option<String>,
    pub sigma: Option<String>,
    pub absolute_sigma: bool,
    pub p0: ParamValues,
    pub lower: ParamValues,
    pub upper: ParamValues,
    pub method: Option<Method>,
    pub loss: Option<Loss>,
    pub f_scale: Option<f64>,
    pub max_nfev: Option<usize>,
    pub ftol: Option<f64>,
    pub xtol: Option<f64>,
    pub gtol: Option<f64>,
    pub json: bool,
    pub plot: Option<PathBuf>,
}

#[derive(Clone, Debug, Copy, PartialEq, Eq)]
pub enum Starts {
    One,
    Two,
    Both,
}

impl Starts {
    /// 0-based start indices.
    pub fn indices(self) -> &'static [usize] {
        match self {
            Starts::One => &[0],
            Starts::Two => &[1],
            Starts::Both => &[0, 1],
        }
    }
}

#[derive(Clone, Debug)]
pub struct NistArgs {
    pub dir: PathBuf,
    pub method: Method,
    pub starts: Starts,
    pub ftol: f64,
    pub xtol: f64,
    pub gtol: f64,
    pub max_nfev: Option<usize>,
    pub problems: Option<Vec<String>>,
    pub json: bool,
}

pub enum Command {
    Help(&'static str),
    Version,
    Fit(Box<FitArgs>),
    Nist(NistArgs),
    Batch(Box<BatchArgs>),
}

/// Splits `--name=value` and hands out values.
struct Tokens {
    items: Vec<String>,
    pos: usize,
    command: &'static str,
}

impl Tokens {
    fn next(&mut self) -> Option<(String, Option<String>)> {
        let t = self.items.get(self.pos)?.clone();
        self.pos += 1;
        if t.starts_with("--") {
            if let Some((name, value)) = t.split_once('=') {
                return Some((name.to_string(), Some(value.to_string())));
            }
        }
        Some((t, None))
    }

    fn value(&mut self, name: &str, inline: Option<String>) -> Result<String> {
        if let Some(v) = inline {
            return Ok(v);
        }
        match self.items.get(self.pos) {
            Some(v) if !(v.starts_with("--") && v.len() > 2) => {
                self.pos += 1;
                Ok(v.clone())
            }
            _ => bail!("option {name} needs a value (see nlsq {} --help)", self.command),
        }
    }
}

fn parse_f64(name: &str, v: &str) -> Result<f64> {
    let t = v.trim();
    t.parse::<f64>()
        .ok()
        .filter(|x| !x.is_nan())
        .ok_or_else(|| anyhow!("option {name}: '{v}' is not a number"))
}

fn parse_method(v: &str) -> Result<Method> {
    if v == "dogbox" {
        bail!("--method dogbox is not supported yet (use trf or lm)");
    }
    v.parse::<Method>()
        .map_err(|_| anyhow!("option --method: '{v}' is not one of trf, lm, dogbox"))
}

fn parse_values(name: &str, v: &str) -> Result<ParamValues> {
    let mut out = ParamValues::default();
    let items: Vec<&str> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.is_empty() {
        bail!("option {name} needs NAME=VALUE[,NAME=VALUE...]");
    }
    for item in items {
        match item.split_once('=') {
            Some((k, val)) => {
                let k = k.trim();
                if k.is_empty() {
                    bail!("option {name}: '{item}' has no parameter name before '='");
                }
                if out.named.iter().any(|(n, _)| n == k) {
                    bail!("option {name}: parameter '{k}' is given twice");
                }
                out.named.push((k.to_string(), parse_f64(name, val)?));
            }
            None if out.all.is_none() => {
                out.all = Some(
                    parse_f64(name, item)
                        .with_context(|| format!("option {name} takes NAME=VALUE pairs (or one value for all)"))?,
                )
            }
            None => bail!("option {name}: only one value without a name is allowed"),
        }
    }
    Ok(out)
}

fn parse_columns(v: &str) -> Result<Vec<ColSpec>> {
    let items: Vec<&str> = v.split(',').map(str::trim).collect();
    if items.iter().any(|s| s.is_empty()) {
        bail!("option --x: '{v}' has an empty column");
    }
    items
        .into_iter()
        .map(|item| match item.split_once('=') {
            Some((alias, col)) if !alias.trim().is_empty() && !col.trim().is_empty() => Ok(ColSpec {
                alias: Some(alias.trim().to_string()),
                col: col.trim().to_string(),
            }),
            Some(_) => bail!("option --x: '{item}' must be NAME=COLUMN"),
            None => Ok(ColSpec {
                alias: None,
                col: item.to_string(),
            }),
        })
        .collect()
}

/// Sets an option once; a second occurrence is an error.
fn once<T>(slot: &mut Option<T>, name: &str, v: T) -> Result<()> {
    if slot.is_some() {
        bail!("option {name} is given twice");
    }
    *slot = Some(v);
    Ok(())
}

fn parse_fit(items: Vec<String>) -> Result<Command> {
    let mut t = Tokens {
        items,
        pos: 0,
        command: "fit",
    };
    let mut a = FitArgs::default();
    let (mut model, mut data, mut p0, mut lower, mut upper) = (None, None, None, None, None);
    let mut method = None;
    while let Some((name, inline)) = t.next() {
        let flag = |inline: &Option<String>| -> Result<()> {
            match inline {
                Some(_) => bail!("option {name} takes no value"),
                None => Ok(()),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help(FIT_HELP)),
            "--model" => once(&mut model, &name, t.value(&name, inline)?)?,
            "--data" => once(&mut data, &name, PathBuf::from(t.value(&name, inline)?))?,
            "--header" | "--no-header" => {
                flag(&inline)?;
                once(&mut a.header, "--header/--no-header", name == "--header")?
            }
            "--x" => once(&mut a.x, &name, parse_columns(&t.value(&name, inline)?)?)?,
            "--y" => once(&mut a.y, &name, t.value(&name, inline)?.trim().to_string())?,
            "--sigma" => once(&mut a.sigma, &name, t.value(&name, inline)?.trim().to_string())?,
            "--absolute-sigma" => {
                flag(&inline)?;
                a.absolute_sigma = true
            }
            "--p0" => once(&mut p0, &name, parse_values(&name, &t.value(&name, inline)?)?)?,
            "--lower" => once(&mut lower, &name, parse_values(&name, &t.value(&name, inline)?)?)?,
            "--upper" => once(&mut upper, &name, parse_values(&name, &t.value(&name, inline)?)?)?,
            "--method" => once(&mut method, &name, t.value(&name, inline)?)?,
            "--loss" => {
                let v = t.value(&name, inline)?;
                let loss = v.parse::<Loss>().map_err(|_| {
                    anyhow!("option --loss: '{v}' is not one of linear, soft_l1, huber, cauchy, arctan")
                })?;
                once(&mut a.loss, &name, loss)?
            }
            "--f-scale" => once(&mut a.f_scale, &name, parse_f64(&name, &t.value(&name, inline)?)?)?,
            "--max-nfev" => {
                let v = t.value(&name, inline)?;
                let n = v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| anyhow!("option --max-nfev: '{v}' is not a positive integer"))?;
                once(&mut a.max_nfev, &name, n)?
            }
            "--ftol" => once(&mut a.ftol, &name, parse_f64(&name, &t.value(&name, inline)?)?)?,
            "--xtol" => once(&mut a.xtol, &name, parse_f64(&name, &t.value(&name, inline)?)?)?,
            "--gtol" => once(&mut a.gtol, &name, parse_f64(&name, &t.value(&name, inline)?)?)?,
            "--json" => {
                flag(&inline)?;
                a.json = true
            }
            "--plot" => once(&mut a.plot, &name, PathBuf::from(t.value(&name, inline)?))?,
            other if other.starts_with('-') && other.len() > 1 => {
                bail!("unknown option '{other}' for nlsq fit (see nlsq fit --help)")
            }
            other => bail!("unexpected argument '{other}' for nlsq fit (options start with --; see nlsq fit --help)"),
        }
    }
    a.model = model.ok_or_else(|| anyhow!("nlsq fit needs --model EXPR (see nlsq fit --help)"))?;
    a.data = data.ok_or_else(|| anyhow!("nlsq fit needs --data FILE (see nlsq fit --help)"))?;
    a.p0 = p0.unwrap_or_default();
    a.lower = lower.unwrap_or_default();
    a.upper = upper.unwrap_or_default();
    if let Some(m) = method {
        a.method = Some(parse_method(&m)?);
    }
    if let Some(p) = &a.plot {
        let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("svg" | "png")) {
            bail!("option --plot: '{}' must end in .svg or .png", p.display());
        }
    }
    Ok(Command::Fit(Box::new(a)))
}

fn parse_nist(items: Vec<String>) -> Result<Command> {
    let mut t = Tokens {
        items,
        pos: 0,
        command: "nist",
    };
    let (mut dir, mut method, mut starts, mut problems) = (None, None, None, None);
    let (mut ftol, mut xtol, mut gtol, mut max_nfev) = (None, None, None, None);
    let mut json = false;
    while let Some((name, inline)) = t.next() {
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help(NIST_HELP)),
            "--method" => once(&mut method, &name, parse_method(&t.value(&name, inline)?)?)?,
            "--start" => {
                let v = t.value(&name, inline)?;
                let s = match v.trim() {
                    "1" => Starts::One,
                    "2" => Starts::Two,
                    "both" => Starts::Both,
                    _ => bail!("option --start: '{v}' is not one of 1, 2, both"),
                };
                once(&mut starts, &name, s)?
            }
            "--ftol" => once(&mut ftol, &name, parse_f64(&name, &t.value(&name, inline)?)?)?,
            "--xtol" => once(&mut xtol, &name, parse_f64(&name, &t.value(&name, inline)?)?)?,
            "--gtol" => once(&mut gtol, &name, parse_f64(&name, &t.value(&name, inline)?)?)?,
            "--max-nfev" => {
                let v = t.value(&name, inline)?;
                let n = v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| anyhow!("option --max-nfev: '{v}' is not a positive integer"))?;
                once(&mut max_nfev, &name, n)?
            }
            "--problem" => {
                let v = t.value(&name, inline)?;
                let list: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if list.is_empty() {
                    bail!("option --problem needs NAME[,NAME...]");
                }
                once(&mut problems, &name, list)?
            }
            "--json" => {
                if inline.is_some() {
                    bail!("option --json takes no value");
                }
                json = true
            }
            other if other.starts_with('-') && other.len() > 1 => {
                bail!("unknown option '{other}' for nlsq nist (see nlsq nist --help)")
            }
            other => {
                if dir.is_some() {
                    bail!("unexpected argument '{other}': nlsq nist takes one directory");
                }
                dir = Some(PathBuf::from(other))
            }
        }
    }
    Ok(Command::Nist(NistArgs {
        dir: dir.ok_or_else(|| anyhow!("nlsq nist needs a directory holding nist_strd.json (see nlsq nist --help)"))?,
        method: method.unwrap_or(Method::Lm),
        starts: starts.unwrap_or(Starts::Both),
        ftol: ftol.unwrap_or(1e-8),
        xtol: xtol.unwrap_or(1e-8),
        gtol: gtol.unwrap_or(1e-8),
        max_nfev,
        problems,
        json,
    }))
}

/// `nlsq batch`: takes out `--data` (repeatable) and `--group`, parses the rest as `fit`.
fn parse_batch(items: Vec<String>) -> Result<Command> {
    let (mut files, mut group, mut rest) = (Vec::new(), None, Vec::new());
    let mut it = items.into_iter();
    while let Some(t) = it.next() {
        let (name, inline) = match t.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (t.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help(BATCH_HELP)),
            "--data" | "--group" => {
                let v = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .ok_or_else(|| anyhow!("option {name} needs a value (see nlsq batch --help)"))?,
                };
                if name == "--data" {
                    files.push(PathBuf::from(v));
                } else {
                    once(&mut group, "--group", v)?;
                }
            }
            "--plot" | "--json" => bail!("option {name} is not available for nlsq batch (the output is JSON lines)"),
            _ => rest.push(t),
        }
    }
    if files.is_empty() {
        bail!("nlsq batch needs --data FILE (see nlsq batch --help)");
    }
    rest.extend(["--data".to_string(), files[0].to_string_lossy().into_owned()]);
    let fit = match parse_fit(rest)? {
        Command::Fit(a) => *a,
        other => return Ok(other),
    };
    Ok(Command::Batch(Box::new(BatchArgs { fit, files, group })))
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<String>) -> Result<Command> {
    let mut it = args.into_iter();
    let Some(first) = it.next() else {
        return Ok(Command::Help(MAIN_HELP));
    };
    let rest: Vec<String> = it.collect();
    match first.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help(match rest.first().map(String::as_str) {
            Some("fit") => FIT_HELP,
            Some("nist") => NIST_HELP,
            Some("batch") => BATCH_HELP,
            _ => MAIN_HELP,
        })),
        "-V" | "--version" => Ok(Command::Version),
        "fit" => parse_fit(rest),
        "nist" => parse_nist(rest),
        "batch" => parse_batch(rest),
        other => bail!("unknown command '{other}' (commands: fit, batch, nist; see nlsq --help)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(args: &[&str]) -> Result<FitArgs> {
        let mut v = vec!["fit".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        match parse(v)? {
            Command::Fit(a) => Ok(*a),
            _ => panic!("not a fit"),
        }
    }

    #[test]
    fn fit_options_parse_with_and_without_equals() {
        let a = fit(&[
            "--model",
            "a*x",
            "--data=d.csv",
            "--p0",
            "a=2,b=-1e-3",
            "--lower=0",
            "--x",
            "u=1,v",
            "--json",
        ])
        .unwrap();
        assert_eq!(a.model, "a*x");
        assert_eq!(a.p0.named, vec![("a".to_string(), 2.0), ("b".to_string(), -1e-3)]);
        assert_eq!(a.lower.all, Some(0.0));
        assert_eq!(
            a.x.unwrap()[0],
            ColSpec {
                alias: Some("u".into()),
                col: "1".into()
            }
        );
        assert!(a.json);
    }

    #[test]
    fn bad_options_are_one_line_errors() {
        for bad in [
            vec!["--model", "a"],
            vec!["--model", "a", "--data", "d", "--method", "dogbox"],
            vec!["--model", "a", "--data", "d", "--p0", "a=x"],
            vec!["--model", "a", "--data", "d", "--bogus"],
            vec!["--model", "a", "--data", "d", "--plot", "out.pdf"],
            vec!["--model", "a", "--model", "b", "--data", "d"],
            vec!["--model", "a", "--data"],
        ] {
            let e = fit(&bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert!(!format!("{e:#}").contains('\n'));
        }
        let e = fit(&["--model", "a", "--data", "d", "--method", "dogbox"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("not supported yet"));
    }
}
