//! The expression language: `"a*exp(-k*x) + c"` → a model.
//!
//! Used by the `nlsq` command (models given on the command line) and by library users who
//! read models from configuration (the NIST StRD tests use it for all 27 problems).
//!
//! Grammar (whitespace and newlines are ignored between tokens), lowest precedence first:
//!
//! ```text
//! expr    := or
//! or      := and ('||' and)*
//! and     := cmp ('&&' cmp)*
//! cmp     := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?     comparisons do not chain
//! sum     := term (('+' | '-') term)*
//! term    := unary (('*' | '/') unary)*
//! unary   := ('-' | '+' | '!') unary | power
//! power   := atom (('^' | '**') unary)?          right-associative: a^b^c = a^(b^c)
//! atom    := number | name | name '(' expr (',' expr)* ')' | '(' expr ')'
//! ```
//!
//! So `-x^2 = -(x^2)`, `x^-2 = x^(-2)` and `x > 0 && x < 1 || y == 2` is
//! `((x > 0) && (x < 1)) || (y == 2)`.
//!
//! Functions of one argument: `exp log ln log10 log2 exp2 sqrt sin cos tan asin acos atan sinh
//! cosh tanh abs erf erfc logistic` (`log` is the natural logarithm, like `ln`; `logistic(x)`
//! is `1/(1+e^-x)`); `heaviside(x)` or `heaviside(x, h0)`; of two: `min(a, b)`, `max(a, b)`,
//! `pow(a, b)` (the same as `a^b`), `atan2(y, x)`; of three: `where(cond, a, b)`. Constants:
//! `pi`, `e`. A name that is neither a function, a constant nor an independent variable is a
//! parameter; parameters are numbered in order of first appearance unless an explicit order
//! is given. Errors carry the 1-based line and column of the offending token.
//!
//! # Conditions
//! A comparison, `&&`, `||` or `!` is a *condition*, not a number: it may be the first
//! argument of `where` or an operand of `&&`, `||`, `!`, and anywhere else (arithmetic, a
//! function argument, the whole model) it is a parse error that says to use
//! `where(cond, a, b)`; likewise a number where a condition is needed (`where(x, 1, 2)`,
//! `!x`, `x && y`). There is no implicit 1/0: `(x > 0) * a` is an error, write
//! `where(x > 0, a, 0)`. Comparisons with a NaN operand are false (`!=` is true).
//!
//! # Values
//! - `min`, `max` propagate NaN (like numpy's `minimum`/`maximum`, unlike `f64::min`).
//! - `heaviside(x)` is 0 for `x < 0`, 1 for `x > 0` and ½ at `x = 0` (either sign of zero);
//!   `heaviside(x, h0)` is `h0` at 0, like numpy's `heaviside(x, h0)`; NaN stays NaN.
//! - `atan2(y, x)` is the four-quadrant angle of `f64::atan2`, signed zeros included
//!   (`atan2(0, -1) = π`, `atan2(-0, -1) = -π`).
//! - `log10(x) = ln(x)/ln 10` and `log2(x) = ln(x)/ln 2`: within a few ulps of `f64::log10`
//!   and `f64::log2`, not always exact at powers of ten or two. `exp2(x) = pow(2, x)`.
//! - `where(cond, a, b)` evaluates both branches and keeps one per point, so a NaN in the
//!   branch not taken does not show (`where(x > 0, sqrt(x), 0)` is 0 for `x < 0`).
//!
//! # Derivatives
//! Forward mode through the graph's rules ([`crate::graph::jacfwd`]); at points where a function
//! is not differentiable the derivative used is:
//! - `max(a, b)` and `min(a, b)` where `a == b`: the derivative of `a` (the first argument);
//!   elsewhere the derivative of the argument that wins;
//! - `heaviside`: 0 with respect to `x` everywhere (at 0 too); at `x = 0` the derivative of
//!   `h0`;
//! - `where(cond, a, b)`: the derivative of the selected branch at each point; none through
//!   the condition (a condition has no derivative, so a breakpoint `c` in `where(x < c, …)`
//!   gets its derivative only from the branches' own use of `c`);
//! - `abs` at 0: 0; `pow(a, b)`: `d/da = 0` where `b == 0`, `d/db = 0` where `a == 0`;
//! - `atan2(y, x)` at `(0, 0)`: NaN (0/0).
//!
//! # Printing
//! [`Expr`] implements `Display`: the text parses back (with
//! [`Expr::parse_with_params`] and the same names) to the same tree, with the fewest
//! parentheses the precedence needs.
//!
//! # References
//! - Operator precedence as in Fortran/Python (`**` binds tighter than unary minus) for
//!   arithmetic, and as in C for comparisons and `&& || !`.

use std::fmt;

use crate::error::{Error, Result};
use crate::graph::{Params, Tensor};

