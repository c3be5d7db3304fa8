//! The AWS SDK's shared config loaded from the environment (`powertools::load_aws_config`,
//! `powertools::idempotency::dynamodb_store`): a setting `aws_config` panics on is an error
//! that names it (found by an attack from the docs: `AWS_MAX_ATTEMPTS=` or
//! `AWS_RETRY_MODE=legacy` panicked at start, before `init_failed` could report it).

use powertools::Error;

/// Set in a child process: the variables of [`in_child_of`].
const CHILD: &str = "POWERTOOLS_FACADE_TEST_CHILD";

/// Runs the test `name` again in a child process with `variables` set (the workspace forbids
/// the `unsafe` of `std::env::set_var`), and whether this is that child.
fn in_child_of(name: &str, variables: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let output = powertools_core::testing::rerun_in_child(name, CHILD, |command| {
        command
            .env_remove("AWS_MAX_ATTEMPTS")
            .env_remove("AWS_RETRY_MODE")
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .envs(variables.iter().copied())
    });
    // The panic is the error's, not printed as the process's.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    false
}

#[tokio::test]
async fn a_setting_aws_config_panics_on_is_an_error_naming_it() {
    const NAME: &str = "a_setting_aws_config_panics_on_is_an_error_naming_it";
    if std::env::var_os(CHILD).is_none() {
        for (variable, value) in [
            ("AWS_MAX_ATTEMPTS", ""),
            ("AWS_MAX_ATTEMPTS", "0"),
            ("AWS_MAX_ATTEMPTS", "zzz"),
            ("AWS_RETRY_MODE", "legacy"),
        ] {
            in_child_of(
                NAME,
                &[
                    (variable, value),
                    ("POWERTOOLS_TEST_EXPECTED_VARIABLE", variable),
                ],
            );
        }
        in_child_of(
            NAME,
            &[("AWS_MAX_ATTEMPTS", "3"), ("AWS_RETRY_MODE", "adaptive")],
        );
        return;
    }
    let loaded = powertools::load_aws_config().await;
    let store = powertools::idempotency::dynamodb_store("idempotency").await;
    match std::env::var("POWERTOOLS_TEST_EXPECTED_VARIABLE") {
        Ok(variable) => {
            let refused = loaded.expect_err("an invalid setting");
            assert!(
                matches!(&refused, Error::AwsConfig { .. })
                    && refused.error_type() == "AwsConfigError"
                    && refused.to_string().contains(&variable)
                    // One line, as Lambda's `errorMessage` and a log's `message` are read:
                    // `aws_config`'s retry-mode message listed its options over four.
                    && !refused.to_string().contains('\n')
                    // Not a Debug dump: `aws_config`'s message for `0` ended with its error's
                    // (`(EnvConfigError { property_source: …`; found by an attack).
                    && !refused.to_string().contains(" { "),
                "{variable}: {refused}"
            );
            let refused = store.expect_err("an invalid setting");
            assert!(
                matches!(&refused, powertools::idempotency::Error::Config(_))
                    && refused.to_string().contains(&variable)
                    && !refused.to_string().contains('\n'),
                "{variable}: {refused}"
            );
        }
        Err(_) => {
            let config = loaded.expect("valid settings");
            assert_eq!(
                config.retry_config().map(|retry| retry.max_attempts()),
                Some(3)
            );
            store.expect("valid settings");
        }
    }
}
