//! powertools-rs: OpenTelemetry spans per invocation with X-Ray propagation.
//!
//! This crate is a placeholder in the workspace so that the layout, CI and shared configuration
//! are in place; its API is being built and is not published yet. Until then it only re-exports
//! the foundation it builds on, [`powertools_core`].

pub use powertools_core;
