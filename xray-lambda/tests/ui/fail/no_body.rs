trait T {
    #[xray_lambda::capture]
    fn f(&self);
}

fn main() {}
