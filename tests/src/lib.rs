//! Support for the workspace's integration and end-to-end tests: finding the real servers that
//! `scripts/with-test-services` starts, and clients for them.
//!
//! A test that needs a server and does not find one **fails** when `CI` is set, so a broken
//! service start can never turn into a green run of skipped tests. Outside CI it prints why it
//! skips and passes, so `cargo test` works on a laptop without the servers.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The variable that holds the DynamoDB-compatible endpoint (moto in our runs).
pub const DYNAMODB_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_DYNAMODB";

/// The endpoint of the server behind `variable`, after checking that it accepts connections.
///
/// Returns `None` (after printing why) when the server is not configured outside CI.
///
/// # Panics
/// When `CI` is set and the variable is missing or its server does not answer, or when the
/// variable holds something that is not an `http://host:port` URL.
pub fn required_service(variable: &str) -> Option<String> {
    let in_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
    let Some(endpoint) = std::env::var(variable)
        .ok()
        .filter(|value| !value.is_empty())
    else {
        assert!(
            !in_ci,
            "{variable} is not set: run the tests through scripts/with-test-services (CI must not skip them)"
        );
        eprintln!("skipping: {variable} is not set (run through scripts/with-test-services)");
        return None;
    };
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint.as_str(), |(_, rest)| rest)
        .trim_end_matches('/');
    let reachable = authority
        .to_socket_addrs()
        .unwrap_or_else(|error| panic!("{variable}={endpoint} is not host:port: {error}"))
        .any(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok());
    if !reachable {
        assert!(!in_ci, "{variable}={endpoint} does not accept connections");
        eprintln!("skipping: nothing answers at {variable}={endpoint}");
        return None;
    }
    Some(endpoint)
}

/// A DynamoDB client for the test server, configured from the standard variables that
/// `scripts/with-test-services` exports, or `None` outside CI when there is no server.
pub async fn dynamodb_client() -> Option<aws_sdk_dynamodb::Client> {
    required_service(DYNAMODB_ENDPOINT_VAR)?;
    let config = aws_config::load_from_env().await;
    Some(aws_sdk_dynamodb::Client::new(&config))
}

/// A table name no other test run uses.
pub fn unique_table_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
