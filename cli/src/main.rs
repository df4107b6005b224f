//! `nlsq`: fit an expression to columns of a data file, or run the NIST StRD suite.
//!
//! `nlsq --help` documents the commands; exit codes are 0 success, 1 a fit that ran but did
//! not converge, 2 bad input, 3 a runtime failure (plugin, XLA). Every error is one line on
//! stderr, starting with `error:`.

mod args;
mod data;
mod nist;
mod output;
mod plot;
mod predict;
mod progress;

use std::io::Write;

// mimalloc in place of the process's malloc, the XLA plugin's included (cli/Cargo.toml says why).
use libmimalloc_sys as _;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::Array2;
use nlsq::expr::{Expr, Func, Node};
use nlsq::fit::global::Dataset as GlobalData;
use nlsq::fit::{
    curve_fit, curve_fit_parameters, curve_fit_with_progress, CurveFit, FitOptions, Parameter, ParameterFit,
    Parameters, Prediction, Progress, XData,
};
use nlsq::solve::{Loss, Method};

use args::{BatchArgs, ColSpec, Command, Common, CompileArgs, FitArgs, ParamValues};
use data::{Column, Table};

/// Exit code of an error: 3 when the runtime failed (memory in use elsewhere included), 2 for
/// everything the user can fix (a program too large for the device included).
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<nlsq::Error>() {
            return match err {
                nlsq::Error::Provision(_)
                | nlsq::Error::PluginLoad { .. }
                | nlsq::Error::ApiVersion { .. }
                | nlsq::Error::Pjrt { .. }
                | nlsq::Error::MissingFunction { .. }
                | nlsq::Error::BufferDType { .. }
                | nlsq::Error::InvalidArgument { .. }
                | nlsq::Error::Io { .. }
                | nlsq::Error::OutOfMemory { .. }
                | nlsq::Error::Internal { .. } => 3,
                _ => 2,
            };
        }
    }
    2
}

/// One line: the error and its causes joined by ": ".
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints to stdout; a closed pipe (`nlsq ... | head`) is not an error.
fn print(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to standard output"),
        _ => Ok(()),
    }
}

fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

/// Letters, digits and `_`, not starting with a digit.
fn is_identifier_shape(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// A name that can be a variable or parameter: an identifier that is not a function or constant.
fn is_identifier(s: &str) -> bool {
    is_identifier_shape(s) && Func::from_name(s).is_none() && s != "pi" && s != "e"
}

/// An independent variable: its name in the model and its column.
struct Variable {
    name: String,
    column: Column,
}

fn resolve_variables(table: &Table, specs: &[ColSpec]) -> Result<Vec<Variable>> {
    let k = specs.len();
    let fallback = |i: usize| if k == 1 { "x".to_string() } else { format!("x{}", i + 1) };
    let mut vars: Vec<Variable> = Vec::with_capacity(k);
    for (i, spec) in specs.iter().enumerate() {
        let column = table.column(&spec.col, "--x")?;
        let name = match &spec.alias {
            Some(a) if is_identifier(a) => a.clone(),
            Some(a) => {
                bail!("--x {a}={}: '{a}' cannot name a variable (use letters, digits and _, not a function or constant name)", spec.col)
            }
            None => match &table.header {
                Some(h) if is_identifier(&h[column.index]) => h[column.index].clone(),
                // A column called `pi` or `exp` would silently lose to the constant or function.
                Some(h) if is_identifier_shape(&h[column.index]) => bail!(
                    "--x {}: '{}' is a constant or function of the model language, not a variable name: \
                     name the variable, e.g. --x t={}",
                    spec.col,
                    h[column.index],
                    spec.col
                ),
                _ => fallback(i),
            },
        };
        if vars.iter().any(|v| v.name == name) {
            bail!("--x: two independent variables are called '{name}' (name them with NAME=COLUMN)");
        }
        vars.push(Variable { name, column });
    }
    Ok(vars)
}

/// Expands `NAME=VALUE` lists (none given: every parameter gets its default) to one value per parameter.
fn per_param(
    opt: &str,
    values: Option<&ParamValues>,
    names: &[String],
    default: impl Fn(usize) -> f64,
) -> Result<Vec<f64>> {
    let values = values.cloned().unwrap_or_default();
    for (n, _) in &values.named {
        if !names.contains(n) {
            bail!(
                "{opt}: '{n}' is not a parameter of the model (parameters: {})",
                names.join(", ")
            );
        }
    }
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            values
                .named
                .iter()
                .find(|(m, _)| m == n)
                .map(|(_, v)| *v)
                .or(values.all)
                .unwrap_or_else(|| default(i))
        })
        .collect())
}

/// `--f-scale`, `--max-nfev` and the tolerances, shared by `fit` and `batch`.
fn solver_options(mut opts: FitOptions, a: &Common) -> FitOptions {
    if let Some(f) = a.f_scale {
        opts = opts.with_f_scale(f);
    }
    if let Some(n) = a.max_nfev {
        opts = opts.with_max_nfev(n);
    }
    if let Some(v) = a.ftol {
        opts.solver.ftol = v;
    }
    if let Some(v) = a.xtol {
        opts.solver.xtol = v;
    }
    if let Some(v) = a.gtol {
        opts.solver.gtol = v;
    }
    opts
}

