//! Compile-time behaviour of `#[capture]`: every accepted form compiles, every rejected
//! one fails with a precise message at the offending token.

#[test]
fn capture_forms() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
