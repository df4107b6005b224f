//! Property tests of the expression language: every input, however hostile, parses to a tree
//! or a typed parse error, in bounded time and stack; what parses traces into a graph, and
//! prints as text that parses back to the same tree.

use nlsq::expr::Expr;
use nlsq::graph::{Graph, Params};
use nlsq::{DType, Error};
use proptest::prelude::*;

/// Tokens of the language and a few that are not, so that random streams hit every path.
const TOKENS: &[&str] = &[
    "x",
    "a",
    "k",
    "pi",
    "e",
    "1",
    "2.5",
    "1e-3",
    "1e999",
    ".5",
    "+",
    "-",
    "*",
    "/",
    "^",
    "**",
    "(",
    ")",
    "exp(",
    "ln(",
    "sqrt(",
    "sin(",
    "erf(",
    "abs(",
    "foo(",
    ",",
    " ",
    "\n",
    "$",
    "é",
    "1.2.3",
    "_b2",
    "min(",
    "max(",
    "pow(",
    "atan2(",
    "where(",
    "heaviside(",
    "logistic(",
    "log10(",
    "log2(",
    "exp2(",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "!",
    "&&",
    "||",
    "=",
    "&",
    "|",
];

/// `e` printed parses back (same variables and parameters) to `e`, and prints the same again.
fn assert_round_trips(e: &Expr) {
    let text = e.to_string();
    let vars: Vec<&str> = e.variables().iter().map(String::as_str).collect();
    let params: Vec<&str> = e.params().iter().map(String::as_str).collect();
    let back = Expr::parse_with_params(&text, &vars, &params).unwrap_or_else(|err| panic!("{text:?}: {err}"));
    assert_eq!(&back, e, "printed as {text:?}");
    assert_eq!(back.to_string(), text);
}

/// Parses `src`, checks that what parses prints back to itself and traces it, on a thread
/// with a 1 MiB stack.
fn parse_and_trace(src: String) -> Result<(), Error> {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let e = Expr::parse(&src, &["x"])?;
            assert_round_trips(&e);
            let g = Graph::new();
            let x = g.parameter("x", DType::F64, [3]);
            let p = g.parameter("p", DType::F64, [e.params().len().max(1) as i64]);
            let _ = e.trace(&[x], &Params::new(&p));
            Ok(())
        })
        .unwrap()
        .join()
        .expect("parsing and tracing do not panic or overflow the stack")
}

fn expect_ok_or_parse_error(src: String) {
    match parse_and_trace(src.clone()) {
        Ok(()) | Err(Error::Parse { .. }) => {}
        Err(other) => panic!("{src:?}: not a parse error: {other}"),
    }
}

/// Well-formed numeric expressions over every function and operator: operands of arithmetic
/// sometimes in parentheses and sometimes not, so that printing must find the parentheses
/// the precedence needs.
fn number() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(&["x", "a", "k", "b2", "1", "0", "2.5", "1e-3", "1e300", "pi", "e", ".5"][..])
        .prop_map(str::to_string);
    leaf.prop_recursive(6, 48, 3, |num| {
        let cond = condition(num.clone());
        let unary = prop::sample::select(
            &[
                "exp",
                "log",
                "ln",
                "log10",
                "log2",
                "exp2",
                "sqrt",
                "sin",
                "cos",
                "tan",
                "asin",
                "acos",
                "atan",
                "sinh",
                "cosh",
                "tanh",
                "abs",
                "erf",
                "erfc",
                "logistic",
                "heaviside",
            ][..],
        );
        let binary_fn = prop::sample::select(&["min", "max", "pow", "atan2", "heaviside"][..]);
        let arith = prop::sample::select(&["+", "-", "*", "/", "^", "**"][..]);
        prop_oneof![
            (num.clone(), arith, num.clone(), any::<bool>()).prop_map(|(a, op, b, paren)| if paren {
                format!("({a}) {op} ({b})")
            } else {
                format!("{a} {op} {b}")
            }),
            (num.clone(), any::<bool>()).prop_map(|(a, paren)| if paren { format!("-({a})") } else { format!("-{a}") }),
            (unary, num.clone()).prop_map(|(f, a)| format!("{f}({a})")),
            (binary_fn, num.clone(), num.clone()).prop_map(|(f, a, b)| format!("{f}({a}, {b})")),
            (cond, num.clone(), num).prop_map(|(c, a, b)| format!("where({c}, {a}, {b})")),
        ]
    })
}

/// Well-formed conditions over numbers from `num`.
fn condition(num: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    let cmp = prop::sample::select(&["<", "<=", ">", ">=", "==", "!="][..]);
    let leaf = (num.clone(), cmp, num).prop_map(|(a, op, b)| format!("{a} {op} {b}"));
    leaf.prop_recursive(3, 8, 2, |c| {
        prop_oneof![
            (
                c.clone(),
                prop::sample::select(&["&&", "||"][..]),
                c.clone(),
                any::<bool>()
            )
                .prop_map(|(a, op, b, paren)| if paren {
                    format!("({a}) {op} ({b})")
                } else {
                    format!("{a} {op} {b}")
                }),
            c.prop_map(|a| format!("!({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_token_streams_parse_or_fail_cleanly(toks in prop::collection::vec(prop::sample::select(TOKENS), 0..60)) {
        expect_ok_or_parse_error(toks.concat());
    }

    #[test]
    fn random_text_parses_or_fails_cleanly(src in "\\PC{0,80}") {
        expect_ok_or_parse_error(src);
    }

    #[test]
    fn deep_random_nesting_parses_or_fails_cleanly(
        opens in prop::collection::vec(prop::sample::select(&["(", "exp(", "-", "x^", "+", "!", "min(x,", "where(x>0,"][..]), 0..3000),
    ) {
        let closes = opens.iter().filter(|o| o.ends_with('(') || o.ends_with(',')).count();
        expect_ok_or_parse_error(format!("{}x{}", opens.concat(), ")".repeat(closes)));
    }

    #[test]
    fn well_formed_expressions_parse_print_and_parse_back(src in number()) {
        match parse_and_trace(src.clone()) {
            Ok(()) => {}
            Err(e) => panic!("{src:?} is well formed but: {e}"),
        }
    }
}
