//! The expression language: `"a*exp(-k*x) + c"` → a model.
//!
//! Used by the `nlsq` command (models given on the command line) and by library users who
//! read models from configuration (the NIST StRD tests use it for all 27 problems).
//!
//! Grammar (whitespace and newlines are ignored between tokens):
//!
//! ```text
//! expr    := term (('+' | '-') term)*
//! term    := unary (('*' | '/') unary)*
//! unary   := ('-' | '+') unary | power
//! power   := atom (('^' | '**') unary)?          right-associative: a^b^c = a^(b^c)
//! atom    := number | name | name '(' expr ')' | '(' expr ')'
//! ```
//!
//! So `-x^2 = -(x^2)` and `x^-2 = x^(-2)`. Functions: `exp log ln sqrt sin cos tan asin acos
//! atan sinh cosh tanh abs erf erfc` (`log` is the natural logarithm, like `ln`). Constants:
//! `pi`, `e`. A name that is neither a function, a constant nor an independent variable is a
//! parameter; parameters are numbered in order of first appearance unless an explicit order
//! is given. Errors carry the 1-based line and column of the offending token.
//!
//! # References
//! - Operator precedence as in Fortran/Python (`**` binds tighter than unary minus).

use crate::error::{Error, Result};
use crate::graph::{Params, Tensor};

/// A function of the expression language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `exp`
    Exp,
    /// `log`, `ln` (natural logarithm)
    Ln,
    /// `sqrt`
    Sqrt,
    /// `sin`
    Sin,
    /// `cos`
    Cos,
    /// `tan`
    Tan,
    /// `asin`
    Asin,
    /// `acos`
    Acos,
    /// `atan`
    Atan,
    /// `sinh`
    Sinh,
    /// `cosh`
    Cosh,
    /// `tanh`
    Tanh,
    /// `abs`
    Abs,
    /// `erf`
    Erf,
    /// `erfc`
    Erfc,
}

impl Func {
    /// Looks a function up by name.
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "exp" => Func::Exp,
            "log" | "ln" => Func::Ln,
            "sqrt" => Func::Sqrt,
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" => Func::Tan,
            "asin" => Func::Asin,
            "acos" => Func::Acos,
            "atan" => Func::Atan,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "tanh" => Func::Tanh,
            "abs" => Func::Abs,
            "erf" => Func::Erf,
            "erfc" => Func::Erfc,
            _ => return None,
        })
    }
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `^` or `**`
    Pow,
}

/// A node of a parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A number literal (or the constants `pi`, `e`).
    Num(f64),
    /// The independent variable with this index.
    Var(usize),
    /// The parameter with this index.
    Param(usize),
    /// Unary minus.
    Neg(Box<Node>),
    /// A binary operation.
    Bin(BinOp, Box<Node>, Box<Node>),
    /// A function call.
    Call(Func, Box<Node>),
}

/// A parsed expression with its variables and parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    root: Node,
    variables: Vec<String>,
    params: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Op(char),
    Pow,
    LParen,
    RParen,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn err(line: usize, column: usize, message: impl Into<String>) -> Error {
    Error::Parse {
        line,
        column,
        message: message.into(),
    }
}

fn lex(src: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        if c == '\n' {
            line += 1;
            col = 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            col += 1;
            continue;
        }
        let start = i;
        let tok = if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let text: String = chars[start..i].iter().collect();
            let v: f64 = text
                .parse()
                .map_err(|_| err(tl, tc, format!("invalid number '{text}'")))?;
            Tok::Num(v)
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            Tok::Name(chars[start..i].iter().collect())
        } else {
            i += 1;
            match c {
                '+' | '-' | '/' => Tok::Op(c),
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    Tok::Pow
                }
                '*' => Tok::Op('*'),
                '^' => Tok::Pow,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                other => return Err(err(tl, tc, format!("unexpected character '{other}'"))),
            }
        };
        col += i - start;
        out.push(Token {
            tok,
            line: tl,
            column: tc,
        });
    }
    out.push(Token {
        tok: Tok::End,
        line,
        column: col,
    });
    Ok(out)
}

/// The deepest nesting of parentheses, function calls, signs and powers an expression may
/// have. Parsing and tracing recurse once per level; the limit keeps both far inside any
/// thread's stack (a typed error instead of a stack overflow).
pub const MAX_NESTING: usize = 100;