fn run_fit(fit_args: &FitArgs) -> Result<u8> {
    if fit_args.data.len() > 1 || fit_args.group.is_some() {
        return run_several(fit_args);
    }
    if fit_args.shared.is_some() {
        bail!("--shared needs several datasets (repeat --data, or --group COL)");
    }
    let a = &fit_args.common;
    let src = match fit_args.model.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("cannot read --model file {file}"))?,
        None => fit_args.model.clone(),
    };
    if src.trim().is_empty() {
        bail!("--model is empty");
    }
    let builtin = builtin_model(&src)?;
    let table = Table::read(&fit_args.data[0], a.header())?;

    // Columns.
    let idents = match &builtin {
        Some(_) => vec!["x".to_string()],
        None => model_identifiers(&src)?,
    };
    let specs = variable_specs(&table, a, &idents)?;
    let vars = resolve_variables(&table, &specs)?;
    if builtin.is_some() && vars.len() != 1 {
        bail!("a built-in model takes one x column, but --x lists {}", vars.len());
    }
    let y_col = match &a.y {
        Some(c) => table.column(c, "--y")?,
        None => {
            let last = vars.iter().map(|v| v.column.index).max().unwrap_or(0);
            if last + 1 >= table.n_columns {
                bail!(
                    "{} has no column after column {} for y; choose one with --y",
                    table.name,
                    last + 1
                );
            }
            table.column(&(last + 2).to_string(), "y")?
        }
    };
    let sigma_col = a.sigma.as_ref().map(|c| table.column(c, "--sigma")).transpose()?;
    let x_rows: Vec<Vec<f64>> = vars
        .iter()
        .map(|v| table.values(&v.column, &format!("x '{}'", v.name)))
        .collect::<Result<_>>()?;
    let y = table.values(&y_col, "y")?;
    let sigma = sigma_col.as_ref().map(|c| table.values(c, "sigma")).transpose()?;
    if let (Some(s), Some(c)) = (&sigma, &sigma_col) {
        if let Some(i) = s.iter().position(|v| *v <= 0.0) {
            bail!(
                "{}: sigma (column {}) must be > 0, but data row {} has {}",
                table.name,
                c.index + 1,
                i + 1,
                s[i]
            );
        }
    }

    // Model and parameters.
    let var_names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    // A built-in's expression is in `x`; it traces its one variable whatever the column's name.
    let expr = match &builtin {
        Some(m) => m.expr().clone(),
        None => parse_model(&src, &var_names)?,
    };
    let names: Vec<String> = expr.params().to_vec();
    if names.is_empty() {
        bail!(
            "the model has no parameters (every name in it is a variable ({}), a function or a constant)",
            var_names.join(", ")
        );
    }
    check_bindings(&table, &vars, &y_col, sigma_col.as_ref(), &names)?;
    if builtin.is_none() {
        check_uses_a_variable(&expr, &var_names, &names)?;
    }
    let (lower, upper) = bounds(a, builtin.as_ref(), &names)?;
    let p0 = match &builtin {
        Some(m) => {
            let guess = m
                .guess_within(&x_rows[0], &y, &lower, &upper)
                .context("estimating the start (give --p0)")?;
            per_param("--p0", a.p0.as_ref(), &names, |i| guess[i])?
        }
        None => start_for_expression(a, &names, &lower, &upper)?,
    };
    let held = held_parameters(fit_args, &names)?;
    for (i, n) in names.iter().enumerate() {
        if held[i].is_some() {
            // Fixed and tied parameters are checked as such (`Parameters`).
            continue;
        }
        if !p0[i].is_finite() {
            bail!("--p0: the starting value of '{n}' must be finite");
        }
        if p0[i] < lower[i] || p0[i] > upper[i] {
            bail!(
                "p0 of '{n}' = {} is outside its bounds [{}, {}]",
                p0[i],
                lower[i],
                upper[i]
            );
        }
    }
    let bounded = (0..names.len()).any(|i| held[i].is_none() && (lower[i].is_finite() || upper[i].is_finite()));

    // Options.
    let loss = a.loss.unwrap_or(Loss::Linear);
    let mut opts = FitOptions::default()
        .with_absolute_sigma(a.absolute_sigma)
        .with_loss(loss);
    if let Some(s) = &sigma {
        opts = opts.with_sigma(s.clone());
    }
    let plain = held.iter().all(Option::is_none);
    if bounded && plain {
        opts = opts.with_bounds(lower.clone(), upper.clone());
    }
    let method = a.method.unwrap_or(if bounded || loss != Loss::Linear {
        Method::Trf
    } else {
        Method::Lm
    });
    if method == Method::Lm && loss != Loss::Linear {
        bail!("--loss {loss} needs --method trf (lm supports only the linear loss)");
    }
    if method == Method::Lm && bounded {
        bail!("--method lm does not support bounds; use --method trf");
    }
    opts = solver_options(opts.with_method(method), a)
        .with_starts(fit_args.starts)
        .with_seed(fit_args.seed);

    // Fit; a multistart fit longer than a second shows a progress line on a terminal.
    let model = expr.model();
    let x_matrix;
    let x = if x_rows.len() == 1 {
        XData::from(&x_rows[0])
    } else {
        x_matrix = Array2::from_shape_vec((x_rows.len(), y.len()), x_rows.concat())
            .map_err(|e| anyhow!("building the x matrix: {e}"))?;
        XData::from(&x_matrix)
    };
    let fit = if plain {
        let line = if opts.starts > 1 { progress::Line::start() } else { None };
        let fit = match &line {
            Some(l) => curve_fit_with_progress(&model, x, &y, Some(&p0), &opts, &|p: &Progress| l.update(p)),
            None => curve_fit(&model, x, &y, Some(&p0), &opts),
        };
        drop(line);
        fit.map(Fitted::Plain)
    } else {
        let params = named_parameters(a, &names, &p0, &lower, &upper, &held);
        curve_fit_parameters(&model, x, &y, &params, &opts).map(Fitted::Named)
    };
    let fitted = fit.map_err(|e| match e {
        nlsq::Error::InvalidInput { field: "p0", reason } if reason.contains("not finite") => {
            anyhow!(
                "the model is not finite at the starting point (p0: {}); give other --p0 values",
                fmt_params(&names, &p0)
            )
        }
        other => anyhow::Error::new(other).context("fit failed"),
    })?;
    let report = fitted.report(&names, fit_args.level);
    let fit = report.fit;

    // Output.
    if let Some(w) = fit.not_determined_warning(|i| format!("'{}'", report.varying[i])) {
        eprintln!("{w}");
    }
    // Once, where a person reads stderr: the first fit of a model and shape compiled a program.
    if fit.result.executable == nlsq::fit::ExecutableSource::Compiled
        && !fit_args.quiet
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        eprintln!(
            "note: compiled a program for this model and data shape in {}; it is cached, so the next fit \
             of this shape only executes (`nlsq compile` builds programs ahead; --quiet hides this)",
            output::fmt_ms(fit.result.timings.compile)
        );
    }
    if fit_args.json {
        print(&(serde_json::to_string_pretty(&output::fit_json(&report, fit_args.level))? + "\n"))?;
    } else {
        let xs: Vec<String> = vars
            .iter()
            .map(|v| format!("{} = {}", v.name, v.column.describe()))
            .collect();
        let shown = match &builtin {
            Some(m) => format!("{m} = {}", m.text()),
            None => src.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let mut context = format!(
            "model  {shown}\ndata   {}: {} points; {}; y = {}",
            table.name,
            y.len(),
            xs.join(", "),
            y_col.describe()
        );
        if let Some(c) = &sigma_col {
            context.push_str(&format!(
                "; sigma = {}{}",
                c.describe(),
                if a.absolute_sigma { " (absolute)" } else { "" }
            ));
        }
        print(&output::fit_table(&report, &context, fit_args.level))?;
    }
    if let Some(path) = &fit_args.plot {
        let level = fit_args.level;
        let (x, curve, band, fitted) = if x_rows.len() == 1 {
            let x = &x_rows[0];
            let (lo, hi) = x
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
            const GRID: usize = 512;
            let grid: Vec<f64> = (0..GRID)
                .map(|i| lo + (hi - lo) * i as f64 / (GRID - 1) as f64)
                .collect();
            let both: Vec<f64> = grid.iter().chain(x.iter()).copied().collect();
            let p = fitted.predict(&expr, &[both], level).context("the plot")?;
            let (mut f, mut band) = (p.y.to_vec(), p.confidence.to_vec());
            let at_data = f.split_off(GRID);
            band.truncate(GRID);
            (Some(x.clone()), Some((grid, f)), Some(band), at_data)
        } else {
            let p = fitted.predict(&expr, &x_rows, level).context("the plot")?;
            (None, None, None, p.y.to_vec())
        };
        let title = format!(
            "{}   (cost {}, status {})",
            src.split_whitespace().collect::<Vec<_>>().join(" "),
            output::sci(fit.result.cost, 4),
            fit.result.status.code()
        );
        let data = plot::PlotData {
            x,
            y: y.clone(),
            sigma: sigma.clone(),
            fitted,
            curve,
            band,
            level,
            title,
            x_label: vars[0].name.clone(),
            y_label: y_col.label.clone(),
        };
        if let Some(w) = plot::write(path, &data)? {
            warn(&w);
        }
    }
    if !fit.success() {
        eprintln!(
            "error: the fit did not converge (status {}: {})",
            fit.result.status.code(),
            fit.result.message()
        );
        return Ok(1);
    }
    Ok(0)
}

