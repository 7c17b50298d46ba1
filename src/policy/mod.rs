//! One policy per downstream: the canonical stack in one builder (work in progress).
