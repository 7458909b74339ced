// A segment guard must not cross an `.await` into a task that can move between threads.
fn require_send<T: Send>(_: T) {}

fn main() {
    require_send(xray_lambda::begin_segment("job"));
}
