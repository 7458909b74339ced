struct S;

impl S {
    #[xray_lambda::capture(annotate(self))]
    fn f(&self) {}
}

fn main() {
    S.f();
}
