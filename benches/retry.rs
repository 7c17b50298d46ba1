//! Placeholder: the bench lands in the next commit.
fn main() {}
