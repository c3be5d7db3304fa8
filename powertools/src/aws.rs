//! The AWS SDK's shared config from the environment, with `aws_config`'s panics as errors.

use powertools_core::error_chain::{UNREADABLE_PANIC, one_line, panic_description};

/// Loads the AWS SDK's shared config from the environment as
/// `aws_config::defaults(BehaviorVersion::latest()).load()` does (the region, credentials,
/// `AWS_ENDPOINT_URL_*`, retries, the profile), with a setting it panics on as an error that
/// names it. `aws_config` panics on an invalid `AWS_MAX_ATTEMPTS` or `AWS_RETRY_MODE` (or
/// `max_attempts`, `retry_mode` in the profile), which took a function down at start, before
/// `powertools::init_failed` (feature `logging`) could report it to Lambda.
///
/// ```no_run
/// # async fn example() -> Result<(), powertools::Error> {
/// let config = powertools::load_aws_config().await?;
/// let dynamodb = powertools::aws_sdk_dynamodb::Client::new(&config);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::AwsConfig`](crate::Error::AwsConfig) when `aws_config` refuses a setting, with its
/// message (`AWS_MAX_ATTEMPTS`: invalid digit found in string, …).
pub async fn load_aws_config() -> Result<aws_config::SdkConfig, crate::Error> {
    loaded()
        .await
        .map_err(|message| crate::Error::AwsConfig { message })
}

/// [`load_aws_config`], its error `aws_config`'s message on one line.
pub(crate) async fn loaded() -> Result<aws_config::SdkConfig, String> {
    powertools_core::failure::catch_quiet_panics(
        aws_config::defaults(aws_config::BehaviorVersion::latest()).load(),
    )
    .await
    .map_err(|payload| {
        let message = one_line(
            panic_description(payload.as_ref()).unwrap_or_else(|| UNREADABLE_PANIC.to_owned()),
        );
        without_debug_dump(&message).to_owned()
    })
}

/// `message` without the `Debug` text of an error that `aws_config`'s panic messages end with,
/// in parentheses (`… cannot parse integer from empty string (EnvConfigError { property_source:
/// …, err: RetryConfigError { … } })`): it repeats the message before it as a dump (found by an
/// attack: the examples promise a message that names the setting, not a Debug dump).
fn without_debug_dump(message: &str) -> &str {
    if !message.ends_with("})") {
        return message;
    }
    message
        .match_indices(" (")
        .map(|(at, _)| at)
        .find(|&at| {
            // `(TypeName {`, a struct's `Debug`, from there to the end.
            let dump = &message[at + 2..];
            let name_end = dump
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(dump.len());
            dump.starts_with(|c: char| c.is_ascii_uppercase()) && dump[name_end..].starts_with(" {")
        })
        .map_or(message, |at| &message[..at])
}

#[cfg(test)]
mod tests {
    use super::without_debug_dump;

    #[test]
    fn a_trailing_debug_dump_is_left_out() {
        let message = "failed to parse max attempts. source: global environment variable key: \
                       `AWS_MAX_ATTEMPTS`: cannot parse integer from empty string (EnvConfigError \
                       { property_source: \"global environment variable key: `AWS_MAX_ATTEMPTS`\", \
                       err: RetryConfigError { kind: FailedToParseMaxAttempts { source: \
                       ParseIntError { kind: Empty } } } })";
        assert_eq!(
            without_debug_dump(message),
            "failed to parse max attempts. source: global environment variable key: \
             `AWS_MAX_ATTEMPTS`: cannot parse integer from empty string"
        );
        // Words in parentheses, or a message without a dump, are kept.
        for kept in [
            "invalid retry mode (expected standard or adaptive)",
            "a value (Standard) {x})",
            "no dump here",
        ] {
            assert_eq!(without_debug_dump(kept), kept);
        }
    }
}