/// A function of the expression language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `exp`
    Exp,
    /// `log`, `ln` (natural logarithm)
    Ln,
    /// `log10` (`ln(x)/ln 10`)
    Log10,
    /// `log2` (`ln(x)/ln 2`)
    Log2,
    /// `exp2` (`2^x`)
    Exp2,
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
    /// `logistic(x) = 1/(1+e^-x)`
    Logistic,
    /// `heaviside(x)` (½ at 0) or `heaviside(x, h0)` (`h0` at 0); derivative 0 in `x`
    Heaviside,
    /// `min(a, b)` (NaN propagates; at ties the derivative of `a`)
    Min,
    /// `max(a, b)` (NaN propagates; at ties the derivative of `a`)
    Max,
    /// `pow(a, b)`, the same as `a^b`
    Pow,
    /// `atan2(y, x)`, the four-quadrant arctangent of `y/x`
    Atan2,
    /// `where(cond, a, b)`: `a` where the condition holds, else `b`
    Where,
}

impl Func {
    /// Every function, in the order of the module documentation.
    pub const ALL: [Func; 25] = [
        Func::Exp,
        Func::Ln,
        Func::Log10,
        Func::Log2,
        Func::Exp2,
        Func::Sqrt,
        Func::Sin,
        Func::Cos,
        Func::Tan,
        Func::Asin,
        Func::Acos,
        Func::Atan,
        Func::Sinh,
        Func::Cosh,
        Func::Tanh,
        Func::Abs,
        Func::Erf,
        Func::Erfc,
        Func::Logistic,
        Func::Heaviside,
        Func::Min,
        Func::Max,
        Func::Pow,
        Func::Atan2,
        Func::Where,
    ];

    /// Looks a function up by name (`log` and `ln` are both [`Func::Ln`]).
    pub fn from_name(name: &str) -> Option<Func> {
        if name == "log" {
            return Some(Func::Ln);
        }
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The name the function prints as (`ln` for the natural logarithm).
    pub fn name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Ln => "ln",
            Func::Log10 => "log10",
            Func::Log2 => "log2",
            Func::Exp2 => "exp2",
            Func::Sqrt => "sqrt",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Tan => "tan",
            Func::Asin => "asin",
            Func::Acos => "acos",
            Func::Atan => "atan",
            Func::Sinh => "sinh",
            Func::Cosh => "cosh",
            Func::Tanh => "tanh",
            Func::Abs => "abs",
            Func::Erf => "erf",
            Func::Erfc => "erfc",
            Func::Logistic => "logistic",
            Func::Heaviside => "heaviside",
            Func::Min => "min",
            Func::Max => "max",
            Func::Pow => "pow",
            Func::Atan2 => "atan2",
            Func::Where => "where",
        }
    }

    /// The fewest and the most arguments the function takes.
    pub fn arity(self) -> (usize, usize) {
        match self {
            Func::Heaviside => (1, 2),
            Func::Min | Func::Max | Func::Pow | Func::Atan2 => (2, 2),
            Func::Where => (3, 3),
            _ => (1, 1),
        }
    }

    /// Whether argument `i` is a condition (the first of `where`) rather than a number.
    pub fn takes_condition(self, i: usize) -> bool {
        self == Func::Where && i == 0
    }

    /// "takes 2 arguments", "takes 1 or 2 arguments", for errors.
    fn takes(self) -> String {
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        match self.arity() {
            (lo, hi) if lo == hi => format!("takes {lo} {}", plural(lo)),
            (lo, hi) => format!("takes {lo} or {hi} {}", plural(hi)),
        }
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
    /// `<` (a condition)
    Lt,
    /// `<=` (a condition)
    Le,
    /// `>` (a condition)
    Gt,
    /// `>=` (a condition)
    Ge,
    /// `==` (a condition)
    Eq,
    /// `!=` (a condition)
    Ne,
    /// `&&` of two conditions
    And,
    /// `||` of two conditions
    Or,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }

    /// Whether the result is a condition (comparisons, `&&`, `||`).
    pub fn is_condition(self) -> bool {
        !matches!(self, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow)
    }

    /// Whether the operands are conditions (`&&`, `||`) rather than numbers.
    pub fn takes_conditions(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or)
    }

    /// Binding strength, loosest first: `||` 0, `&&` 1, comparisons 2, `+ -` 3, `* /` 4,
    /// `^` 6 (unary signs and `!` are 5, atoms 7).
    fn level(self) -> u8 {
        match self {
            BinOp::Or => 0,
            BinOp::And => 1,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne => 2,
            BinOp::Add | BinOp::Sub => 3,
            BinOp::Mul | BinOp::Div => 4,
            BinOp::Pow => 6,
        }
    }
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
    /// Logical not `!` of a condition.
    Not(Box<Node>),
    /// A binary operation.
    Bin(BinOp, Box<Node>, Box<Node>),
    /// A function call with its arguments (as many as [`Func::arity`] allows).
    Call(Func, Vec<Node>),
}

impl Node {
    /// Whether the node is a condition (a comparison, `&&`, `||`, `!`) rather than a number.
    pub fn is_condition(&self) -> bool {
        match self {
            Node::Bin(op, _, _) => op.is_condition(),
            Node::Not(_) => true,
            _ => false,
        }
    }

    /// The node's operands, left to right.
    pub fn children(&self) -> Vec<&Node> {
        match self {
            Node::Num(_) | Node::Var(_) | Node::Param(_) => Vec::new(),
            Node::Neg(a) | Node::Not(a) => vec![a],
            Node::Bin(_, a, b) => vec![a, b],
            Node::Call(_, args) => args.iter().collect(),
        }
    }