/// What `--fix` and `--tie` do with a parameter.
enum Held {
    /// Fixed at this value, or at its start.
    Fixed(Option<f64>),
    /// Tied to this expression.
    Tied(String),
}

/// `--fix` and `--tie` per parameter of `names` (`None`: it varies).
fn held_parameters(fit_args: &FitArgs, names: &[String]) -> Result<Vec<Option<Held>>> {
    let mut held: Vec<Option<Held>> = names.iter().map(|_| None).collect();
    let position = |option: &str, name: &str| {
        names.iter().position(|n| n == name).ok_or_else(|| {
            anyhow!(
                "{option}: the model has no parameter '{name}' (its parameters: {})",
                names.join(", ")
            )
        })
    };
    for (name, value) in fit_args.fix.iter().flatten() {
        held[position("--fix", name)?] = Some(Held::Fixed(*value));
    }
    for (name, expr) in &fit_args.tie {
        let i = position("--tie", name)?;
        if held[i].is_some() {
            bail!("--tie: parameter '{name}' is also fixed or tied by another --tie; give it one");
        }
        held[i] = Some(Held::Tied(expr.clone()));
    }
    Ok(held)
}

/// The `Parameters` of a fit with `--fix` or `--tie`: starts, bounds, and what is held.
fn named_parameters(
    a: &Common,
    names: &[String],
    p0: &[f64],
    lower: &[f64],
    upper: &[f64],
    held: &[Option<Held>],
) -> Parameters {
    // Bounds the user gave for `name` by name (not a built-in model's own, nor one value for
    // every parameter).
    let given =
        |v: &Option<ParamValues>, name: &str| v.as_ref().is_some_and(|v| v.named.iter().any(|(n, _)| n == name));
    let mut params = Parameters::new();
    for (i, name) in names.iter().enumerate() {
        let p = Parameter::new(name.as_str(), p0[i]).with_bounds(lower[i], upper[i]);
        params.add(match &held[i] {
            None => p,
            Some(Held::Fixed(v)) => Parameter::new(name.as_str(), v.unwrap_or(p0[i]))
                .with_bounds(lower[i], upper[i])
                .fixed(),
            // A tie takes no bounds: a built-in model's own are dropped, the user's are refused
            // by the library, naming the parameter.
            Some(Held::Tied(e)) if given(&a.lower, name) || given(&a.upper, name) => p.tied(e.as_str()),
            Some(Held::Tied(e)) => Parameter::new(name.as_str(), p0[i]).tied(e.as_str()),
        });
    }
    params
}

