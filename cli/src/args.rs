//! Command-line parsing with clap (derive). The values with a grammar of their own (`NAME=VALUE`
//! lists, `--x` columns, the method, loss and start) are parsed by the functions below, so their
//! errors are ours; clap's own errors become one line (`parse`), and `--help` and `--version`
//! come back as text to print on stdout.

use std::ffi::OsStr;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use nlsq::solve::{Loss, Method};

const MAIN_AFTER: &str = "\
Examples:
  nlsq fit --model 'a*exp(-k*x) + c' --data decay.csv --p0 a=2,k=1,c=0
  nlsq fit --model 'a*exp(-((x-mu)/w)^2)' --data peak.tsv --lower w=0 --json
  nlsq nist ../shared/nist_strd --method trf --start both

Exit codes: 0 success; 1 the fit ran but did not converge (status <= 0); 2 bad input
(unreadable file, bad column, bad expression, NaN data, p0 outside bounds, bad option, ...);
3 the runtime failed (PJRT plugin not found or not loadable, XLA error).

Environment: NLSQ_PJRT_PLUGIN (a PJRT plugin .so to run on, e.g. a GPU plugin);
NLSQ_CACHE_DIR (where the CPU plugin and compiled executables are cached; NLSQ_DISK_CACHE=0
turns the executable cache off); NLSQ_PLOT_FONT (a .ttf/.otf for plot text).";

const FIT_AFTER: &str = "\
Examples:
  nlsq fit --model 'a*exp(-k*x) + c' --data decay.csv --p0 a=2,k=1,c=0
  nlsq fit --model 'a*exp(-k*t)' --data runs.tsv --x t --y counts --sigma err --absolute-sigma
  nlsq fit --model 'A*exp(-((u-u0)^2 + (v-v0)^2)/(2*s^2))' --data grid.txt --no-header \\
           --x u=1,v=2 --y 3 --p0 A=1,u0=0,v0=0,s=1 --lower s=0 --plot residuals.png
  nlsq fit --model 'b/(1+exp(-(x-m)/w))' --data d.csv --loss soft_l1 --f-scale 0.1 --json
  nlsq fit --model gaussian+gaussian+linear --data spectrum.csv --p0 g2_center=7.1

Exit codes: 0 converged; 1 ran but did not converge (status <= 0; results are still printed);
2 bad input; 3 runtime failure.";

const BATCH_AFTER: &str = "\
Output: one line per dataset: {\"dataset\": FILE or group value, \"n_points\", \"params\",
\"stderr\", \"pcov\", \"param_names\", \"rank\", \"not_determined\", \"intervals\" (95%), \"correlation\",
\"statistics\", \"cost\", \"nfev\", \"njev\", \"status\",
\"message\", \"success\", \"timing\"}, or {\"dataset\", \"error\"} for a dataset that could not be fitted.
A dataset with bad values (not numbers, not finite, sigma <= 0) or a file that cannot be read
gets its error line; the others are fitted. --plot and --json of nlsq fit do not apply (the
output is always JSON lines), and --x takes one column.

Exit codes: 0 every dataset converged; 1 some did not converge or were refused (their lines say
why); 2 bad options, or every dataset refused; 3 runtime failure.

Examples:
  nlsq batch --model 'a*exp(-k*t) + c' --data curves.csv --group id --x t --y v --p0 a=2,k=1,c=0
  nlsq batch --model 'a*exp(-k*x) + c' --data run1.csv --data run2.csv --data run3.csv";

const NIST_AFTER: &str = "\
Per problem and start it prints the minimum LRE over the parameters (capped at the file's
lre_cap), the status and the time; then how many runs reach LRE >= 4 and >= 6. A run that did
not succeed scores 0 in those totals. Exit code 0 when the suite ran, 2 for bad input.

Examples:
  nlsq nist ../shared/nist_strd
  nlsq nist ../shared/nist_strd --method trf --start 1 --ftol 1e-15 --xtol 1e-15 --gtol 1e-15
  nlsq nist ../shared/nist_strd --problem Misra1a,Thurber --json";

const COMPILE_AFTER: &str = "\
Lengths that share a program (points are padded up to a bucket) compile it once; several programs
compile side by side. The programs go to the executable cache (NLSQ_CACHE_DIR), where later
`nlsq fit` runs of the same model, variables, method, loss and shape of options find them: a fit
then only executes, with results bit for bit those of a program compiled on first use. Exit code 0
when every program is in the cache, 2 for bad input, 3 when the runtime fails.

Examples:
  nlsq compile --model 'a*exp(-k*x) + c' --lengths 100,1000,10000
  nlsq compile --model 'a*exp(-k*x) + c' --lengths 500 --method trf --bounded --weighted";

