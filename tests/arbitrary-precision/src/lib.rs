//! Nothing of its own: see `tests/arbitrary_precision.rs`.