/// A fit of `nlsq fit`: of every parameter, or with some fixed or tied.
enum Fitted {
    Plain(CurveFit),
    Named(ParameterFit),
}

impl Fitted {
    fn report(&self, names: &[String], level: f64) -> output::Report<'_> {
        match self {
            Fitted::Plain(f) => output::Report::plain(names, f, level),
            Fitted::Named(f) => output::Report::named(f, level),
        }
    }

    /// The fitted model at the points `x_rows` (`k` rows of `m` values) with its bands.
    fn predict(&self, expr: &Expr, x_rows: &[Vec<f64>], level: f64) -> Result<Prediction> {
        match self {
            Fitted::Plain(f) => predict::evaluate(expr, x_rows, f, level),
            Fitted::Named(f) => {
                let model = expr.model();
                let out = if x_rows.len() == 1 {
                    f.predict(&model, &x_rows[0], level, None)
                } else {
                    let m = x_rows.first().map_or(0, Vec::len);
                    let x = Array2::from_shape_vec((x_rows.len(), m), x_rows.concat()).context("the x rows")?;
                    f.predict(&model, &x, level, None)
                };
                out.context("evaluating the fitted model")
            }
        }
    }
}

/// The built-in model `src` names (`gaussian+linear`), or `None` for an expression.
fn builtin_model(src: &str) -> Result<Option<nlsq::models::Model>> {
    if !nlsq::models::is_builtin_spec(src) {
        return Ok(None);
    }
    nlsq::models::parse(src).map(Some).context("--model")
}

/// `--lower` and `--upper` per parameter: a built-in model's own bounds where the options give
/// none (none with `--method lm`, which takes no bounds), else -inf and inf.
fn bounds(a: &Common, builtin: Option<&nlsq::models::Model>, names: &[String]) -> Result<(Vec<f64>, Vec<f64>)> {
    let natural = builtin.filter(|_| a.method != Some(Method::Lm));
    let lower = per_param("--lower", a.lower.as_ref(), names, |i| {
        natural.map_or(f64::NEG_INFINITY, |m| m.lower()[i])
    })?;
    let upper = per_param("--upper", a.upper.as_ref(), names, |i| {
        natural.map_or(f64::INFINITY, |m| m.upper()[i])
    })?;
    for (i, n) in names.iter().enumerate() {
        if lower[i] >= upper[i] {
            bail!(
                "the lower bound of '{n}' ({}) must be less than its upper bound ({})",
                lower[i],
                upper[i]
            );
        }
    }
    Ok((lower, upper))
}

/// `--p0` of an expression model: scipy's curve_fit rule (`_initialize_feasible`, the
/// library's) for the parameters not given; `auto` needs a built-in model.
fn start_for_expression(a: &Common, names: &[String], lower: &[f64], upper: &[f64]) -> Result<Vec<f64>> {
    if a.p0.as_ref().is_some_and(|p| p.auto) {
        bail!(
            "--p0 auto needs a built-in model (e.g. --model gaussian+linear; see nlsq fit --help); \
             give starting values for an expression"
        );
    }
    per_param("--p0", a.p0.as_ref(), names, |i| {
        nlsq::fit::default_start(lower[i], upper[i])
    })
}

/// `nlsq batch`: every dataset (a file, or a group of rows) fitted by one batched call.
/// `nlsq compile`: the programs of the model for each length, into the executable cache.
fn run_compile(c: &CompileArgs) -> Result<u8> {
    let src = match c.model.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("cannot read --model file {file}"))?,
        None => c.model.clone(),
    };
    if src.trim().is_empty() {
        bail!("--model is empty");
    }
    // A built-in model (`gaussian+linear`) has one variable and its own bounds, as in `nlsq fit`.
    let builtin = builtin_model(&src)?;
    if builtin.is_some() && c.vars.as_ref().is_some_and(|v| v.len() != 1) {
        bail!("a built-in model takes one x variable");
    }
    let vars: Vec<String> = c.vars.clone().unwrap_or_else(|| vec!["x".to_string()]);
    let names: Vec<&str> = vars.iter().map(String::as_str).collect();
    let expr = match &builtin {
        Some(m) => m.expr().clone(),
        None => Expr::parse(&src, &names).context("--model")?,
    };
    let n = expr.params().len();
    if n == 0 {
        bail!("the model has no parameters");
    }
    if builtin.is_none() && !uses_a_variable(expr.root()) {
        bail!("the model uses none of the variables {} (see --vars)", vars.join(", "));
    }
    let natural = builtin
        .as_ref()
        .filter(|m| c.method != Some(Method::Lm) && m.lower().iter().chain(m.upper()).any(|v| v.is_finite()));
    let bounded = c.bounded || natural.is_some();
    let loss = c.loss.unwrap_or(Loss::Linear);
    let method = c.method.unwrap_or(if bounded || loss != Loss::Linear {
        Method::Trf
    } else {
        Method::Lm
    });
    if method == Method::Lm && (bounded || loss != Loss::Linear) {
        bail!("--method lm does not support bounds or a robust loss; use --method trf");
    }
    let mut opts = FitOptions::default().with_method(method).with_loss(loss);
    if let Some(m) = natural {
        opts = opts.with_bounds(m.lower().to_vec(), m.upper().to_vec());
    } else if bounded {
        // Any finite bound makes a bounded program; the values are inputs of it.
        opts = opts.with_bounds(vec![-f64::MAX; n], vec![f64::INFINITY; n]);
    }
    if c.weighted {
        opts = opts.with_sigma(vec![1.0]);
    }
    let x_rows = (vars.len() > 1).then_some(vars.len());
    let model = expr.model();
    let done = nlsq::fit::warm_up(&model, &c.lengths, n, x_rows, &opts).context("compile failed")?;
    for w in &done {
        let lengths: Vec<String> = w.lengths.iter().map(usize::to_string).collect();
        print(&format!(
            "{} rows (lengths {}): {} in {}\n",
            w.rows,
            lengths.join(", "),
            w.source,
            output::fmt_ms(w.time)
        ))?;
    }
    Ok(0)
}

