//! Start-up: a bad setting stops the function at once, with the library's message (which names
//! the setting and the fix) instead of a Debug dump, and a non-zero exit status.

#[test]
fn bad_settings_stop_the_function_with_the_message_that_names_the_fix() {
    powertools_tests::startup::assert_bad_settings_are_named(
        env!("CARGO_BIN_EXE_http-axum"),
        "IDEMPOTENCY_TABLE",
    );
}