/// The subcommands' help: the first line of `before_help`, no `about` (that is the command list's).
const SUB_TEMPLATE: &str = "{before-help}{usage-heading} {usage}\n\n{all-args}{after-help}";

const MODEL_HELP: &str = "\
the model, e.g. 'a*exp(-k*x) + c'. Numbers, + - * / ^ (or **), unary
minus, parentheses, functions exp log ln log10 log2 exp2 sqrt sin cos
tan asin acos atan sinh cosh tanh abs erf erfc logistic heaviside(x)
(1/2 at 0) heaviside(x, h0) min(a, b) max(a, b) pow(a, b) atan2(y, x),
constants pi and e. Piecewise models: where(cond, a, b) with a
condition built from < <= > >= == != && || ! (a condition is not a
number: write where(x > c, 1, 0), not (x > c)). Names that are not
independent variables are parameters (in order of appearance).
'@FILE' reads the expression from FILE.
Built-in models, alone or joined by + (in a sum each one's parameters
get its prefix, numbered when repeated: g1_center, g2_center,
linear_slope), on one x column:
  gaussian          amplitude/(sigma*sqrt(2*pi))*exp(-(x-center)^2/(2*sigma^2))  (g)
  lorentzian        amplitude/pi*sigma/((x-center)^2+sigma^2)  (l)
  pseudo_voigt      (1-fraction)*gaussian + fraction*lorentzian of FWHM
                    2*sigma  (pv)
  exp_decay         amplitude*exp(-x/decay) + c  (exp)
  exp_decay2        amplitude1*exp(-x/decay1) + amplitude2*exp(-x/decay2) + c  (exp2)
  logistic          amplitude*logistic((x-center)/sigma)  (logistic)
  hill              vmax*x^n/(k^n+x^n)  (hill)
  michaelis_menten  vmax*x/(km+x)  (mm)
  power_law         amplitude*x^exponent  (power)
  polynomial(k)     c0 + c1*x + ... + ck*x^k, k = 0..7  (poly)
  damped_sine       amplitude*exp(-x/decay)*sin(frequency*x+shift)  (sine)
  linear            slope*x + intercept  (linear)
  constant          c  (constant)
Peak amplitudes are areas. sigma, decay, k, n, km, frequency >= 0 and
0 <= fraction <= 1 unless --lower/--upper say otherwise; the start is
estimated from the data (see --p0).";

const DATA: &str = "Model and data";
const PARAMETERS: &str = "Parameters";
const SOLVER: &str = "Solver (scipy.optimize.curve_fit names and defaults)";
const OUTPUT: &str = "Output";

#[derive(Parser)]
#[command(
    name = "nlsq",
    version,
    about = "nlsq: nonlinear least-squares curve fitting, compiled to one XLA program per fit.",
    after_help = MAIN_AFTER,
    arg_required_else_help = true,
    subcommand_value_name = "COMMAND"
)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    #[command(
        about = "fit an expression to columns of a data file",
        before_help = "nlsq fit: fit a model written as an expression to columns of a CSV, TSV or whitespace file.",
        override_usage = "nlsq fit --model EXPR --data FILE [options]",
        help_template = SUB_TEMPLATE,
        after_help = FIT_AFTER,
        disable_help_flag = true
    )]
    Fit(FitArgs),
    #[command(
        about = "fit many datasets in one batched program",
        before_help = "nlsq batch: fit one model to many datasets at once (one batched XLA program per chunk of\n\
                       datasets), printing one JSON line per dataset.",
        override_usage = "nlsq batch --model EXPR --data FILE [--data FILE ...] [--group COL] [options]",
        help_template = SUB_TEMPLATE,
        after_help = BATCH_AFTER
    )]
    Batch(BatchArgs),
    #[command(
        about = "run the NIST StRD nonlinear suite in DIR",
        before_help = "nlsq nist: run the NIST StRD nonlinear regression problems and score them by the log relative\n\
                       error (LRE) of the estimates against the certified values.",
        override_usage = "nlsq nist DIR [options]",
        help_template = SUB_TEMPLATE,
        after_help = NIST_AFTER
    )]
    Nist(NistArgs),
    #[command(
        about = "compile ahead the programs of a model for several data lengths",
        before_help = "nlsq compile: compile (into the executable cache) the programs `nlsq fit` needs for a model\n\
                       and data of the given lengths, for build steps and container images.",
        override_usage = "nlsq compile --model EXPR --lengths N[,N...] [options]",
        help_template = SUB_TEMPLATE,
        after_help = COMPILE_AFTER
    )]
    Compile(CompileArgs),
}