    /// Binding strength for printing (see [`BinOp::level`]).
    fn level(&self) -> u8 {
        match self {
            Node::Bin(op, _, _) => op.level(),
            Node::Neg(_) | Node::Not(_) => 5,
            Node::Num(_) | Node::Var(_) | Node::Param(_) | Node::Call(..) => 7,
        }
    }
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
    /// `+ - * /`
    Op(char),
    Pow,
    /// A comparison, `&&` or `||`.
    Bin(BinOp),
    Not,
    Comma,
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
            let next_is = |d: char| chars.get(i) == Some(&d);
            let (tok, extra) = match c {
                '+' | '-' | '/' => (Tok::Op(c), 0),
                '*' if next_is('*') => (Tok::Pow, 1),
                '*' => (Tok::Op('*'), 0),
                '^' => (Tok::Pow, 0),
                '(' => (Tok::LParen, 0),
                ')' => (Tok::RParen, 0),
                ',' => (Tok::Comma, 0),
                '<' if next_is('=') => (Tok::Bin(BinOp::Le), 1),
                '<' => (Tok::Bin(BinOp::Lt), 0),
                '>' if next_is('=') => (Tok::Bin(BinOp::Ge), 1),
                '>' => (Tok::Bin(BinOp::Gt), 0),
                '=' if next_is('=') => (Tok::Bin(BinOp::Eq), 1),
                '!' if next_is('=') => (Tok::Bin(BinOp::Ne), 1),
                '!' => (Tok::Not, 0),
                '&' if next_is('&') => (Tok::Bin(BinOp::And), 1),
                '|' if next_is('|') => (Tok::Bin(BinOp::Or), 1),
                '=' => return Err(err(tl, tc, "unexpected '=' (equality is '==')")),
                '&' => return Err(err(tl, tc, "unexpected '&' (logical and is '&&')")),
                '|' => return Err(err(tl, tc, "unexpected '|' (logical or is '||')")),
                other => return Err(err(tl, tc, format!("unexpected character '{other}'"))),
            };
            i += extra;
            tok
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

/// Sums, products and `&&`/`||` chains of more terms than this become balanced trees: a flat
/// sum of 10⁵ terms is then 17 levels deep instead of 10⁵. Shorter chains keep the
/// left-to-right order, so their rounding is the order they are written in.
const BALANCE_FROM: usize = 64;

/// `a op b`.
fn bin(op: BinOp, a: Node, b: Node) -> Node {
    Node::Bin(op, Box::new(a), Box::new(b))
}

/// `first op₁ r₁ op₂ r₂ …` as written, left to right.
fn fold_left(first: Node, rest: Vec<(BinOp, Node)>) -> Node {
    rest.into_iter().fold(first, |l, (op, r)| bin(op, l, r))
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

/// What a place in the grammar needs: a number or a condition.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Condition,
}

/// The error for `node` (starting at token `at`) where `want` is needed; `what` names the
/// place ("the left operand of '+'").
fn check_kind(node: &Node, want: Kind, at: &Token, what: impl FnOnce() -> String) -> Result<()> {
    match (want, node.is_condition()) {
        (Kind::Number, true) => Err(err(
            at.line,
            at.column,
            format!(
                "{} is a condition (a comparison, &&, ||, !), and a condition is not a number; use where(cond, a, b)",
                what()
            ),
        )),
        (Kind::Condition, false) => Err(err(
            at.line,
            at.column,
            format!(
                "{} must be a condition (a comparison such as x > 0), not a number",
                what()
            ),
        )),
        _ => Ok(()),
    }
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

    /// `operand (op operand)*` for the operators `op_of` recognises, every operand checked to
    /// be of kind `want`.
    fn chain(
        &mut self,
        op_of: fn(&Tok) -> Option<BinOp>,
        want: Kind,
        operand: fn(&mut Self) -> Result<Node>,
    ) -> Result<(Node, Vec<(BinOp, Node)>)> {
        let first_tok = self.peek().clone();
        let first = operand(self)?;
        let mut rest = Vec::new();
        while let Some(op) = op_of(&self.peek().tok) {
            if rest.is_empty() {
                check_kind(&first, want, &first_tok, || {
                    format!("the left operand of '{}'", op.symbol())
                })?;
            }
            self.next();
            let t = self.peek().clone();
            let r = operand(self)?;
            check_kind(&r, want, &t, || format!("the right operand of '{}'", op.symbol()))?;
            rest.push((op, r));
        }
        Ok((first, rest))
    }

    fn expr(&mut self) -> Result<Node> {
        self.logical(BinOp::Or)
    }

    /// `||` (lowest) or `&&` chains; long ones balanced (both are associative).
    fn logical(&mut self, op: BinOp) -> Result<Node> {
        let (first, rest) = if op == BinOp::Or {
            self.chain(
                |t| (*t == Tok::Bin(BinOp::Or)).then_some(BinOp::Or),
                Kind::Condition,
                |p| p.logical(BinOp::And),
            )?
        } else {
            self.chain(
                |t| (*t == Tok::Bin(BinOp::And)).then_some(BinOp::And),
                Kind::Condition,
                Self::comparison,
            )?
        };
        if rest.len() < BALANCE_FROM {
            return Ok(fold_left(first, rest));
        }
        let items = std::iter::once(first).chain(rest.into_iter().map(|(_, r)| r)).collect();
        Ok(balanced(items, |a, b| bin(op, a, b)))
    }

    /// `sum` or `sum cmp sum`.
    fn comparison(&mut self) -> Result<Node> {
        let lt = self.peek().clone();
        let l = self.sum()?;
        let op = match self.peek().tok {
            Tok::Bin(op) if op.level() == 2 => op,
            _ => return Ok(l),
        };
        check_kind(&l, Kind::Number, &lt, || {
            format!("the left operand of '{}'", op.symbol())
        })?;
        self.next();
        let rt = self.peek().clone();
        let r = self.sum()?;
        check_kind(&r, Kind::Number, &rt, || {
            format!("the right operand of '{}'", op.symbol())
        })?;
        if let Tok::Bin(next) = self.peek().tok {
            if next.level() == 2 {
                let t = self.peek();
                return Err(err(
                    t.line,
                    t.column,
                    format!(
                        "comparisons do not chain: write 'a {} b && b {} c'",
                        op.symbol(),
                        next.symbol()
                    ),
                ));
            }
        }
        Ok(bin(op, l, r))
    }

    fn sum(&mut self) -> Result<Node> {
        let (first, rest) = self.chain(
            |t| match t {
                Tok::Op('+') => Some(BinOp::Add),
                Tok::Op('-') => Some(BinOp::Sub),
                _ => None,
            },
            Kind::Number,
            Self::term,
        )?;
        if rest.len() < BALANCE_FROM {
            return Ok(fold_left(first, rest));
        }
        // a - b is a + (-b) exactly.
        let terms = std::iter::once(first)
            .chain(
                rest.into_iter()
                    .map(|(op, r)| if op == BinOp::Add { r } else { Node::Neg(Box::new(r)) }),
            )
            .collect();
        Ok(balanced(terms, |a, b| bin(BinOp::Add, a, b)))
    }

    fn term(&mut self) -> Result<Node> {
        let (first, rest) = self.chain(
            |t| match t {
                Tok::Op('*') => Some(BinOp::Mul),
                Tok::Op('/') => Some(BinOp::Div),
                _ => None,
            },
            Kind::Number,
            Self::unary,
        )?;
        if rest.len() < BALANCE_FROM {
            return Ok(fold_left(first, rest));
        }
        // The product of the factors over the product of the divisors.
        let (mut num, mut den) = (vec![first], Vec::new());
        for (op, r) in rest {
            if op == BinOp::Mul {
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
        let (sign, want) = match self.peek().tok {
            Tok::Op(c @ ('-' | '+')) => (c, Kind::Number),
            Tok::Not => ('!', Kind::Condition),
            _ => return self.power(),
        };
        let t = self.next();
        self.enter(&t)?;
        let at = self.peek().clone();
        let inner = self.unary()?;
        check_kind(&inner, want, &at, || format!("the operand of '{sign}'"))?;
        self.depth -= 1;
        Ok(match sign {
            '-' => Node::Neg(Box::new(inner)),
            '!' => Node::Not(Box::new(inner)),
            _ => inner,
        })
    }

    fn power(&mut self) -> Result<Node> {
        let bt = self.peek().clone();
        let base = self.atom()?;
        if self.peek().tok == Tok::Pow {
            check_kind(&base, Kind::Number, &bt, || "the base of '^'".to_string())?;
            let t = self.next();
            self.enter(&t)?;
            let et = self.peek().clone();
            let exp = self.unary()?;
            check_kind(&exp, Kind::Number, &et, || "the exponent of '^'".to_string())?;
            self.depth -= 1;
            return Ok(bin(BinOp::Pow, base, exp));
        }
        Ok(base)
    }

    /// The arguments of `f` (named at token `name`) after its '(' token `open`.
    fn call(&mut self, f: Func, name: &Token, open: &Token) -> Result<Node> {
        self.enter(open)?;
        let mut args = Vec::new();
        loop {
            let at = self.peek().clone();
            let arg = self.expr()?;
            let i = args.len();
            let want = if f.takes_condition(i) {
                Kind::Condition
            } else {
                Kind::Number
            };
            check_kind(&arg, want, &at, || format!("argument {} of '{}'", i + 1, f.name()))?;
            args.push(arg);
            if self.peek().tok == Tok::Comma {
                self.next();
                continue;
            }
            break;
        }
        self.expect_rparen(open)?;
        self.depth -= 1;
        let (lo, hi) = f.arity();
        if args.len() < lo || args.len() > hi {
            return Err(err(
                name.line,
                name.column,
                format!("'{}' {}, got {}", f.name(), f.takes(), args.len()),
            ));
        }
        Ok(Node::Call(f, args))
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
            Tok::Name(ref name) => {
                if self.peek().tok == Tok::LParen {
                    let open = self.next();
                    let f = Func::from_name(name)
                        .ok_or_else(|| err(t.line, t.column, format!("unknown function '{name}'")))?;
                    return self.call(f, &t, &open);
                }
                if let Some(f) = Func::from_name(name) {
                    return Err(err(
                        t.line,
                        t.column,
                        format!("function '{name}' needs its arguments in parentheses ({})", f.takes()),
                    ));
                }
                if let Some(i) = self.variables.iter().position(|v| v == name) {
                    return Ok(Node::Var(i));
                }
                match name.as_str() {
                    "pi" => return Ok(Node::Num(std::f64::consts::PI)),
                    "e" => return Ok(Node::Num(std::f64::consts::E)),
                    _ => {}
                }
                if let Some(i) = self.params.iter().position(|p| p == name) {
                    return Ok(Node::Param(i));
                }
                if self.fixed_params {
                    return Err(err(
                        t.line,
                        t.column,
                        format!("unknown name '{name}' (not a variable, parameter, function or constant)"),
                    ));
                }
                self.params.push(name.clone());
                Ok(Node::Param(self.params.len() - 1))
            }
            Tok::End => Err(err(t.line, t.column, "unexpected end of expression")),
            Tok::RParen => Err(err(t.line, t.column, "unexpected ')'")),
            Tok::Comma => Err(err(t.line, t.column, "unexpected ',' (outside a function's arguments)")),
            Tok::Op(c) => Err(err(t.line, t.column, format!("unexpected '{c}'"))),
            Tok::Pow => Err(err(t.line, t.column, "unexpected '^'")),
            Tok::Bin(op) => Err(err(t.line, t.column, format!("unexpected '{}'", op.symbol()))),
            Tok::Not => Err(err(t.line, t.column, "unexpected '!'")),
        }
    }

    fn expect_rparen(&mut self, open: &Token) -> Result<()> {
        let t = self.next();
        match t.tok {
            Tok::RParen => Ok(()),
            Tok::End => Err(err(open.line, open.column, "unclosed '('")),
            Tok::Comma => Err(err(
                t.line,
                t.column,
                "expected ')' (',' separates a function's arguments)",
            )),
            _ => Err(err(t.line, t.column, "expected ')'")),
        }
    }
}

impl Expr {
    /// Parses `src` with the given independent-variable names; every other free name is a
    /// parameter, numbered in order of first appearance.
    ///
    /// # Errors
    /// [`Error::Parse`] with line and column: a syntax error, an unknown function, a call with
    /// the wrong number of arguments, or a condition where a number is needed (or the other
    /// way round; see the [module documentation](self)).
    ///
    /// # Examples
    /// ```
    /// let e = nlsq::expr::Expr::parse("a * exp(-k * x) + c", &["x"]).unwrap();
    /// assert_eq!(e.params(), ["a", "k", "c"]);
    /// let e = nlsq::expr::Expr::parse("where(x < c, a + b*x, a + b*c)", &["x"]).unwrap();
    /// assert_eq!(e.to_string(), "where(x < c, a + b * x, a + b * c)");
    /// assert!(nlsq::expr::Expr::parse("(x > 0) * a", &["x"]).is_err());
    /// ```
    pub fn parse(src: &str, variables: &[&str]) -> Result<Expr> {
        Self::parse_impl(src, variables, None)
    }

    /// Parses with a fixed parameter list (its order is the parameter order); any other free
    /// name is an error.
    ///
    /// # Errors
    /// [`Error::Parse`] with line and column, as [`Expr::parse`].
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
        let start = p.peek().clone();
        let root = p.expr()?;
        let t = p.peek().clone();
        if t.tok != Tok::End {
            let message = match t.tok {
                Tok::Comma => "unexpected ',' (outside a function's arguments)",
                _ => "unexpected token after the end of the expression",
            };
            return Err(err(t.line, t.column, message));
        }
        check_kind(&root, Kind::Number, &start, || "the expression".to_string())?;
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

    /// Writes `node`; `above` counts the operators of its level already written above it in
    /// the same left-to-right chain (a chain of [`BALANCE_FROM`] or more would parse back
    /// balanced, so the printer closes it in parentheses before that).
    fn write(&self, f: &mut fmt::Formatter<'_>, node: &Node, above: usize) -> fmt::Result {
        match node {
            Node::Num(v) => write_num(f, *v),
            Node::Var(i) => f.write_str(&self.variables[*i]),
            Node::Param(i) => f.write_str(&self.params[*i]),
            Node::Neg(a) => {
                f.write_str("-")?;
                self.operand(f, a, 5)
            }
            Node::Not(a) => {
                f.write_str("!")?;
                self.operand(f, a, 5)
            }
            Node::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    self.write(f, a, 0)?;
                }
                f.write_str(")")
            }
            Node::Bin(op, l, r) => {
                let level = op.level();
                match level {
                    // a ^ b: the base an atom, the exponent a unary.
                    6 => self.operand(f, l, 7)?,
                    // Comparisons do not chain: both sides tighter.
                    2 => self.operand(f, l, 3)?,
                    // Left-associative chains.
                    _ if l.level() == level && above + 2 < BALANCE_FROM => self.write(f, l, above + 1)?,
                    _ => self.operand(f, l, level + 1)?,
                }
                write!(f, " {} ", op.symbol())?;
                match level {
                    6 => self.operand(f, r, 5),
                    _ => self.operand(f, r, level + 1),
                }
            }
        }
    }