/// `nlsq fit` with several datasets: one global fit with `--shared`, else each on its own (as
/// `nlsq batch`, said on stderr).
fn run_several(fit_args: &FitArgs) -> Result<u8> {
    let b = BatchArgs {
        model: fit_args.model.clone(),
        files: fit_args.data.clone(),
        group: fit_args.group.clone(),
        common: fit_args.common.clone(),
    };
    let Some(shared) = &fit_args.shared else {
        if fit_args.fix.is_some() || !fit_args.tie.is_empty() || fit_args.json || fit_args.plot.is_some() {
            bail!("several datasets without --shared fit each on its own (nlsq batch), which takes no --fix, --tie, --json or --plot; give --shared for one global fit");
        }
        eprintln!("note: no --shared: each dataset is fitted on its own, as nlsq batch does (one JSON line each)");
        return run_batch(&b);
    };
    let a = &b.common;
    let (src, builtin, idents) = model_source(&b.model)?;
    let mut var_name = None;
    let mut sets: Vec<Dataset> = Vec::new();
    for path in &b.files {
        read_datasets(path, &b, &idents, &mut var_name, &mut sets)?;
    }
    if let Some(bad) = sets.iter().find(|s| s.error.is_some()) {
        bail!("dataset {}: {}", bad.label, bad.error.as_deref().unwrap_or(""));
    }
    if sets.len() < 2 {
        bail!("--shared needs several datasets, but the data hold {}", sets.len());
    }
    let DatasetsModel {
        expr,
        names,
        lower,
        upper,
    } = datasets_model(a, &src, builtin.as_ref(), var_name)?;
    // A built-in's start is estimated per dataset: dataset 0's for the shared parameters.
    let guesses: Vec<Vec<f64>> = match &builtin {
        Some(m) => sets
            .iter()
            .map(|set| {
                let guess = m
                    .guess_within(&set.x, &set.y, &lower, &upper)
                    .with_context(|| format!("estimating the start of dataset {} (give --p0)", set.label))?;
                per_param("--p0", a.p0.as_ref(), &names, |i| guess[i])
            })
            .collect::<Result<_>>()?,
        None => vec![start_for_expression(a, &names, &lower, &upper)?],
    };
    let held = held_parameters(fit_args, &names)?;
    let params = named_parameters(a, &names, &guesses[0], &lower, &upper, &held);
    let bounded = (0..names.len()).any(|i| held[i].is_none() && (lower[i].is_finite() || upper[i].is_finite()));
    let loss = a.loss.unwrap_or(Loss::Linear);
    let method = datasets_method(a, bounded, loss)?;
    let opts = solver_options(
        FitOptions::default()
            .with_absolute_sigma(a.absolute_sigma)
            .with_loss(loss)
            .with_method(method),
        a,
    )
    .with_starts(fit_args.starts)
    .with_seed(fit_args.seed);
    let shared_refs: Vec<&str> = shared.iter().map(String::as_str).collect();
    let data: Vec<GlobalData> = sets
        .iter()
        .enumerate()
        .map(|(d, set)| {
            let mut g = GlobalData::new(&set.x, &set.y);
            if let Some(s) = &set.sigma {
                g = g.with_sigma(s);
            }
            if let Some(guess) = guesses.get(d).filter(|_| d > 0) {
                for (i, name) in names.iter().enumerate() {
                    if !shared.contains(name) && held[i].is_none() {
                        g = g.with_start(name.as_str(), guess[i]);
                    }
                }
            }
            g
        })
        .collect();
    let model = expr.model();
    let fit = nlsq::fit::curve_fit_global(&model, &data, &params, &shared_refs, &opts)
        .map_err(|e| anyhow::Error::new(e).context("global fit failed"))?;
    let f = &fit.fit;
    if let Some(w) = f.not_determined_warning(|i| format!("'{}'", fit.names[i])) {
        eprintln!("{w}");
    }
    let labels: Vec<String> = sets.iter().map(|s| s.label.clone()).collect();
    if fit_args.json {
        print(
            &(serde_json::to_string_pretty(&output::global_json(
                &fit,
                &labels,
                &sets.iter().map(|s| s.y.len()).collect::<Vec<_>>(),
                fit_args.level,
            ))? + "\n"),
        )?;
    } else {
        let mut context = format!(
            "model  {}\ndata   {} datasets, {} points; shared: {}",
            src.split_whitespace().collect::<Vec<_>>().join(" "),
            sets.len(),
            sets.iter().map(|s| s.y.len()).sum::<usize>(),
            shared.join(", ")
        );
        for (d, set) in sets.iter().enumerate() {
            context.push_str(&format!("\n       [{d}] {} ({} points)", set.label, set.y.len()));
        }
        let mut table = output::fit_table(
            &output::Report::plain(&fit.names, f, fit_args.level),
            &context,
            fit_args.level,
        );
        table.push_str(&output::held_lines(&fit));
        print(&table)?;
    }
    if !f.success() {
        eprintln!(
            "error: the fit did not converge (status {}: {})",
            f.result.status.code(),
            f.result.message()
        );
        return Ok(1);
    }
    Ok(0)
}