/// Options of `nlsq compile`.
#[derive(Args, Clone, Debug)]
pub struct CompileArgs {
    #[arg(long, value_name = "EXPR", help = MODEL_HELP, value_parser = Value(text), allow_hyphen_values = true)]
    pub model: String,
    #[arg(long, value_name = "N[,N...]", value_parser = Value(parse_lengths), allow_hyphen_values = true,
          help = "the numbers of data points to compile for.")]
    pub lengths: ::std::vec::Vec<usize>,
    #[arg(long, value_name = "NAME[,NAME...]", value_parser = Value(parse_names), allow_hyphen_values = true,
          help = "the model's independent variables, as `nlsq fit --x` names them (default x).")]
    pub vars: Option<::std::vec::Vec<String>>,
    #[arg(long, value_name = "trf|lm", value_parser = Value(parse_method), allow_hyphen_values = true,
          help = "the method (default lm, or trf with --bounded or a robust --loss, as nlsq fit).")]
    pub method: Option<Method>,
    #[arg(long, value_name = "LOSS", value_parser = Value(parse_loss), allow_hyphen_values = true,
          help = "robust loss (trf only). Default linear.")]
    pub loss: Option<Loss>,
    #[arg(long, help = "programs for fits with --lower/--upper bounds.")]
    pub bounded: bool,
    #[arg(long, help = "programs for fits with --sigma.")]
    pub weighted: bool,
}

/// A column: a header name or a 1-based index (resolved against the file later).
#[derive(Clone, Debug, PartialEq)]
pub struct ColSpec {
    /// The name the column has in the model (`NAME=COL`), if given.
    pub alias: Option<String>,
    /// The column as written.
    pub col: String,
}

/// A `NAME=VALUE` list, or one bare value for every parameter; `auto` (`--p0` only) asks for
/// a built-in model's estimated start for the parameters not named.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamValues {
    pub all: Option<f64>,
    pub named: Vec<(String, f64)>,
    pub auto: bool,
}

/// Options of `nlsq fit`.
#[derive(Args, Clone, Debug)]
pub struct FitArgs {
    #[arg(long, value_name = "EXPR", help_heading = DATA, help = MODEL_HELP, value_parser = Value(text), allow_hyphen_values = true)]
    pub model: String,
    #[arg(long, value_name = "FILE", help_heading = DATA, value_parser = Value(path), allow_hyphen_values = true,
          required = true, action = clap::ArgAction::Append,
          help = "the data file ('-' reads standard input). Delimiter: ',' for .csv,\n\
                  tab for .tsv, otherwise detected from the first line (',', tab or\n\
                  whitespace). Blank lines and lines starting with '#' are skipped.\n\
                  Repeat it for several datasets: with --shared one global fit, without\n\
                  it each dataset on its own (as nlsq batch).")]
    pub data: Vec<PathBuf>,
    #[arg(long, value_name = "COL", help_heading = DATA, value_parser = Value(text), allow_hyphen_values = true,
          help = "a long-format file: the rows of each value of column COL form one\n\
                  dataset (as nlsq batch --group).")]
    pub group: Option<String>,
    #[arg(long, value_name = "NAME,...", help_heading = PARAMETERS, value_parser = Value(parse_names),
          allow_hyphen_values = true,
          help = "with several datasets: one global fit in which these parameters are\n\
                  common to all datasets and the others local to each.")]
    pub shared: Option<::std::vec::Vec<String>>,
    #[command(flatten)]
    pub common: Common,
    #[arg(long, help_heading = OUTPUT,
          help = "print one JSON object: params, stderr, pcov, param_names, fixed\n\
                  (their names), tied {name: expr}, rank, not_determined (parameters\n\
                  the data do not determine), intervals\n\
                  {level, lower, upper}, correlation, statistics {n_points, dof, chisqr,\n\
                  redchi, residual_se, r_squared, adj_r_squared, log_likelihood, aic,\n\
                  bic, chisqr_aic, chisqr_bic}, starts (null, or with --starts {n_starts,\n\
                  reached, best, stopped_early, costs, spread}), cost, nfev, njev,\n\
                  status, message, success, timing {compile_ms, execute_ms, cache,\n\
                  trace_ms, total_ms}. Non-finite numbers are null.")]
    pub json: bool,
    #[arg(long, value_name = "F", help_heading = OUTPUT, value_parser = Value(parse_level), allow_hyphen_values = true,
          default_value = "0.95", hide_default_value = true,
          help = "confidence level of the parameter intervals (t-based; normal with\n\
                  --absolute-sigma). Default 0.95.")]
    pub level: f64,
    #[arg(long, help_heading = OUTPUT,
          help = "no note on stderr when the fit had to compile its program (the note is\n\
                  printed only when stderr is a terminal).")]
    pub quiet: bool,
    #[arg(long, value_name = "NAME[=VALUE],...", help_heading = PARAMETERS, value_parser = Value(parse_fix),
          allow_hyphen_values = true,
          help = "hold parameters fixed, at VALUE or (without one) at their start: the\n\
                  fit varies the others and reports these as fixed; a new VALUE reuses\n\
                  the compiled program.")]
    pub fix: Option<::std::vec::Vec<(String, Option<f64>)>>,
    #[arg(long, value_name = "NAME=EXPR", help_heading = PARAMETERS, value_parser = Value(parse_tie),
          allow_hyphen_values = true, action = clap::ArgAction::Append,
          help = "tie a parameter to an expression of the others (--tie w2=w1,\n\
                  --tie 'b=2*a+c'); repeat it for several. Its error is propagated\n\
                  from the covariance of those it names.")]
    pub tie: Vec<(String, String)>,
    #[arg(long, value_name = "K", help_heading = SOLVER, value_parser = Value(parse_count), allow_hyphen_values = true,
          default_value = "1", hide_default_value = true,
          help = "fit from --p0 and K-1 more starts (seeded Sobol points: uniform between\n\
                  two bounds, four decades around p0 otherwise) and report the best, with\n\
                  how many starts reached it. Default 1.")]
    pub starts: usize,
    #[arg(long, value_name = "N", help_heading = SOLVER, value_parser = Value(parse_seed), allow_hyphen_values = true,
          default_value = "0", hide_default_value = true,
          help = "seed of the --starts points. Default 0.")]
    pub seed: u32,
    #[arg(long, value_name = "FILE.svg|FILE.png", help_heading = OUTPUT, value_parser = Value(plot_path),
          allow_hyphen_values = true, help = "draw the data, the fitted curve and the residuals.")]
    pub plot: Option<PathBuf>,
    /// Listed last, with the output options.
    #[arg(short, long, action = clap::ArgAction::Help, help_heading = OUTPUT, help = "this help.")]
    help: Option<bool>,
}

