//! Exactly-once handlers: everything of `powertools-idempotency`, plus, with the `dynamodb`
//! feature, `dynamodb_store(table)`, a `DynamoDbStore` configured from the environment, without
//! adding the AWS SDK crates yourself.

pub use powertools_idempotency::*;

/// A [`DynamoDbStore`] on `table`, with a DynamoDB client configured from the environment as in
/// Lambda (region, credentials, `AWS_ENDPOINT_URL_DYNAMODB`, …) by
/// `aws_config::defaults(BehaviorVersion::latest())`, and the default attribute names. With the
/// `tracing` and `aws-sdk` features (on by default), each DynamoDB call is a client span under
/// the invocation span (`powertools::tracing::AwsSdkSpans`).
///
/// For another client (a custom endpoint, retries, an SDK interceptor such as
/// `powertools::tracing::AwsSdkSpans`) or other attribute names, use
/// [`DynamoDbStore::builder`] with [`crate::load_aws_config`] and [`crate::aws_sdk_dynamodb`]:
///
/// ```no_run
/// # async fn example() -> Result<(), powertools::Error> {
/// use powertools::aws_sdk_dynamodb::Client;
/// use powertools::idempotency::DynamoDbStore;
///
/// // `aws_config::defaults(BehaviorVersion::latest()).load()`, with an error where it panics.
/// let config = powertools::load_aws_config().await?;
/// let store = DynamoDbStore::builder(Client::new(&config), "idempotency").key_attr("pk").build()?;
/// # Ok(())
/// # }
/// ```
///
/// # Example
///
/// ```no_run
/// # async fn example() -> Result<(), powertools::Error> {
/// let store = powertools::idempotency::dynamodb_store("idempotency").await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Config`] when `aws_config` refuses a setting (`AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE`:
/// see [`crate::load_aws_config`]), `table` is empty, the environment gives no region (`AWS_REGION`,
/// which Lambda sets, unset or empty).
#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub async fn dynamodb_store(table: impl Into<String>) -> Result<DynamoDbStore, Error> {
    // `aws_config` panics on some settings (`AWS_MAX_ATTEMPTS=0`): an error that names them.
    let config = crate::aws::loaded().await.map_err(|message| {
        Error::Config(format!(
            "the AWS SDK's configuration from the environment is invalid: {message}"
        ))
    })?;
    DynamoDbStore::new(client(&config), table)
}

/// The store's client: with the `tracing` and `aws-sdk` features, each call is a span under the
/// invocation's (`AwsSdkSpans`), as the layer order of the crate docs promises.
#[cfg(feature = "dynamodb")]
fn client(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    #[cfg(all(feature = "tracing", feature = "aws-sdk"))]
    let config = aws_sdk_dynamodb::config::Builder::from(config)
        .interceptor(powertools_tracing::AwsSdkSpans)
        .build();
    #[cfg(not(all(feature = "tracing", feature = "aws-sdk")))]
    let config = aws_sdk_dynamodb::config::Builder::from(config).build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