    /// Writes `node`, in parentheses unless it binds at least as tightly as `min_level`.
    fn operand(&self, f: &mut fmt::Formatter<'_>, node: &Node, min_level: u8) -> fmt::Result {
        if node.level() < min_level {
            f.write_str("(")?;
            self.write(f, node, 0)?;
            f.write_str(")")
        } else {
            self.write(f, node, 0)
        }
    }
}

/// A number as text that lexes back to the same `f64` (`1e999` for infinity, `(0 / 0)` for
/// NaN, which is not a literal and so does not parse back to a number); negative
/// numbers (which parsing never produces: `-2` is a negation) in parentheses.
fn write_num(f: &mut fmt::Formatter<'_>, v: f64) -> fmt::Result {
    if v.is_nan() {
        return f.write_str("(0 / 0)");
    }
    let magnitude = |f: &mut fmt::Formatter<'_>, a: f64| {
        if a.is_infinite() {
            f.write_str("1e999")
        } else {
            // Shortest round-trip digits, exponent form for very large and small magnitudes;
            // integers without a trailing ".0".
            let text = format!("{a:?}");
            f.write_str(text.strip_suffix(".0").unwrap_or(&text))
        }
    };
    if v.is_sign_negative() {
        f.write_str("(-")?;
        magnitude(f, -v)?;
        f.write_str(")")
    } else {
        magnitude(f, v)
    }
}