/// Options of `nlsq batch`: the data files or the group column, and the options of `fit`
/// but `--plot` and `--json`.
#[derive(Args, Clone, Debug)]
pub struct BatchArgs {
    #[arg(long, value_name = "EXPR", help_heading = DATA, help = MODEL_HELP, value_parser = Value(text), allow_hyphen_values = true)]
    pub model: String,
    #[arg(long = "data", value_name = "FILE", required = true, help_heading = DATA, value_parser = Value(path),
          allow_hyphen_values = true, help = "a data file; repeat it for one dataset per file.")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_name = "COL", help_heading = DATA, value_parser = Value(text), allow_hyphen_values = true,
          help = "a long-format file: the rows of each value of column COL (any text)\n\
                  form one dataset, in order of first appearance.")]
    pub group: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// The options `fit` and `batch` share: columns, parameters and the solver.
#[derive(Args, Clone, Debug, Default)]
pub struct Common {
    #[arg(long, help_heading = DATA, conflicts_with = "no_header",
          help = "the first line names the columns. Default: detected (a header is a\n\
                  first line with text where the next line has numbers).")]
    header: bool,
    #[arg(long, help_heading = DATA, help = "the first line does not name the columns.")]
    no_header: bool,
    #[arg(long, value_name = "COL[,COL...]", help_heading = DATA, value_parser = Value(parse_columns),
          allow_hyphen_values = true,
          help = "the independent variable(s): column names (with a header) or 1-based\n\
                  indices. In the model a column is called by its header name, or x\n\
                  (x1, x2, ... for several) without one; NAME=COL picks the name, e.g.\n\
                  --x u=1,v=2. Default: the columns whose header is a name in the model;\n\
                  else the column named x, else column 1, called x.")]
    pub x: Option<::std::vec::Vec<ColSpec>>,
    #[arg(long, value_name = "COL", help_heading = DATA, value_parser = Value(text), allow_hyphen_values = true,
          help = "the dependent variable. Default: the column after the last --x column.")]
    pub y: Option<String>,
    #[arg(long, value_name = "COL", help_heading = DATA, value_parser = Value(text), allow_hyphen_values = true,
          help = "standard deviations of y (residuals are divided by them).")]
    pub sigma: Option<String>,
    #[arg(long, help_heading = DATA, help = "sigma is absolute: pcov is not scaled by the reduced chi-square.")]
    pub absolute_sigma: bool,

    #[arg(long, value_name = "NAME=VALUE,...", help_heading = PARAMETERS, value_parser = Value(parse_values),
          allow_hyphen_values = true,
          help = "starting values. A parameter not given starts at 1, or inside its\n\
                  bounds as scipy does (midpoint; lower + 1; upper - 1). With a\n\
                  built-in model it starts at the estimate from the data ('auto', the\n\
                  default): --p0 center=3 replaces only that parameter's estimate.")]
    pub p0: Option<ParamValues>,
    #[arg(long, value_name = "NAME=VALUE,...", help_heading = PARAMETERS, value_parser = Value(parse_values),
          allow_hyphen_values = true,
          help = "lower bounds (default -inf; a built-in model's widths, decays and\n\
                  rates 0, except with --method lm); a bare VALUE applies to every\n\
                  parameter.")]
    pub lower: Option<ParamValues>,
    #[arg(long, value_name = "NAME=VALUE,...", help_heading = PARAMETERS, value_parser = Value(parse_values),
          allow_hyphen_values = true,
          help = "upper bounds (default inf); a bare VALUE applies to every parameter.")]
    pub upper: Option<ParamValues>,

    #[arg(long, value_name = "trf|lm|dogbox", help_heading = SOLVER, value_parser = Value(parse_method),
          allow_hyphen_values = true,
          help = "default lm without bounds and with the linear loss, trf otherwise\n\
                  (dogbox is not supported yet).")]
    pub method: Option<Method>,
    #[arg(long, value_name = "LOSS", help_heading = SOLVER, value_parser = Value(parse_loss), allow_hyphen_values = true,
          help = "robust loss (trf only): linear, soft_l1, huber, cauchy or arctan.\n\
                  Default linear.")]
    pub loss: Option<Loss>,
    #[arg(long, value_name = "F", help_heading = SOLVER, value_parser = Value(parse_f64), allow_hyphen_values = true,
          help = "soft margin between inlier and outlier residuals. Default 1.")]
    pub f_scale: Option<f64>,
    #[arg(long, value_name = "N", help_heading = SOLVER, value_parser = Value(parse_count), allow_hyphen_values = true,
          help = "maximum residual evaluations. Default 100*n (trf) or 100*(n+1) (lm).")]
    pub max_nfev: Option<usize>,
    #[arg(long, value_name = "F", help_heading = SOLVER, value_parser = Value(parse_f64), allow_hyphen_values = true,
          help = "tolerance on the cost. Default 1e-8.")]
    pub ftol: Option<f64>,
    #[arg(long, value_name = "F", help_heading = SOLVER, value_parser = Value(parse_f64), allow_hyphen_values = true,
          help = "tolerance on the step. Default 1e-8.")]
    pub xtol: Option<f64>,
    #[arg(long, value_name = "F", help_heading = SOLVER, value_parser = Value(parse_f64), allow_hyphen_values = true,
          help = "tolerance on the gradient. Default 1e-8.")]
    pub gtol: Option<f64>,
}

