//! Property tests of the expression language: every input, however hostile, parses to a tree
//! or a typed parse error, in bounded time and stack; what parses traces into a graph.

use nlsq::expr::Expr;
use nlsq::graph::{Graph, Params};
use nlsq::{DType, Error};
use proptest::prelude::*;

/// Tokens of the language and a few that are not, so that random streams hit every path.
const TOKENS: &[&str] = &[
    "x", "a", "k", "pi", "e", "1", "2.5", "1e-3", "1e999", ".5", "+", "-", "*", "/", "^", "**", "(", ")", "exp(",
    "ln(", "sqrt(", "sin(", "erf(", "abs(", "foo(", ",", " ", "\n", "$", "é", "1.2.3", "_b2",
];

/// Parses `src` and traces what parses, on a thread with a 1 MiB stack.
fn parse_and_trace(src: String) -> Result<(), Error> {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let e = Expr::parse(&src, &["x"])?;
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
        opens in prop::collection::vec(prop::sample::select(&["(", "exp(", "-", "x^", "+"][..]), 0..3000),
    ) {
        let closes = opens.iter().filter(|o| o.ends_with('(')).count();
        expect_ok_or_parse_error(format!("{}x{}", opens.concat(), ")".repeat(closes)));
    }
}