/// The expression as text in the language, with single spaces around binary operators and
/// the fewest parentheses that keep the tree: parsing it back with
/// [`Expr::parse_with_params`] (the same variables and parameters) gives an equal `Expr`.
/// Functions print by their [`Func::name`] (`log` as `ln`), constants as their values.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, &self.root, 0)
    }
}

/// `base ^ exp`: an integer literal exponent up to 64 by repeated multiplication (exact, and
/// defined for a negative base), another literal by `powf`, else `stablehlo.power`.
fn trace_pow(base: &Node, exp: &Node, vars: &[Tensor], p: &Params, anchor: &Tensor) -> Tensor {
    let l = base.trace(vars, p, anchor);
    if let Node::Num(e) = exp {
        if e.fract() == 0.0 && e.abs() <= 64.0 {
            return l.powi(*e as i32);
        }
        return l.powf(*e);
    }
    l.pow(exp.trace(vars, p, anchor))
}

/// `heaviside(x, h0)`: 0 for `x < 0`, 1 for `x > 0`, `h0` at 0, NaN for NaN; no derivative
/// through `x` (the NaN branch is `x * 0`, whose tangent is 0).
fn heaviside(x: &Tensor, h0: &Tensor) -> Tensor {
    let at_zero_or_nan = x.eq(0.0).select(h0, x * 0.0);
    x.gt(0.0).select(1.0, x.lt(0.0).select(0.0, &at_zero_or_nan))
}