impl Common {
    /// `--header` (true), `--no-header` (false), or neither (detected).
    pub fn header(&self) -> Option<bool> {
        match (self.header, self.no_header) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
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

/// Options of `nlsq nist`.
#[derive(Args, Clone, Debug)]
pub struct NistArgs {
    #[arg(
        value_name = "DIR",
        help = "a folder holding nist_strd.json (as ../shared/nist_strd/ does)."
    )]
    pub dir: PathBuf,
    #[arg(long, value_name = "trf|lm|dogbox", default_value = "lm", hide_default_value = true,
          value_parser = Value(parse_method), allow_hyphen_values = true,
          help = "the method (default lm; dogbox is not supported yet).")]
    pub method: Method,
    #[arg(long = "start", value_name = "1|2|both", default_value = "both", hide_default_value = true,
          value_parser = Value(parse_starts), allow_hyphen_values = true,
          help = "NIST's first start, second start, or both (default both).")]
    pub starts: Starts,
    #[arg(long, value_name = "F", default_value = "1e-8", hide_default_value = true, value_parser = Value(parse_f64),
          allow_hyphen_values = true, help = "tolerance on the cost (default 1e-8).")]
    pub ftol: f64,
    #[arg(long, value_name = "F", default_value = "1e-8", hide_default_value = true, value_parser = Value(parse_f64),
          allow_hyphen_values = true, help = "tolerance on the step (default 1e-8).")]
    pub xtol: f64,
    #[arg(long, value_name = "F", default_value = "1e-8", hide_default_value = true, value_parser = Value(parse_f64),
          allow_hyphen_values = true, help = "tolerance on the gradient (default 1e-8).")]
    pub gtol: f64,
    #[arg(long, value_name = "N", value_parser = Value(parse_count), allow_hyphen_values = true,
          help = "default 100*n, or 2000 when any tolerance is below 1e-10.")]
    pub max_nfev: Option<usize>,
    #[arg(long = "problem", value_name = "NAME,...", value_parser = Value(parse_names), allow_hyphen_values = true,
          help = "run only these problems (default all).")]
    pub problems: Option<::std::vec::Vec<String>>,
    #[arg(
        long,
        help = "print a JSON array of objects with problem, start, method, lre_min,\n\
                        success, status, nfev."
    )]
    pub json: bool,
}

