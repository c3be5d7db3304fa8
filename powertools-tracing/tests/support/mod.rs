//! Servers for the export and extension tests: an OTLP receiver (plain, TLS, hanging, holding
//! its answers) and a Lambda Runtime + Extensions API emulator, with one timeline of what
//! happened in which order.

// Each test binary uses a part of the support.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod lambda_api;
pub mod receiver;
pub mod timeline;
pub mod warnings;