impl Node {
    fn trace(&self, vars: &[Tensor], p: &Params, anchor: &Tensor) -> Tensor {
        match self {
            Node::Num(v) => anchor.graph().constant(*v),
            Node::Var(i) => vars[*i].clone(),
            Node::Param(i) => p[*i].clone(),
            Node::Neg(a) => -a.trace(vars, p, anchor),
            Node::Not(a) => a.trace(vars, p, anchor).not(),
            Node::Bin(BinOp::Pow, a, b) => trace_pow(a, b, vars, p, anchor),
            Node::Bin(op, a, b) => {
                let l = a.trace(vars, p, anchor);
                let r = b.trace(vars, p, anchor);
                match op {
                    BinOp::Add => l + r,
                    BinOp::Sub => l - r,
                    BinOp::Mul => l * r,
                    BinOp::Div => l / r,
                    BinOp::Pow => l.pow(&r),
                    BinOp::Lt => l.lt(&r),
                    BinOp::Le => l.le(&r),
                    BinOp::Gt => l.gt(&r),
                    BinOp::Ge => l.ge(&r),
                    BinOp::Eq => l.eq(&r),
                    BinOp::Ne => l.ne(&r),
                    BinOp::And => l.and(&r),
                    BinOp::Or => l.or(&r),
                }
            }
            Node::Call(Func::Pow, args) if args.len() == 2 => trace_pow(&args[0], &args[1], vars, p, anchor),
            Node::Call(f, args) => {
                let a: Vec<Tensor> = args.iter().map(|a| a.trace(vars, p, anchor)).collect();
                let (lo, hi) = f.arity();
                if a.len() < lo || a.len() > hi {
                    anchor.graph().record(Error::InvalidOp {
                        op: "expr",
                        reason: format!("'{}' {}, got {}", f.name(), f.takes(), a.len()),
                    });
                    return anchor.graph().constant(f64::NAN);
                }
                let x = &a[0];
                match f {
                    Func::Exp => x.exp(),
                    Func::Ln => x.ln(),
                    Func::Log10 => x.ln() / std::f64::consts::LN_10,
                    Func::Log2 => x.ln() / std::f64::consts::LN_2,
                    Func::Exp2 => anchor.graph().constant(2.0).pow(x),
                    Func::Sqrt => x.sqrt(),
                    Func::Sin => x.sin(),
                    Func::Cos => x.cos(),
                    Func::Tan => x.tan(),
                    Func::Asin => x.asin(),
                    Func::Acos => x.acos(),
                    Func::Atan => x.atan(),
                    Func::Sinh => x.sinh(),
                    Func::Cosh => x.cosh(),
                    Func::Tanh => x.tanh(),
                    Func::Abs => x.abs(),
                    Func::Erf => x.erf(),
                    Func::Erfc => x.erfc(),
                    Func::Logistic => x.logistic(),
                    Func::Heaviside => match a.get(1) {
                        Some(h0) => heaviside(x, h0),
                        None => heaviside(x, &anchor.graph().constant(0.5)),
                    },
                    Func::Min => x.min(&a[1]),
                    Func::Max => x.max(&a[1]),
                    // Two arguments take the arm above (integer exponents by multiplication).
                    Func::Pow => x.pow(&a[1]),
                    Func::Atan2 => x.atan2(&a[1]),
                    Func::Where => x.select(&a[1], &a[2]),
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

    fn parse_ok(src: &str) -> Expr {
        Expr::parse(src, &["x"]).unwrap_or_else(|e| panic!("{src:?}: {e}"))
    }

    /// `e` printed parses back to `e` (with the same parameter order).
    fn assert_round_trips(e: &Expr) {
        let text = e.to_string();
        let vars: Vec<&str> = e.variables().iter().map(String::as_str).collect();
        let params: Vec<&str> = e.params().iter().map(String::as_str).collect();
        let back = Expr::parse_with_params(&text, &vars, &params).unwrap_or_else(|err| panic!("{text:?}: {err}"));
        assert_eq!(&back, e, "{text}");
    }

    #[test]
    fn comparison_and_logic_precedence() {
        let e = parse_ok("where(x > 0 && x < 1 || x == 2, 1, 0)");
        let Node::Call(Func::Where, args) = e.root() else {
            panic!("{e:?}")
        };
        let Node::Bin(BinOp::Or, l, r) = &args[0] else {
            panic!("{e:?}")
        };
        assert!(matches!(**r, Node::Bin(BinOp::Eq, _, _)));
        let Node::Bin(BinOp::And, ll, lr) = &**l else {
            panic!("{e:?}")
        };
        assert!(matches!(**ll, Node::Bin(BinOp::Gt, _, _)));
        assert!(matches!(**lr, Node::Bin(BinOp::Lt, _, _)));
        // Comparisons bind looser than + and *: x + 1 < 2 * x is (x + 1) < (2 * x).
        let e = parse_ok("where(x + 1 < 2 * x, 1, 0)");
        let Node::Call(_, args) = e.root() else { panic!() };
        assert!(
            matches!(&args[0], Node::Bin(BinOp::Lt, l, r) if matches!(**l, Node::Bin(BinOp::Add, ..)) && matches!(**r, Node::Bin(BinOp::Mul, ..)))
        );
        // ! is unary: !(x < 1) && x > 0 is (!(x < 1)) && (x > 0).
        let e = parse_ok("where(!(x < 1) && x > 0, 1, 0)");
        let Node::Call(_, args) = e.root() else { panic!() };
        assert!(matches!(&args[0], Node::Bin(BinOp::And, l, _) if matches!(**l, Node::Not(_))));
        // Every comparison operator lexes.
        for (src, op) in [
            ("<", BinOp::Lt),
            ("<=", BinOp::Le),
            (">", BinOp::Gt),
            (">=", BinOp::Ge),
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
        ] {
            let e = parse_ok(&format!("where(x {src} 1, 1, 0)"));
            let Node::Call(_, args) = e.root() else { panic!() };
            assert!(matches!(&args[0], Node::Bin(o, _, _) if *o == op), "{src}");
        }
    }

    #[test]
    fn conditions_are_not_numbers_and_numbers_not_conditions() {
        for (src, column, what) in [
            ("(x > 0) * 2", 1, "the left operand of '*'"),
            ("1 + (x > 0)", 5, "the right operand of '+'"),
            ("x > 0", 1, "the expression"),
            ("exp(x > 0)", 5, "argument 1 of 'exp'"),
            ("where(x > 0, x < 1, 0)", 14, "argument 2 of 'where'"),
            ("-(x > 0)", 2, "the operand of '-'"),
            ("(x > 0)^2", 1, "the base of '^'"),
            ("(x > 0) < 1", 1, "the left operand of '<'"),
        ] {
            let (_, c, m) = parse_err(src);
            assert_eq!(c, column, "{src}: {m}");
            assert!(
                m.contains(what) && m.contains("is not a number; use where(cond, a, b)"),
                "{src}: {m}"
            );
        }
        for (src, column, what) in [
            ("where(x, 1, 0)", 7, "argument 1 of 'where'"),
            ("where(!x, 1, 0)", 8, "the operand of '!'"),
            ("where(x && x > 1, 1, 0)", 7, "the left operand of '&&'"),
            ("where(x > 1 || 2, 1, 0)", 16, "the right operand of '||'"),
        ] {
            let (_, c, m) = parse_err(src);
            assert_eq!(c, column, "{src}: {m}");
            assert!(m.contains(what) && m.contains("must be a condition"), "{src}: {m}");
        }
        let (_, c, m) = parse_err("where(0 < x < 1, 1, 0)");
        assert_eq!(c, 13);
        assert!(m.contains("comparisons do not chain"), "{m}");
        assert!(parse_err("where(x = 1, 1, 0)").2.contains("'=='"));
        assert!(parse_err("where(x > 1 & x < 2, 1, 0)").2.contains("'&&'"));
        assert!(parse_err("where(x > 1 | x < 2, 1, 0)").2.contains("'||'"));
        assert!(parse_err("x, 1").2.contains("unexpected ','"));
    }

    #[test]
    fn wrong_argument_counts_name_the_function_and_its_arity() {
        for (src, column, want) in [
            ("min(x)", 1, "'min' takes 2 arguments, got 1"),
            ("1 + max(x, 1, 2)", 5, "'max' takes 2 arguments, got 3"),
            ("atan2(x)", 1, "'atan2' takes 2 arguments, got 1"),
            ("pow(x)", 1, "'pow' takes 2 arguments, got 1"),
            ("where(x > 0, 1)", 1, "'where' takes 3 arguments, got 2"),
            ("heaviside(x, 1, 2)", 1, "'heaviside' takes 1 or 2 arguments, got 3"),
            ("exp(x, 1)", 1, "'exp' takes 1 argument, got 2"),
            ("2 *\n  log10(x, x)", 3, "'log10' takes 1 argument, got 2"),
        ] {
            let (_, c, m) = parse_err(src);
            assert_eq!((c, m.as_str()), (column, want), "{src}");
        }
        assert_eq!(parse_err("2 *\n  log10(x, x)").0, 2);
        assert!(parse_err("min")
            .2
            .contains("needs its arguments in parentheses (takes 2 arguments)"));
        assert!(parse_err("min()").2.contains("unexpected ')'"));
        assert!(parse_err("min(x,)").2.contains("unexpected ')'"));
        // The new names are reserved like the old ones.
        assert!(Expr::parse("x", &["max"]).is_err());
        assert!(Expr::parse_with_params("x", &["x"], &["where"]).is_err());
    }

    #[test]
    fn printing_parses_back_to_the_same_tree() {
        for src in [
            "a * exp(-k * x) + c",
            "-x^2 + x^-2 - (a - b) - -x",
            "2^3^2 + (2^3)^2 + (-x)^2 + -x^2",
            "a / (b * c) / d * (e - pi)",
            "where(x < c, a + b * x, a + b * c)",
            "max(0, k * (x - x0)) + min(x, 1) + pow(x, a) + atan2(x, -1)",
            "heaviside(x) + heaviside(x - 1, h) + logistic(x) + log10(x) + log2(x) + exp2(x)",
            "where(!(x > 0 && x < 1) || x == 2 || x != 3 && x <= 4 && x >= -5, 1e-300, 1e300)",
            "where((x > 0 || x < 1) && x > 2, ln(x), log(x))",
            "1e999 + 0.1 + 1.7976931348623157e308 + 5e-324",
            "-(x + 1) * -(x * 2) / -(x / 3)",
        ] {
            let e = parse_ok(src);
            assert_round_trips(&e);
        }
        assert_eq!(
            parse_ok("where(x<c,a+b*x,a+b*c)").to_string(),
            "where(x < c, a + b * x, a + b * c)"
        );
        assert_eq!(parse_ok("-x^2").to_string(), "-x ^ 2");
        assert_eq!(parse_ok("(-x)^2").to_string(), "(-x) ^ 2");
        assert_eq!(parse_ok("a-(b-c)").to_string(), "a - (b - c)");
        assert_eq!(parse_ok("log(x)").to_string(), "ln(x)");
        // Long chains are balanced when parsed; printed, they must not be re-balanced
        // differently (the printer caps each flat chain below BALANCE_FROM operators).
        for op in ["+", "-", "*", "/", "&&", "||"] {
            let terms: Vec<String> = (0..300)
                .map(|i| {
                    if op.len() == 2 {
                        format!("x > {i}")
                    } else {
                        format!("(x + {i})")
                    }
                })
                .collect();
            let chain = terms.join(&format!(" {op} "));
            let src = if op.len() == 2 {
                format!("where({chain}, 1, 0)")
            } else {
                chain
            };
            assert_round_trips(&parse_ok(&src));
            // Within parentheses: a 60-term chain, then 10 more terms of the same operator.
            let inner = terms[..60].join(&format!(" {op} "));
            let outer = terms[60..70].join(&format!(" {op} "));
            let src = if op.len() == 2 {
                format!("where(({inner}) {op} {outer}, 1, 0)")
            } else {
                format!("({inner}) {op} {outer}")
            };
            assert_round_trips(&parse_ok(&src));
        }
    }

    #[test]
    fn long_logical_chains_are_balanced() {
        for op in ["&&", "||"] {
            let chain: String = std::iter::once("x > 0".to_string())
                .chain((0..50_000).map(|i| format!(" {op} x != {i}")))
                .collect();
            assert!(
                parse_and_trace_on_a_small_stack(format!("where({chain}, 1, 0)")).unwrap() > 50_000,
                "{op}"
            );
        }
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
        assert!(parse_err("exp")
            .2
            .contains("needs its arguments in parentheses (takes 1 argument)"));
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