pub enum Command {
    /// `--help` or `--version`: the text to print.
    Help(String),
    Fit(Box<FitArgs>),
    Nist(NistArgs),
    Batch(Box<BatchArgs>),
    Compile(Box<CompileArgs>),
}

/// A clap value parser from a function of the option's name (`--p0`) and its value. A value
/// that is itself an option (`--model --data d.csv`) is a missing value: the options that take
/// values accept a leading `-` (`--lower -1`), but not `--`.
#[derive(Clone)]
struct Value<T>(fn(&str, &str) -> Result<T>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Value<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<T, clap::Error> {
        let name = arg
            .and_then(clap::Arg::get_long)
            .map_or_else(|| "DIR".to_string(), |l| format!("--{l}"));
        let fail = |msg: String| clap::Error::raw(ErrorKind::ValueValidation, msg + "\n");
        let v = value
            .to_str()
            .ok_or_else(|| fail(format!("option {name}: the value is not valid UTF-8")))?;
        if v.starts_with("--") && v.len() > 2 {
            return Err(fail(format!(
                "option {name} needs a value (see nlsq {} --help)",
                cmd.get_name()
            )));
        }
        (self.0)(&name, v).map_err(|e| fail(format!("{e:#}")))
    }
}

fn text(_: &str, v: &str) -> Result<String> {
    Ok(v.trim().to_string())
}

fn path(_: &str, v: &str) -> Result<PathBuf> {
    Ok(PathBuf::from(v))
}

fn plot_path(name: &str, v: &str) -> Result<PathBuf> {
    let p = PathBuf::from(v);
    let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("svg" | "png")) {
        bail!("option {name}: '{v}' must end in .svg or .png");
    }
    Ok(p)
}

fn parse_f64(name: &str, v: &str) -> Result<f64> {
    let t = v.trim();
    t.parse::<f64>()
        .ok()
        .filter(|x| !x.is_nan())
        .ok_or_else(|| anyhow!("option {name}: '{v}' is not a number"))
}

fn parse_level(name: &str, v: &str) -> Result<f64> {
    let x = parse_f64(name, v)?;
    if x > 0.0 && x < 1.0 {
        Ok(x)
    } else {
        Err(anyhow!(
            "option {name}: '{v}' is not a confidence level strictly between 0 and 1 (e.g. 0.95)"
        ))
    }
}

fn parse_seed(name: &str, v: &str) -> Result<u32> {
    v.trim()
        .parse::<u32>()
        .map_err(|_| anyhow!("option {name}: '{v}' is not a seed (an integer from 0 to 4294967295)"))
}

fn parse_count(name: &str, v: &str) -> Result<usize> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| anyhow!("option {name}: '{v}' is not a positive integer"))
}

fn parse_method(_: &str, v: &str) -> Result<Method> {
    if v == "dogbox" {
        bail!("--method dogbox is not supported yet (use trf or lm)");
    }
    v.parse::<Method>()
        .map_err(|_| anyhow!("option --method: '{v}' is not one of trf, lm, dogbox"))
}

fn parse_loss(_: &str, v: &str) -> Result<Loss> {
    v.parse::<Loss>()
        .map_err(|_| anyhow!("option --loss: '{v}' is not one of linear, soft_l1, huber, cauchy, arctan"))
}

fn parse_starts(_: &str, v: &str) -> Result<Starts> {
    Ok(match v.trim() {
        "1" => Starts::One,
        "2" => Starts::Two,
        "both" => Starts::Both,
        _ => bail!("option --start: '{v}' is not one of 1, 2, both"),
    })
}

fn parse_lengths(name: &str, v: &str) -> Result<Vec<usize>> {
    let list = parse_names(name, v)?;
    list.iter()
        .map(|s| {
            s.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| anyhow!("option {name}: '{s}' is not a positive integer"))
        })
        .collect()
}

fn parse_names(name: &str, v: &str) -> Result<Vec<String>> {
    let list: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        bail!("option {name} needs NAME[,NAME...]");
    }
    Ok(list)
}

