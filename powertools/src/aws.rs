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
        one_line(panic_description(payload.as_ref()).unwrap_or_else(|| UNREADABLE_PANIC.to_owned()))
    })
}
