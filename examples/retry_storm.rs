//! Placeholder: the example lands in the next commit.
fn main() {}