fn parse_values(name: &str, v: &str) -> Result<ParamValues> {
    let mut out = ParamValues::default();
    let items: Vec<&str> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.is_empty() {
        bail!("option {name} needs NAME=VALUE[,NAME=VALUE...]");
    }
    for item in items {
        if name == "--p0" && item == "auto" {
            out.auto = true;
            continue;
        }
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
    if out.auto && out.all.is_some() {
        bail!("option {name}: 'auto' and a value for every parameter exclude each other");
    }
    Ok(out)
}

/// `--fix a=1.5,b`: names, each with its value or none (held at its start).
fn parse_fix(name: &str, v: &str) -> Result<Vec<(String, Option<f64>)>> {
    let mut out: Vec<(String, Option<f64>)> = Vec::new();
    for item in v.split(',').map(str::trim) {
        let (k, val) = match item.split_once('=') {
            Some((k, val)) => (k.trim(), Some(parse_f64(name, val)?)),
            None => (item, None),
        };
        if k.is_empty() {
            bail!("option {name} needs NAME[=VALUE][,NAME[=VALUE]...], got '{v}'");
        }
        if out.iter().any(|(n, _)| n == k) {
            bail!("option {name}: parameter '{k}' is given twice");
        }
        out.push((k.to_string(), val));
    }
    Ok(out)
}

/// `--tie w2=w1`: the parameter and its expression (which may hold commas: `max(a, b)`).
fn parse_tie(name: &str, v: &str) -> Result<(String, String)> {
    match v.split_once('=') {
        Some((k, e)) if !k.trim().is_empty() && !e.trim().is_empty() => {
            Ok((k.trim().to_string(), e.trim().to_string()))
        }
        _ => bail!("option {name} needs NAME=EXPR, got '{v}'"),
    }
}

fn parse_columns(_: &str, v: &str) -> Result<Vec<ColSpec>> {
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

/// A string of a clap error's context.
fn context(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => Some(v.join(" and ")),
        _ => None,
    }
}

/// A clap error as one line (without the `error: ` that `main` prints), in the words of the
/// hand-written parser this replaced where clap's differ. `sub` is the subcommand, if known.
fn one_line(e: &clap::Error, sub: Option<&str>) -> String {
    let cmd = sub.map_or_else(|| "nlsq".to_string(), |s| format!("nlsq {s}"));
    let see = format!("see {cmd} --help");
    // `--model <EXPR>` -> `--model EXPR`
    let plain = |s: String| s.replace(['<', '>'], "");
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let arg = context(e, ContextKind::InvalidArg).unwrap_or_default();
            let name = arg.split('=').next().unwrap_or_default();
            if sub == Some("batch") && matches!(name, "--plot" | "--json") {
                return format!("option {name} is not available for nlsq batch (the output is JSON lines)");
            }
            let hint = context(e, ContextKind::SuggestedArg)
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            if arg.starts_with('-') && arg.len() > 1 {
                format!("unknown option '{name}' for {cmd} ({see}){hint}")
            } else {
                format!("unexpected argument '{arg}' for {cmd} (options start with --; {see})")
            }
        }
        ErrorKind::InvalidSubcommand => format!(
            "unknown command '{}' (commands: fit, batch, nist; see nlsq --help)",
            context(e, ContextKind::InvalidSubcommand).unwrap_or_default()
        ),
        ErrorKind::MissingRequiredArgument => match context(e, ContextKind::InvalidArg).map(plain) {
            Some(a) if a == "DIR" => format!("{cmd} needs a directory holding nist_strd.json ({see})"),
            Some(a) => format!("{cmd} needs {a} ({see})"),
            None => format!("{cmd}: a required option is missing ({see})"),
        },
        ErrorKind::ArgumentConflict
            if context(e, ContextKind::InvalidArg).is_some()
                && context(e, ContextKind::InvalidArg) == context(e, ContextKind::PriorArg) =>
        {
            let arg = plain(context(e, ContextKind::InvalidArg).unwrap_or_default());
            format!("option {} is given twice", arg.split(' ').next().unwrap_or_default())
        }
        ErrorKind::InvalidValue if context(e, ContextKind::InvalidValue).is_some_and(|v| v.is_empty()) => {
            let arg = plain(context(e, ContextKind::InvalidArg).unwrap_or_default());
            format!(
                "option {} needs a value ({see})",
                arg.split(' ').next().unwrap_or_default()
            )
        }
        _ => {
            let text = e.render().to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("bad arguments");
            first.strip_prefix("error: ").unwrap_or(first).trim().to_string()
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<String>) -> Result<Command> {
    let sub = match args.first().map(String::as_str) {
        Some(s @ ("fit" | "batch" | "nist")) => Some(s.to_string()),
        _ => None,
    };
    let argv = std::iter::once("nlsq".to_string()).chain(args);
    let matches = match Cli::command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Ok(Command::Help(e.render().to_string())),
                _ => Err(anyhow!(one_line(&e, sub.as_deref()))),
            }
        }
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| anyhow!(one_line(&e, sub.as_deref())))?;
    Ok(match cli.command {
        Sub::Fit(a) => Command::Fit(Box::new(a)),
        Sub::Batch(a) => Command::Batch(Box::new(a)),
        Sub::Nist(a) => Command::Nist(a),
        Sub::Compile(a) => Command::Compile(Box::new(a)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command> {
        parse(args.iter().map(|s| s.to_string()).collect())
    }

    fn fit(args: &[&str]) -> Result<FitArgs> {
        let mut v = vec!["fit"];
        v.extend_from_slice(args);
        match parse_strs(&v)? {
            Command::Fit(a) => Ok(*a),
            _ => panic!("not a fit"),
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
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
            "--upper",
            "-1,k=-inf",
            "--x",
            "u=1,v",
            "--json",
            "--no-header",
        ])
        .unwrap();
        assert_eq!(a.model, "a*x");
        assert_eq!(a.data, [PathBuf::from("d.csv")]);
        let c = &a.common;
        assert_eq!(
            c.p0.as_ref().unwrap().named,
            vec![("a".to_string(), 2.0), ("b".to_string(), -1e-3)]
        );
        assert_eq!(c.lower.as_ref().unwrap().all, Some(0.0));
        let upper = c.upper.as_ref().unwrap();
        assert_eq!((upper.all, upper.named[0].1), (Some(-1.0), f64::NEG_INFINITY));
        assert_eq!(
            c.x.as_ref().unwrap()[0],
            ColSpec {
                alias: Some("u".into()),
                col: "1".into()
            }
        );
        assert_eq!(c.header(), Some(false));
        assert!(a.json);
    }

    #[test]
    fn nist_defaults_and_batch_files() {
        let Command::Nist(n) = parse_strs(&["nist", "dir"]).unwrap() else {
            panic!("not nist")
        };
        assert_eq!(
            (n.method, n.starts, n.ftol, n.max_nfev),
            (Method::Lm, Starts::Both, 1e-8, None)
        );
        let Command::Batch(b) = parse_strs(&["batch", "--model", "a*x", "--data", "1.csv", "--data=2.csv"]).unwrap()
        else {
            panic!("not batch")
        };
        assert_eq!(b.files, [PathBuf::from("1.csv"), PathBuf::from("2.csv")]);
    }

    #[test]
    fn help_and_version_are_text_to_print() {
        for args in [
            &[][..],
            &["--help"],
            &["fit", "--help"],
            &["help", "nist"],
            &["--version"],
        ] {
            match parse_strs(args) {
                Ok(Command::Help(text)) => assert!(text.contains("nlsq"), "{args:?}: {text}"),
                _ => panic!("{args:?}: not help"),
            }
        }
    }

    #[test]
    fn bad_options_are_one_line_errors() {
        for (bad, want) in [
            (vec!["--model", "a"], "nlsq fit needs --data FILE"),
            (
                vec!["--model", "a", "--data", "d", "--method", "dogbox"],
                "not supported yet",
            ),
            (
                vec!["--model", "a", "--data", "d", "--p0", "a=x"],
                "option --p0: 'x' is not a number",
            ),
            (
                vec!["--model", "a", "--data", "d", "--bogus"],
                "unknown option '--bogus'",
            ),
            (vec!["--model", "a", "--data", "d", "--plot", "out.pdf"], ".svg or .png"),
            (
                vec!["--model", "a", "--model", "b", "--data", "d"],
                "option --model is given twice",
            ),
            (vec!["--model", "a", "--data"], "option --data needs a value"),
            (vec!["--data", "d", "--model", "--json"], "option --model needs a value"),
            (
                vec!["--model", "a", "--data", "d", "--header", "--no-header"],
                "--no-header",
            ),
            (vec!["--model", "a", "--data", "d", "--json=yes"], "--json"),
            (
                vec!["--model", "a", "--data", "d", "--level", "1.5"],
                "option --level: '1.5' is not a confidence level strictly between 0 and 1",
            ),
            (vec!["--model", "a", "--data", "d", "--starts", "0"], "option --starts"),
            (
                vec!["--model", "a", "--data", "d", "--seed", "-1"],
                "option --seed: '-1' is not a seed",
            ),
            (
                vec!["--model", "a", "--data", "d", "--level", "95"],
                "option --level: '95' is not a confidence level",
            ),
            (
                vec!["--model", "a", "--data", "d", "stray"],
                "unexpected argument 'stray'",
            ),
        ] {
            let e = fit(&bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            let e = format!("{e:#}");
            assert!(!e.contains('\n') && e.contains(want), "{bad:?}: {e:?}");
        }
        for (bad, want) in [
            (&["bogus"][..], "unknown command 'bogus'"),
            (&["nist"], "needs a directory"),
            (&["nist", "d", "--start", "3"], "option --start: '3'"),
            (&["batch", "--model", "a*x"], "nlsq batch needs --data FILE"),
            (
                &["batch", "--model", "a", "--data", "d", "--plot", "p.svg"],
                "not available for nlsq batch",
            ),
        ] {
            let e = format!(
                "{:#}",
                parse_strs(bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"))
            );
            assert!(!e.contains('\n') && e.contains(want), "{bad:?}: {e:?}");
        }
    }
}
