//! Exactly-once Lambda handlers: a duplicate event gets the first call's response, and the
//! handler's side effects ("don't charge twice") run once, backed by DynamoDB conditional writes.
//!
//! # Overview
//!
//! - [`IdempotencyLayer`] wraps any `Service<LambdaEvent<T>>` whose event and response are
//!   serde types; [`Idempotency::run`] makes any async function idempotent on one argument, with
//!   the same engine.
//! - The key is the event's canonical JSON (see [`canonical_json`]) hashed with SHA-256, under a
//!   prefix (the function name by default, or an explicit [`key_prefix`](IdempotencyBuilder::key_prefix)),
//!   and the invocation's tenant id when Lambda tenant isolation sends one. A typed closure
//!   ([`IdempotencyLayer::key_from`]) or a JMESPath expression ([`JmesPath`], with the Powertools
//!   functions `powertools_json`, `powertools_base64` and `powertools_base64_gzip`) can pick the
//!   part of the event that is keyed on, or validated.
//! - The protocol is Powertools': one conditional `PutItem` that returns the existing record when
//!   it fails, the handler, then `UpdateItem` to `COMPLETED` with the response, or `DeleteItem` when
//!   the handler fails **or panics**, so a failure never blocks retries. The in-progress record
//!   expires at this invocation's own deadline, so a timed-out invocation does not lock its key
//!   for the whole window.
//! - Stores implement [`IdempotencyStore`]: [`DynamoDbStore`] for functions, [`InMemoryStore`]
//!   for unit tests and offline demos.
//!
//! # Example
//!
//! ```no_run
//! use lambda_runtime::{LambdaEvent, service_fn, tower::ServiceBuilder};
//! use powertools_idempotency::{DynamoDbStore, Idempotency, IdempotencyLayer};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, Serialize)]
//! struct Payment { payment_id: String, amount_cents: u64 }
//!
//! #[derive(Deserialize, Serialize)]
//! struct Receipt { payment_id: String, charged_cents: u64 }
//!
//! async fn charge(event: LambdaEvent<Payment>) -> Result<Receipt, lambda_runtime::Error> {
//!     let payment = event.payload;
//!     Ok(Receipt { payment_id: payment.payment_id, charged_cents: payment.amount_cents })
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), lambda_runtime::Error> {
//!     let config = aws_config::load_from_env().await;
//!     let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&config), "idempotency")?;
//!     let idempotency = Idempotency::builder(store).use_local_cache().build()?;
//!     let handler = ServiceBuilder::new()
//!         .layer(IdempotencyLayer::new(idempotency).key_from(|p: &Payment| Some(p.payment_id.clone())))
//!         .service(service_fn(charge));
//!     lambda_runtime::run(handler).await
//! }
//! ```
//!
//! # The table
//!
//! ```yaml
//! IdempotencyTable:
//!   Type: AWS::DynamoDB::Table
//!   Properties:
//!     BillingMode: PAY_PER_REQUEST
//!     AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]
//!     KeySchema: [{ AttributeName: id, KeyType: HASH }]
//!     TimeToLiveSpecification: { AttributeName: expiration, Enabled: true }
//! ```
//!
//! The function needs `dynamodb:GetItem`, `dynamodb:PutItem`, `dynamodb:UpdateItem` and
//! `dynamodb:DeleteItem` on that table, nothing more (with SAM: `DynamoDBCrudPolicy` is wider).
//!
//! # Cold start: AWS-LC's entropy
//!
//! `DynamoDbStore` brings in the AWS SDK, whose TLS (rustls on AWS-LC) seeds AWS-LC's random
//! generator from CPU jitter the first time the process makes an HTTPS request: about 30 ms on
//! our 2-vCPU machine, paid by the function's first invocation, and likely more at small memory
//! sizes. Building with `AWS_LC_SYS_NO_JITTER_ENTROPY=1` (in `.cargo/config.toml` under `[env]`)
//! leaves the jitter source out and makes that first fill take microseconds; the generator is
//! then seeded from the operating system (with RDRAND, where the CPU has it, as
//! personalization). `BENCHMARKS.md` has the measurements.
//!
//! # Differences from Powertools for Python and TypeScript
//!
//! - Keys hash canonical JSON with SHA-256, not MD5: keys are not shared with other runtimes
//!   (records in a shared table do not collide).
//! - A replay returns the handler's response type, deserialized, including `()`, `false`, `0`,
//!   `""` and `null`.
//! - The replay hook sees the stored response as JSON.
//! - If deleting the record after a handler error fails, the error keeps both
//!   ([`Error::DeleteFailed`]); a panic is caught, the record deleted, and the panic reported as
//!   [`Error::HandlerPanicked`].
//!
//! # Feature flags
//!
//! - `dynamodb` (default): [`DynamoDbStore`], on `aws-sdk-dynamodb`.
//! - `jmespath` (default): [`JmesPath`] key and validation expressions, on `jmespath`, `base64`
//!   and `flate2`.
//!
//! # Supported Rust versions
//!
//! 1.94.1, set by `aws-sdk-dynamodb`.

mod config;
mod engine;
mod error;
mod idempotency;
#[cfg(feature = "jmespath")]
mod jmes_path;
mod key;
mod layer;
mod persistence;
mod record;
mod storable;

pub use config::{
    DEFAULT_EXPIRES_AFTER, DEFAULT_IN_PROGRESS_FALLBACK, DEFAULT_LAYER_OPERATION,
    DEFAULT_LOCAL_CACHE_MAX_ITEMS, DEFAULT_STORE_TIMEOUT, MAX_ITEM_SIZE,
    POWERTOOLS_IDEMPOTENCY_DISABLED,
};
pub use error::{BoxError, Error};
pub use idempotency::{Idempotency, IdempotencyBuilder};
#[cfg(feature = "jmespath")]
pub use jmes_path::JmesPath;
pub use key::{FromFn, KeyExtractor, NoValidation, WholeEvent, canonical_json, is_missing};
pub use layer::{IdempotencyLayer, IdempotencyService};
#[cfg(feature = "dynamodb")]
pub use persistence::{DynamoDbError, DynamoDbStore, DynamoDbStoreBuilder};
pub use persistence::{IdempotencyStore, InMemoryStore, PutOutcome, StoreError};
pub use record::{DataRecord, RecordState, Status};