/// The model of `nlsq batch` and a global fit: its expression, parameter names and bounds.
struct DatasetsModel {
    expr: Expr,
    names: Vec<String>,
    lower: Vec<f64>,
    upper: Vec<f64>,
}

/// [`DatasetsModel`] of `src` (or the built-in model) in the datasets' one variable `var_name`
/// (`x` by default).
fn datasets_model(
    a: &Common,
    src: &str,
    builtin: Option<&nlsq::models::Model>,
    var_name: Option<String>,
) -> Result<DatasetsModel> {
    let var_name = var_name.unwrap_or_else(|| "x".into());
    let expr = match builtin {
        Some(m) => m.expr().clone(),
        None => parse_model(src, &[var_name.as_str()])?,
    };
    let names: Vec<String> = expr.params().to_vec();
    if names.is_empty() {
        bail!("the model has no parameters");
    }
    if builtin.is_none() {
        check_uses_a_variable(&expr, &[var_name.as_str()], &names)?;
    }
    let (lower, upper) = bounds(a, builtin, &names)?;
    Ok(DatasetsModel {
        expr,
        names,
        lower,
        upper,
    })
}

/// `--method` of `nlsq batch` and a global fit: as given, else lm without bounds and with the
/// linear loss, trf otherwise; lm with either is refused.
fn datasets_method(a: &Common, bounded: bool, loss: Loss) -> Result<Method> {
    let needs_trf = bounded || loss != Loss::Linear;
    let method = a.method.unwrap_or(if needs_trf { Method::Trf } else { Method::Lm });
    if method == Method::Lm && needs_trf {
        bail!("--method lm supports neither bounds nor robust losses; use --method trf");
    }
    Ok(method)
}

/// `--model` of `nlsq batch` and a global fit: its text (read from `@FILE`), the built-in model
/// it names if any, and the identifiers it uses (`x` for a built-in).
fn model_source(model: &str) -> Result<(String, Option<nlsq::models::Model>, Vec<String>)> {
    let src = match model.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("cannot read --model file {file}"))?,
        None => model.to_string(),
    };
    if src.trim().is_empty() {
        bail!("--model is empty");
    }
    let builtin = builtin_model(&src)?;
    let idents = match &builtin {
        Some(_) => vec!["x".to_string()],
        None => model_identifiers(&src)?,
    };
    Ok((src, builtin, idents))
}