/// Sums (and products) of more terms than this become balanced trees: a flat sum of 10⁵ terms
/// is then 17 levels deep instead of 10⁵. Shorter chains keep the left-to-right order, so their
/// rounding is the order they are written in.
const BALANCE_FROM: usize = 64;

/// `a op b`.
fn bin(op: BinOp, a: Node, b: Node) -> Node {
    Node::Bin(op, Box::new(a), Box::new(b))
}

/// `first c₁ r₁ c₂ r₂ …` as written, left to right: `ops[0]` where `c == primary`, `ops[1]`
/// elsewhere.
fn fold_left(first: Node, rest: Vec<(char, Node)>, primary: char, ops: [BinOp; 2]) -> Node {
    let op = |c| if c == primary { ops[0] } else { ops[1] };
    rest.into_iter().fold(first, |l, (c, r)| bin(op(c), l, r))
}

/// `items` joined pairwise by `join` until one is left: a tree of depth `log2(len)`.
fn balanced(mut items: Vec<Node>, join: impl Fn(Node, Node) -> Node) -> Node {
    while items.len() > 1 {
        let mut next = Vec::with_capacity(items.len().div_ceil(2));
        let mut it = items.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => join(a, b),
                None => a,
            });
        }
        items = next;
    }
    items.pop().expect("a chain has at least one term")
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    variables: &'a [String],
    params: Vec<String>,
    fixed_params: bool,
    /// Current nesting (see [`MAX_NESTING`]).
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    fn next(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    /// One level deeper (at token `t`), or the nesting error.
    fn enter(&mut self, t: &Token) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(err(
                t.line,
                t.column,
                format!(
                    "the expression is nested more than {MAX_NESTING} levels deep (parentheses, calls, signs, powers)"
                ),
            ));
        }
        Ok(())
    }

    /// `first` followed by `(op, operand)` pairs for the operators `ops`, each operand from
    /// `operand`.
    fn chain(&mut self, ops: [char; 2], operand: fn(&mut Self) -> Result<Node>) -> Result<(Node, Vec<(char, Node)>)> {
        let first = operand(self)?;
        let mut rest = Vec::new();
        while let Tok::Op(c) = self.peek().tok {
            if !ops.contains(&c) {
                break;
            }
            self.next();
            rest.push((c, operand(self)?));
        }
        Ok((first, rest))
    }

    fn expr(&mut self) -> Result<Node> {
        let (first, rest) = self.chain(['+', '-'], Self::term)?;
        if rest.len() < BALANCE_FROM {
            return Ok(fold_left(first, rest, '+', [BinOp::Add, BinOp::Sub]));
        }
        // a - b is a + (-b) exactly.
        let terms = std::iter::once(first)
            .chain(
                rest.into_iter()
                    .map(|(c, r)| if c == '+' { r } else { Node::Neg(Box::new(r)) }),
            )
            .collect();
        Ok(balanced(terms, |a, b| bin(BinOp::Add, a, b)))
    }

    fn term(&mut self) -> Result<Node> {
        let (first, rest) = self.chain(['*', '/'], Self::unary)?;
        if rest.len() < BALANCE_FROM {
            return Ok(fold_left(first, rest, '*', [BinOp::Mul, BinOp::Div]));
        }
        // The product of the factors over the product of the divisors.
        let (mut num, mut den) = (vec![first], Vec::new());
        for (c, r) in rest {
            if c == '*' {
                num.push(r)
            } else {
                den.push(r)
            }
        }
        let num = balanced(num, |a, b| bin(BinOp::Mul, a, b));
        Ok(if den.is_empty() {
            num
        } else {
            bin(BinOp::Div, num, balanced(den, |a, b| bin(BinOp::Mul, a, b)))
        })
    }

    fn unary(&mut self) -> Result<Node> {
        match self.peek().tok {
            Tok::Op(c @ ('-' | '+')) => {
                let t = self.next();
                self.enter(&t)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(if c == '-' { Node::Neg(Box::new(inner)) } else { inner })
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<Node> {
        let base = self.atom()?;
        if self.peek().tok == Tok::Pow {
            let t = self.next();
            self.enter(&t)?;
            let exp = self.unary()?;
            self.depth -= 1;
            return Ok(bin(BinOp::Pow, base, exp));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Node> {
        let t = self.next();
        match t.tok {
            Tok::Num(v) => Ok(Node::Num(v)),
            Tok::LParen => {
                self.enter(&t)?;
                let inner = self.expr()?;
                self.expect_rparen(&t)?;
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Name(name) => {
                if self.peek().tok == Tok::LParen {
                    let open = self.next();
                    let f = Func::from_name(&name)
                        .ok_or_else(|| err(t.line, t.column, format!("unknown function '{name}'")))?;
                    self.enter(&open)?;
                    let arg = self.expr()?;
                    self.expect_rparen(&open)?;
                    self.depth -= 1;
                    return Ok(Node::Call(f, Box::new(arg)));
                }
                if Func::from_name(&name).is_some() {
                    return Err(err(
                        t.line,
                        t.column,
                        format!("function '{name}' needs an argument in parentheses"),
                    ));
                }
                if let Some(i) = self.variables.iter().position(|v| *v == name) {
                    return Ok(Node::Var(i));
                }
                match name.as_str() {
                    "pi" => return Ok(Node::Num(std::f64::consts::PI)),
                    "e" => return Ok(Node::Num(std::f64::consts::E)),
                    _ => {}
                }
                if let Some(i) = self.params.iter().position(|p| *p == name) {
                    return Ok(Node::Param(i));
                }
                if self.fixed_params {
                    return Err(err(
                        t.line,
                        t.column,
                        format!("unknown name '{name}' (not a variable, parameter, function or constant)"),
                    ));
                }
                self.params.push(name);
                Ok(Node::Param(self.params.len() - 1))
            }
            Tok::End => Err(err(t.line, t.column, "unexpected end of expression")),
            Tok::RParen => Err(err(t.line, t.column, "unexpected ')'")),
            Tok::Op(c) => Err(err(t.line, t.column, format!("unexpected '{c}'"))),
            Tok::Pow => Err(err(t.line, t.column, "unexpected '^'")),
        }
    }

    fn expect_rparen(&mut self, open: &Token) -> Result<()> {
        let t = self.next();
        match t.tok {
            Tok::RParen => Ok(()),
            Tok::End => Err(err(open.line, open.column, "unclosed '('")),
            _ => Err(err(t.line, t.column, "expected ')'")),
        }
    }
}

impl Expr {
    /// Parses `src` with the given independent-variable names; every other free name is a
    /// parameter, numbered in order of first appearance.
    ///
    /// # Errors
    /// [`Error::Parse`] with line and column.
    ///
    /// # Examples
    /// ```
    /// let e = nlsq::expr::Expr::parse("a * exp(-k * x) + c", &["x"]).unwrap();
    /// assert_eq!(e.params(), ["a", "k", "c"]);
    /// ```
    pub fn parse(src: &str, variables: &[&str]) -> Result<Expr> {
        Self::parse_impl(src, variables, None)
    }

    /// Parses with a fixed parameter list (its order is the parameter order); any other free
    /// name is an error.
    ///
    /// # Errors
    /// [`Error::Parse`] with line and column.
    pub fn parse_with_params(src: &str, variables: &[&str], params: &[&str]) -> Result<Expr> {
        Self::parse_impl(src, variables, Some(params))
    }

    fn parse_impl(src: &str, variables: &[&str], params: Option<&[&str]>) -> Result<Expr> {
        let variables: Vec<String> = variables.iter().map(|s| s.to_string()).collect();
        for name in variables
            .iter()
            .map(String::as_str)
            .chain(params.unwrap_or(&[]).iter().copied())
        {
            if Func::from_name(name).is_some() || name == "pi" || name == "e" {
                return Err(err(1, 1, format!("'{name}' is a reserved name (function or constant)")));
            }
        }
        let mut p = Parser {
            toks: lex(src)?,
            pos: 0,
            variables: &variables,
            params: params
                .map(|ps| ps.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            fixed_params: params.is_some(),
            depth: 0,
        };
        let root = p.expr()?;
        let t = p.peek().clone();
        if t.tok != Tok::End {
            return Err(err(
                t.line,
                t.column,
                "unexpected token after the end of the expression",
            ));
        }
        let params = p.params;
        Ok(Expr {
            root,
            variables,
            params,
        })
    }

    /// Parameter names in parameter order.
    pub fn params(&self) -> &[String] {
        &self.params
    }

    /// Independent-variable names.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// The syntax tree.
    pub fn root(&self) -> &Node {
        &self.root
    }
}

impl Node {
    fn trace(&self, vars: &[Tensor], p: &Params, anchor: &Tensor) -> Tensor {
        match self {
            Node::Num(v) => anchor.graph().constant(*v),
            Node::Var(i) => vars[*i].clone(),
            Node::Param(i) => p[*i].clone(),
            Node::Neg(a) => -a.trace(vars, p, anchor),
            Node::Bin(op, a, b) => {
                let l = a.trace(vars, p, anchor);
                if let (BinOp::Pow, Node::Num(e)) = (op, &**b) {
                    // Integer powers use repeated multiplication (exact, and defined for x < 0).
                    if e.fract() == 0.0 && e.abs() <= 64.0 {
                        return l.powi(*e as i32);
                    }
                    return l.powf(*e);
                }
                let r = b.trace(vars, p, anchor);
                match op {
                    BinOp::Add => l + r,
                    BinOp::Sub => l - r,
                    BinOp::Mul => l * r,
                    BinOp::Div => l / r,
                    BinOp::Pow => l.pow(&r),
                }
            }
            Node::Call(f, a) => {
                let a = a.trace(vars, p, anchor);
                match f {
                    Func::Exp => a.exp(),
                    Func::Ln => a.ln(),
                    Func::Sqrt => a.sqrt(),
                    Func::Sin => a.sin(),
                    Func::Cos => a.cos(),
                    Func::Tan => a.tan(),
                    Func::Asin => a.asin(),
                    Func::Acos => a.acos(),
                    Func::Atan => a.atan(),
                    Func::Sinh => a.sinh(),
                    Func::Cosh => a.cosh(),
                    Func::Tanh => a.tanh(),
                    Func::Abs => a.abs(),
                    Func::Erf => a.erf(),
                    Func::Erfc => a.erfc(),
                }
            }
        }
    }
}

impl Expr {
    /// Traces the expression into the graph of `p`: `vars[i]` is the tensor of variable `i`.
    /// Errors (wrong number of variables or parameters) are recorded in the graph, like any
    /// other trace error, and returned by `Graph::finish`.
    pub fn trace(&self, vars: &[Tensor], p: &Params) -> Tensor {
        let anchor = p.vector().clone();
        if vars.len() != self.variables.len() {
            anchor.graph().record(Error::InvalidOp {
                op: "expr",
                reason: format!(
                    "expression has {} variables but {} were given",
                    self.variables.len(),
                    vars.len()
                ),
            });
            return anchor.graph().constant(f64::NAN);
        }
        self.root.trace(vars, p, &anchor)
    }

    /// The expression as a `curve_fit` model: `x` is `[m]` for one variable, `[k, m]` for `k`
    /// variables (row `i` is variable `i`).
    pub fn model(&self) -> impl Fn(&Tensor, &Params) -> Tensor + '_ {
        move |x: &Tensor, p: &Params| {
            let vars: Vec<Tensor> = if x.rank() == 2 {
                (0..x.dims()[0]).map(|i| x.row(i)).collect()
            } else {
                vec![x.clone()]
            };
            self.trace(&vars, p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(src: &str) -> (usize, usize, String) {
        match Expr::parse(src, &["x"]) {
            Err(Error::Parse { line, column, message }) => (line, column, message),
            other => panic!("expected a parse error for {src:?}, got {other:?}"),
        }
    }

    /// Parses and traces `src` on a thread with a 1 MiB stack (half of a test thread's), so that
    /// recursion that is merely deep, not bounded, fails here.
    fn parse_and_trace_on_a_small_stack(src: String) -> Result<usize> {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let e = Expr::parse(&src, &["x"])?;
                let g = crate::graph::Graph::new();
                let x = g.parameter("x", crate::DType::F64, [4]);
                let p = g.parameter("p", crate::DType::F64, [e.params().len().max(1) as i64]);
                let _ = e.trace(&[x], &Params::new(&p));
                drop(e);
                Ok(g.num_nodes())
            })
            .unwrap()
            .join()
            .expect("no stack overflow")
    }

    #[test]
    fn deep_nesting_is_a_typed_error_and_long_chains_are_balanced() {
        let nested = |open: &str, close: &str, n: usize| format!("{}x{}", open.repeat(n), close.repeat(n));
        for (src, what) in [
            (nested("(", ")", 10_000), "parentheses"),
            (nested("exp(", ")", 20_000), "calls"),
            (format!("{}x", "-".repeat(100_000)), "signs"),
            (format!("{}x", "x^".repeat(10_000)), "powers"),
        ] {
            match parse_and_trace_on_a_small_stack(src) {
                Err(Error::Parse { message, .. }) => {
                    assert!(message.contains("nested more than 100"), "{what}: {message}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // Within the limit: fine.
        assert!(parse_and_trace_on_a_small_stack(nested("(", ")", MAX_NESTING - 1)).is_ok());
        // Flat chains of 5·10⁴ terms parse and trace (balanced; 16 levels deep).
        for op in ["+", "-", "*", "/"] {
            let src: String = std::iter::once("a".to_string())
                .chain((0..50_000).map(|i| format!(" {op} (x + {i})")))
                .collect();
            assert!(parse_and_trace_on_a_small_stack(src).unwrap() > 50_000, "{op}");
        }
        // A short chain keeps its written order: ((a - b) - c).
        let e = Expr::parse("a - b - c", &[]).unwrap();
        assert!(matches!(e.root(), Node::Bin(BinOp::Sub, l, _) if matches!(**l, Node::Bin(BinOp::Sub, _, _))));
    }

    #[test]
    fn precedence_and_associativity() {
        let e = Expr::parse("-x^2", &["x"]).unwrap();
        assert_eq!(
            e.root(),
            &Node::Neg(Box::new(Node::Bin(
                BinOp::Pow,
                Box::new(Node::Var(0)),
                Box::new(Node::Num(2.0))
            )))
        );
        let e = Expr::parse("2^3^2", &[]).unwrap();
        assert!(matches!(e.root(), Node::Bin(BinOp::Pow, _, r) if matches!(**r, Node::Bin(BinOp::Pow, _, _))));
        let e = Expr::parse("x**-2", &["x"]).unwrap();
        assert!(matches!(e.root(), Node::Bin(BinOp::Pow, _, r) if matches!(**r, Node::Neg(_))));
        let e = Expr::parse("a - b - c", &[]).unwrap();
        assert!(matches!(e.root(), Node::Bin(BinOp::Sub, l, _) if matches!(**l, Node::Bin(BinOp::Sub, _, _))));
    }

    #[test]
    fn params_in_order_of_first_appearance_and_constants() {
        let e = Expr::parse("b2*exp(-b1*x) + pi*e + b2", &["x"]).unwrap();
        assert_eq!(e.params(), ["b2", "b1"]);
        let e = Expr::parse_with_params("b1*x+b2", &["x"], &["b1", "b2", "b3"]).unwrap();
        assert_eq!(e.params(), ["b1", "b2", "b3"]);
        let e = Expr::parse("1.5e-3 + .5 + 2E2", &[]).unwrap();
        assert!(matches!(e.root(), Node::Bin(BinOp::Add, _, _)));
    }

    #[test]
    fn errors_point_at_line_and_column() {
        assert_eq!(parse_err("a * (x + 1").0, 1);
        assert_eq!(parse_err("a * (x + 1").1, 5);
        let (l, c, m) = parse_err("a +\n  foo(x)");
        assert_eq!((l, c), (2, 3));
        assert!(m.contains("unknown function 'foo'"), "{m}");
        let (l, c, _) = parse_err("a + $");
        assert_eq!((l, c), (1, 5));
        let (_, c, m) = parse_err("a b");
        assert_eq!(c, 3);
        assert!(m.contains("unexpected token"), "{m}");
        assert!(parse_err("exp").2.contains("needs an argument"));
        assert!(parse_err("").2.contains("unexpected end"));
        assert!(parse_err("a*)").2.contains("unexpected ')'"));
        match Expr::parse_with_params("b1*x+q", &["x"], &["b1"]) {
            Err(Error::Parse { column, message, .. }) => {
                assert_eq!(column, 6);
                assert!(message.contains("unknown name 'q'"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Expr::parse("x", &["exp"]).is_err());
    }
}