fn run_batch(b: &BatchArgs) -> Result<u8> {
    let a = &b.common;
    let (src, builtin, idents) = model_source(&b.model)?;
    let mut var_name = None;
    let mut sets: Vec<Dataset> = Vec::new();
    for path in &b.files {
        if let Err(e) = read_datasets(path, b, &idents, &mut var_name, &mut sets) {
            // The file's problem is its dataset's error line; the other files still fit.
            sets.push(Dataset::refused(path.display().to_string(), one_line(&e)));
        }
    }
    let DatasetsModel {
        expr,
        names,
        lower,
        upper,
    } = datasets_model(a, &src, builtin.as_ref(), var_name)?;
    // An expression's start is the same for every dataset; a built-in's is estimated per dataset.
    let p0 = match &builtin {
        Some(_) => Vec::new(),
        None => start_for_expression(a, &names, &lower, &upper)?,
    };
    let bounded = lower.iter().chain(&upper).any(|v| v.is_finite());
    let loss = a.loss.unwrap_or(Loss::Linear);
    let mut opts = FitOptions::default()
        .with_absolute_sigma(a.absolute_sigma)
        .with_loss(loss);
    if bounded {
        opts = opts.with_bounds(lower.clone(), upper.clone());
    }
    let method = datasets_method(a, bounded, loss)?;
    opts = solver_options(opts.with_method(method), a);

    // Ragged arrays padded to the longest dataset; refused datasets are not fitted.
    let good: Vec<&Dataset> = sets.iter().filter(|s| s.error.is_none()).collect();
    let (nb, n) = (good.len(), names.len());
    let m = good.iter().map(|s| s.y.len()).max().unwrap_or(0);
    let mut fits = Vec::new();
    if nb > 0 {
        let mut x = Array2::zeros((nb, m));
        let mut y = Array2::zeros((nb, m));
        let mut sigma = Array2::ones((nb, m));
        for (i, set) in good.iter().enumerate() {
            for j in 0..set.y.len() {
                x[[i, j]] = set.x[j];
                y[[i, j]] = set.y[j];
                if let Some(s) = &set.sigma {
                    sigma[[i, j]] = s[j];
                }
            }
        }
        let starts: Vec<Vec<f64>> = match &builtin {
            Some(m) => good
                .iter()
                .map(|set| {
                    // A dataset the estimate cannot use fails in the fit with its own error.
                    let guess = m
                        .guess_within(&set.x, &set.y, &lower, &upper)
                        .unwrap_or_else(|_| (0..n).map(|i| nlsq::fit::default_start(lower[i], upper[i])).collect());
                    per_param("--p0", a.p0.as_ref(), &names, |i| guess[i])
                })
                .collect::<Result<_>>()?,
            None => vec![p0.clone(); nb],
        };
        let p0s = Array2::from_shape_fn((nb, n), |(b, j)| starts[b][j]);
        let lengths: Vec<usize> = good.iter().map(|s| s.y.len()).collect();
        let mut batch = nlsq::fit::batch::Batch::new(x.view(), y.view(), p0s.view()).with_lengths(lengths);
        if a.sigma.is_some() {
            batch = batch.with_sigma(sigma.view());
        }
        // One variable: x is that variable for every problem (`[B, m]` rows are problems).
        let model = |x: &nlsq::graph::Tensor, p: &nlsq::graph::Params| expr.trace(std::slice::from_ref(x), p);
        // A batch longer than a second shows a progress line on a terminal, cleared at the end.
        let line = progress::Line::start();
        let report = |p: &Progress| {
            if let Some(l) = &line {
                l.update(p);
            }
        };
        if line.is_some() {
            batch = batch.with_progress(&report);
        }
        let batched = nlsq::fit::batch::curve_fit_batch(&model, &batch, &opts);
        drop(batch);
        drop(line);
        fits = batched.context("batch fit failed")?;
    }
    let mut fits = fits.into_iter();
    let mut out = String::new();
    let (mut converged, mut refused) = (0usize, 0usize);
    for set in &sets {
        let fit = match &set.error {
            Some(e) => Err(e.clone()),
            None => fits
                .next()
                .expect("one result per fitted dataset")
                .map_err(|e| e.to_string()),
        };
        let line = match fit {
            Ok(f) => {
                converged += usize::from(f.success());
                let mut v = output::fit_json(&output::Report::plain(&names, &f, 0.95), 0.95);
                if let serde_json::Value::Object(map) = &mut v {
                    map.insert("n_points".into(), set.y.len().into());
                    let mut with_name = serde_json::Map::new();
                    with_name.insert("dataset".into(), set.label.clone().into());
                    with_name.extend(std::mem::take(map));
                    *map = with_name;
                }
                v
            }
            Err(e) => {
                refused += 1;
                serde_json::json!({ "dataset": set.label, "error": e })
            }
        };
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    print(&out)?;
    if refused == sets.len() {
        bail!("no dataset could be fitted ({refused} refused; each line says why)");
    }
    Ok(if converged == sets.len() { 0 } else { 1 })
}

/// One dataset of `nlsq batch`: a file, or the rows of one group; or the reason it cannot be
/// fitted (its line in the output says it, the other datasets are fitted).
struct Dataset {
    label: String,
    x: Vec<f64>,
    y: Vec<f64>,
    sigma: Option<Vec<f64>>,
    error: Option<String>,
}

impl Dataset {
    fn new(label: String, with_sigma: bool) -> Dataset {
        let sigma = with_sigma.then(Vec::new);
        Dataset {
            label,
            x: Vec::new(),
            y: Vec::new(),
            sigma,
            error: None,
        }
    }

    fn refused(label: String, error: String) -> Dataset {
        Dataset {
            error: Some(error),
            ..Dataset::new(label, false)
        }
    }
}

/// Reads the datasets of one `--data` file into `sets`: the whole file, or one per `--group`
/// value. A bad value (not a number, not finite, sigma <= 0) refuses only its dataset; an
/// error about the file itself is returned.
fn read_datasets(
    path: &std::path::Path,
    b: &BatchArgs,
    idents: &[String],
    var_name: &mut Option<String>,
    sets: &mut Vec<Dataset>,
) -> Result<()> {
    let a = &b.common;
    let table = Table::read(path, a.header())?;
    let specs = variable_specs(&table, a, idents)?;
    let vars = resolve_variables(&table, &specs)?;
    if vars.len() != 1 {
        bail!("nlsq batch supports one --x column");
    }
    match var_name {
        Some(v) if *v != vars[0].name => bail!(
            "{}: the variable is '{}' here but '{v}' in the files before; name it with --x {v}=COLUMN",
            table.name,
            vars[0].name
        ),
        _ => *var_name = Some(vars[0].name.clone()),
    }
    let group_col = b.group.as_ref().map(|g| table.column(g, "--group")).transpose()?;
    let y_col = match &a.y {
        Some(c) => table.column(c, "--y")?,
        None => {
            let mut next = vars[0].column.index + 1;
            if group_col.as_ref().is_some_and(|g| g.index == next) {
                next += 1;
            }
            if next >= table.n_columns {
                bail!("{} has no column for y; choose one with --y", table.name);
            }
            table.column(&(next + 1).to_string(), "y")?
        }
    };
    check_bindings(&table, &vars, &y_col, None, idents)?;
    let x = table.values_each(&vars[0].column, &format!("x '{}'", vars[0].name));
    let y = table.values_each(&y_col, "y");
    let sigma = a
        .sigma
        .as_ref()
        .map(|c| table.column(c, "--sigma").map(|c| table.values_each(&c, "sigma")))
        .transpose()?;
    let keys = match &group_col {
        Some(gc) => Some(table.strings(gc, "--group")?),
        None => None,
    };
    let first = sets.len();
    let mut index = std::collections::HashMap::new();
    for i in 0..y.len() {
        let slot = match &keys {
            None if i == 0 => {
                sets.push(Dataset::new(table.name.clone(), sigma.is_some()));
                first
            }
            None => first,
            Some(k) => *index.entry(k[i].clone()).or_insert_with(|| {
                sets.push(Dataset::new(k[i].clone(), sigma.is_some()));
                sets.len() - 1
            }),
        };
        let set = &mut sets[slot];
        if set.error.is_some() {
            continue;
        }
        let s = sigma.as_ref().map(|s| match &s[i] {
            Ok(v) if *v <= 0.0 => Err(format!(
                "{}: sigma must be > 0, but data row {} has {v}",
                table.name,
                i + 1
            )),
            other => other.clone(),
        });
        match (&x[i], &y[i], s) {
            (Err(e), _, _) | (_, Err(e), _) => set.error = Some(e.clone()),
            (_, _, Some(Err(e))) => set.error = Some(e),
            (Ok(xv), Ok(yv), s) => {
                set.x.push(*xv);
                set.y.push(*yv);
                if let (Some(Ok(sv)), Some(all)) = (s, set.sigma.as_mut()) {
                    all.push(sv);
                }
            }
        }
    }
    if keys.is_some() && b.files.len() > 1 {
        for set in &mut sets[first..] {
            set.label = format!("{}:{}", table.name, set.label);
        }
    }
    Ok(())
}

/// The free identifiers of the model (every name that is not a function or a constant), in
/// order of first appearance.
fn model_identifiers(src: &str) -> Result<Vec<String>> {
    Ok(parse_model(src, &[])?.params().to_vec())
}

/// Parses `--model` with the independent variables `vars`; errors name the position.
fn parse_model(src: &str, vars: &[&str]) -> Result<Expr> {
    Expr::parse(src, vars).map_err(|e| match e {
        nlsq::Error::Parse { line, column, message } => {
            anyhow!("invalid --model expression at {line}:{column}: {message}")
        }
        other => anyhow!("invalid --model expression: {other}"),
    })
}

/// The independent variables: `--x` when given; otherwise every column whose header is a name
/// in the model (`idents`), other than the `--y` and `--sigma` columns, in file order; otherwise
/// the column `x`, or the first column.
fn variable_specs(table: &Table, a: &Common, idents: &[String]) -> Result<Vec<ColSpec>> {
    if let Some(x) = &a.x {
        return Ok(x.clone());
    }
    let mut reserved = Vec::new();
    for (spec, what) in [(&a.y, "--y"), (&a.sigma, "--sigma")] {
        if let Some(c) = spec {
            reserved.push(table.column(c, what)?.index);
        }
    }
    if let Some(h) = &table.header {
        let bound: Vec<ColSpec> = h
            .iter()
            .enumerate()
            .filter(|(i, c)| idents.contains(c) && !reserved.contains(i))
            .map(|(_, c)| ColSpec {
                alias: None,
                col: c.clone(),
            })
            .collect();
        if !bound.is_empty() {
            return Ok(bound);
        }
        if h.iter().any(|c| c == "x") {
            return Ok(vec![ColSpec {
                alias: None,
                col: "x".into(),
            }]);
        }
    }
    Ok(vec![ColSpec {
        alias: Some("x".into()),
        col: "1".into(),
    }])
}

/// A name in the model that is also a column header must be that column: one that is the y or
/// sigma column, or a column `--x` does not list, is an error rather than a parameter.
fn check_bindings(
    table: &Table,
    vars: &[Variable],
    y: &Column,
    sigma: Option<&Column>,
    names: &[String],
) -> Result<()> {
    let Some(h) = &table.header else { return Ok(()) };
    for (i, col) in h.iter().enumerate() {
        if !names.contains(col) || vars.iter().any(|v| v.column.index == i) {
            continue;
        }
        let role = if i == y.index {
            "the y column"
        } else if sigma.is_some_and(|s| s.index == i) {
            "the sigma column"
        } else {
            "a column that --x does not list"
        };
        bail!(
            "'{col}' in the model is {role} of {}: list it in --x to use the column as a variable, \
             or rename the parameter",
            table.name
        );
    }
    Ok(())
}

/// A model that uses none of the independent variables fits a constant: an error that names
/// them, since it is almost always a model written in another variable's name.
fn check_uses_a_variable(expr: &Expr, vars: &[&str], names: &[String]) -> Result<()> {
    if uses_a_variable(expr.root()) {
        return Ok(());
    }
    bail!(
        "the model does not use the independent variable{} {} (its names are all parameters: {}); \
         write the model in {}, or choose the variable with --x NAME=COLUMN",
        if vars.len() > 1 { "s" } else { "" },
        vars.join(", "),
        names.join(", "),
        vars.join(", ")
    )
}

fn uses_a_variable(node: &Node) -> bool {
    matches!(node, Node::Var(_)) || node.children().into_iter().any(uses_a_variable)
}

fn fmt_params(names: &[String], v: &[f64]) -> String {
    names
        .iter()
        .zip(v)
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn run() -> Result<u8> {
    match args::parse(std::env::args().skip(1).collect())? {
        Command::Help(text) => print(&text).map(|_| 0),
        Command::Fit(a) => run_fit(&a),
        Command::Nist(a) => print(&nist::run(&a)?).map(|_| 0),
        Command::Batch(a) => run_batch(&a),
        Command::Compile(a) => run_compile(&a),
    }
}

fn main() {
    // A bug must still end as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error: {}{at} (please report it)",
            msg.replace('\n', " ")
        );
        std::process::exit(3);
    }));
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            exit_code(&e)
        }
    };
    // Everything is written; skip the plugin's static teardown (~9 ms).
    nlsq::pjrt::exit_now(i32::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_too_large_exits_2_and_memory_in_use_exits_3() {
        let too_large = nlsq::Error::ProgramTooLarge {
            needed: 2,
            capacity: 1,
            device: "cpu".into(),
            limit: "limit",
            advice: "advice",
        };
        let in_use = nlsq::Error::OutOfMemory {
            needed: 2,
            available: 1,
            device: "cpu".into(),
            limit: "limit",
            advice: "advice",
        };
        assert_eq!(exit_code(&anyhow::Error::new(too_large).context("fitting")), 2);
        assert_eq!(exit_code(&anyhow::Error::new(in_use)), 3);
    }
}
