//! Exactly-once Lambda handlers: a duplicate event gets the first call's response, and the
//! handler's side effects ("don't charge twice") run once, backed by DynamoDB conditional writes.
//!
//! # Overview
//!
//! - [`IdempotencyLayer`] wraps any `Service<LambdaEvent<T>>` whose event and response are
//!   serde types; [`Idempotency::run`] makes any async function idempotent on one argument, with
//!   the same engine.
//! - The key is `<prefix>.<operation>#<digest>`: the prefix is the function name, or an explicit
//!   [`key_prefix`](IdempotencyBuilder::key_prefix); the operation is the layer's
//!   ([`"handler"`](DEFAULT_LAYER_OPERATION), or [`operation`](IdempotencyLayer::operation)) or
//!   the name given to [`Idempotency::run`]; the digest is the SHA-256 of the key data's
//!   canonical JSON (see [`key_json`]), with the invocation's tenant id when Lambda tenant
//!   isolation sends one. A typed closure
//!   ([`IdempotencyLayer::key_from`]) or a JMESPath expression ([`JmesPath`], with the Powertools
//!   functions `powertools_json`, `powertools_base64` and `powertools_base64_gzip`) can pick the
//!   part of the event that is keyed on, or validated.
//! - The protocol is Powertools': one conditional `PutItem` that returns the existing record when
//!   it fails, the handler, then `UpdateItem` to `COMPLETED` with the response, or, when the
//!   handler fails **or panics**, an `UpdateItem` that releases the claim, so a failure never
//!   blocks retries. (Powertools deletes the claim there; this crate replaces it with a fence, a
//!   record any later claim takes at once and an earlier claim's late write cannot: see the
//!   table below.) The in-progress record
//!   expires at this invocation's own deadline, so a timed-out invocation does not lock its key
//!   for the whole window; a deadline that can't be trusted gets a safe window instead (below).
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
//!     let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
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
//! # What happens on each outcome
//!
//! | outcome of the first call | its record | that caller gets | a duplicate or retry gets |
//! | --- | --- | --- | --- |
//! | handler returns `Ok` | `COMPLETED` with the response, until the window ends | the response | the same response, bit for bit (until the window ends) |
//! | handler returns `Err` | released: replaced with a fence, an `INPROGRESS` record with a `fence-…` claim id that keeps the claim's in-progress deadline, which a later claim takes at once by its id (Powertools deletes it; see the row of a store hung before the claim for why), left to TTL | [`Error::Handler`] (its own error) | runs the handler again |
//! | handler panics inside its future | released, as above | [`Error::HandlerPanicked`] (also when nothing was claimed: idempotency off, or a missing key allowed) | runs the handler again |
//! | handler panics before its future exists (in a service's `call`, or in the closure given to `run`) | released, as above | the panic, resumed | runs the handler again |
//! | handler panics in a build whose panics abort (`panic = "abort"`, which `cargo lambda build --release` sets without a `[profile.release]`; a warning says so at the first call) | stays `INPROGRESS` until the invocation's deadline: the process ends | nothing (Lambda reports the runtime's exit) | [`Error::AlreadyInProgress`] until the deadline, then runs again |
//! | response can't be stored (over [`MAX_ITEM_SIZE`], NaN or ±Infinity, refused by serde_json, or JSON that does not read back into the response type) | `COMPLETED` without a response, with why ([`DataRecord::not_stored_reason`]); a warning is logged | the response | [`Error::ResponseNotStored`] until the window ends: the side effects never run twice |
//! | handler still running at the invocation's deadline (its future is dropped there, at its next `.await`; Lambda Managed Instances do not stop a timed-out invocation; work it spawned runs on) | stays `INPROGRESS`, its deadline passed | [`Error::HandlerTimedOut`] (Lambda has answered its invoker with a timeout) | runs the handler again, without this one beside it |
//! | invocation times out, the process dies, or the future is dropped after the claim (a `tokio::time::timeout` or `select!` around `run`, say) | stays `INPROGRESS` until the invocation's deadline | Lambda's timeout (or nothing: the future is gone) | [`Error::AlreadyInProgress`] until the deadline, then runs again |
//! | store down or hung before the claim | none: a write that never went out (no credentials to sign it with) stored nothing and is not taken back; a write that went unanswered (a timeout, a cut connection; or was answered with throttling or HTTP 5xx, which the SDK retries after an attempt that may have landed; not a refusal such as `AccessDeniedException`) may have landed, or may land later (a slow network, an SDK retry in flight), and is taken back within a second: a fence is written in its place, a record whose in-progress deadline is the moment it is written, which the late write (whose condition compares with the moment it was sent) cannot replace and any later claim can; the claim, if it landed, is replaced with a fence that keeps its deadline instead, in one write, only while it is this claim (if that fails too, it is deleted as far as a delete can and a warning says it may hold the key, `INPROGRESS`, until the invocation's deadline); a retry that claims the key over the fence and fails leaves a fence of its own in turn, with its claim's deadline, never a free key the late write could take; and when another invocation's claim holds the key (one whose deadline was still ahead when the write was sent), the take-back leaves it there: what comes after it (its completion; its fence, should its handler fail or its own write be taken back, with its deadline; a claim after that deadline) refuses the write too | [`Error::Persistence`], the handler never ran; when the SDK's own retry of the write found the one that landed, the claim knows it for its own by its id ([`DataRecord::claim_id`]) and the handler runs, once | runs (or [`Error::AlreadyInProgress`] until the deadline, when taking the claim back failed too) |
//! | store down or hung after the handler succeeded | stays `INPROGRESS` until the invocation's deadline | [`Error::NotCompleted`], naming that time | [`Error::AlreadyInProgress`] until then, then runs again |
//! | handler failed and releasing its claim failed too | stays `INPROGRESS` until the invocation's deadline | [`Error::DeleteFailed`] with both errors | [`Error::AlreadyInProgress`] until then, then runs again; a release that reaches the store after that (sent, then timed out) replaces only its own claim, never a retry's |
//! | duplicate whose validation data differs (missing data counts as `null`) | unchanged | — | [`Error::PayloadMismatch`] |
//!
//! Every store call is bounded by [`store_timeout`](IdempotencyBuilder::store_timeout) (default
//! 10 s, SDK retries included) and ends at least 100 ms before the invocation's deadline (a
//! call with less time left than that fails at once, unless the store answers when first
//! polled, as `InMemoryStore` does: a claim's write is sent all the same, and may land, holding
//! the key until the deadline, which is then passed or all but passed; the completion of a record after the handler succeeded
//! ends 10 ms before it instead, since failing it means the handler runs again), so a hung store fails the invocation with a typed error
//! before Lambda stops it, however many store calls the invocation makes (the records of a
//! batch). A deadline that can't be trusted (missing, more than a second past, or more than
//! 90 minutes ahead: `Context::default()`, an emulator) bounds nothing: the store timeout
//! alone does. Without a Tokio runtime, or in one built without timers (a test under another
//! executor), nothing bounds a call: it runs unbounded there rather than panic.
//! Store errors name the DynamoDB operation, the table and the service's error code and message
//! ([`DynamoDbError`]); a call that gets no answer within the bound names the operation, the
//! table and the endpoint too ([`IdempotencyStore::describe_call`]).
//!
//! # Deadlines that can't be trusted
//!
//! The in-progress record normally expires at the invocation's deadline. A deadline that is
//! missing (`Context::default()`), more than a second past when the claim is written, or more
//! than 90 minutes ahead (emulators such as cargo-lambda 1.9 send a relative `600000`, which
//! reads as 1970) would expire the claim at once and let concurrent duplicates all run. (Lambda's
//! longest timeout is 15 minutes, and 90 for the asynchronous and event-source invocations of
//! Lambda Managed Instances: such a deadline is the claim's.) Those
//! get [`in_progress_fallback`](IdempotencyBuilder::in_progress_fallback) instead (default
//! [15 minutes](DEFAULT_IN_PROGRESS_FALLBACK), Lambda's longest timeout outside Lambda Managed
//! Instances), with one warning per
//! process. A real deadline with 0 ms left, or passed less than a second before the claim, counts
//! as "now" (Powertools for Python #4759): the claim expires at once.
//!
//! # Operation names
//!
//! Two operations given the same payload must never share a record, so the operation is part of
//! the key: [`Idempotency::run`] takes a name, and the layer has one
//! ([`"handler"`](DEFAULT_LAYER_OPERATION) unless [`operation`](IdempotencyLayer::operation)
//! renames it). Names are strings you write, never derived from the call site or a function's
//! path, so moving or renaming code never changes keys by accident. Changing a name (or the key
//! prefix) starts a new set of records: a duplicate of a call made under the old name runs
//! again. A name is non-empty (not white space or invisible characters alone) and holds no
//! control characters nor line separators (U+2028, U+2029), no bidirectional formatting
//! characters (U+202E and the like, which would show a key reversed in a log line), `.` or `#`,
//! so that `<prefix>.<operation>#<digest>`
//! splits one way only;
//! `run` refuses the layer's default name, `handler`.
//!
//! # Differences from Powertools for Python and TypeScript
//!
//! - Keys hash canonical JSON with SHA-256, not MD5, with numbers keyed by value (`-0`, `0` and
//!   `0.0` are one key). With Python's defaults (MD5, a prefix naming the handler's module and
//!   function) keys never coincide, and records in a shared table do not collide. They do
//!   coincide, and the two functions share records, when a Python function sets
//!   `hash_function="sha256"` and a `key_prefix` equal to ours (`<prefix>.<operation>`) and its
//!   key data is an integer, a boolean or ASCII text: Python's `json.dumps` writes those as we
//!   do (objects and arrays with spaces, other text escaped, so those keys differ). A migration
//!   may want that: each reads the other's records (the same attributes; a completed Python
//!   record replays here), except for fences, below.
//! - Python's key includes the function's module and name; ours an explicit operation name, so
//!   a refactor keeps its keys. With `key_prefix` set, Python drops the function name and two
//!   functions share records; ours keep the operation, which is the same default (`handler`)
//!   for every layer: two functions with one prefix share records here too unless their
//!   layers name their operations apart.
//! - A layer inside another on the same key and the same `Idempotency` (one layer applied
//!   twice with one operation name, by a shared middleware stack and by the function, with any
//!   layers between that call the inner service on the same task) runs the handler under the
//!   outer layer's claim, once. The outer claim is known to the task that polls it: between
//!   two such layers, a layer that calls the inner service on another task (tower's `Buffer`,
//!   or one that spawns) makes the inner layer find the outer's claim, and every call fails
//!   with `IdempotencyAlreadyInProgressError` (loudly, never running the handler twice): put
//!   such a layer outside both, or give the layers their own operations. Layers on two
//!   `Idempotency` values each claim in their own store (one in memory around one on
//!   DynamoDB, say); on one table, the inner finds the outer's claim
//!   (`IdempotencyAlreadyInProgressError`): give one of them its own operation.
//! - A replay returns the handler's response type, deserialized straight from the stored JSON
//!   (floats bit for bit, 128-bit integers included), including `()`, `false`, `0`, `""` and
//!   `null`. A replay is what the JSON reads as: `Some(None)` is stored as `null` and replays
//!   as `None` (the README's "What it promises" has the other shapes JSON does not hold whole).
//! - The replay hook takes the typed response, not its JSON.
//! - Key data that is an object of `null`s alone (`{order: body.order_id}` matching nothing is
//!   `{"order": null}`) is missing ([`is_missing`]), as in Java and TypeScript; Python looks at
//!   the object's keys, so every such event shares one key there and all but the first are
//!   answered as duplicates.
//! - A response that can't be stored completes the record without it ([`Error::ResponseNotStored`]
//!   for duplicates). Python fails the caller after the side effects happened and leaves the
//!   record in progress, so a retry runs them again.
//! - The stored response (`data`) is compact JSON with UTF-8 as it is, in the response type's
//!   field order, where Python writes `json.dumps(sort_keys=True)` (`", "` between members,
//!   `\u00e9` escapes); records also hold a `claim_id` attribute (see fences below), and one
//!   completed without its response a `not_stored_reason` (why: Python has no such record).
//!   Each runtime
//!   reads only its own records (their keys differ), so nothing reads the other's text.
//! - Without a function name (`Context::default()`, a local run) the key prefix is `test-func`,
//!   as in Python: every nameless context shares it; set `key_prefix`, or name the test context.
//! - The key prefix may not be invisible characters alone, nor hold a control character, a line
//!   separator or a bidirectional formatting character (refused by `build`), and a key over
//!   DynamoDB's limit for its attribute (2048 bytes for a partition key, 1024 for a sort key) is
//!   refused before any request, naming the prefix and the operation; Python sends both.
//!   [`InMemoryStore`] refuses a key over 2048 bytes the same way, so that a unit test catches
//!   a prefix or an operation name too long for DynamoDB. It is
//!   an [`Error::Persistence`] (`IdempotencyPersistenceLayerError`), as the store reports it
//!   at the call, not at `build`: a caller that retries store errors as passing retries this
//!   one for ever. Keep a custom prefix well under the limit (the key adds `.`, the operation's
//!   name, `#` and a 64-digit hash).
//! - An untrusted deadline gets a 15-minute in-progress window; Python writes whatever the
//!   context says.
//! - A failed handler's claim is released by replacing it with a fence (one conditional
//!   `UpdateItem`, an `INPROGRESS` record that keeps the claim's deadline under a `fence-…` claim
//!   id), where Powertools deletes it (`DeleteItem`): a retry claims either at once (over a fence,
//!   by its id: one more `PutItem`), and a claim write sent earlier that lands late cannot take a
//!   fence, where it takes the free key. Powertools for Python reads a fence as a claim in
//!   progress until its deadline: it meets one only where keys coincide (above), and then a
//!   Python duplicate gets `IdempotencyAlreadyInProgressError` until the failed invocation's
//!   deadline (up to its timeout), where a Rust retry takes the fence at once. A claim
//!   whose write went unanswered is taken back behind a fence too (Powertools leaves it in
//!   progress until the deadline).
//! - If releasing the record after a handler error fails, the error keeps both
//!   ([`Error::DeleteFailed`]); a panic is caught, the claim released, and the panic reported as
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

#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate docs link to items of every feature; with some off (`cargo doc
// --no-default-features`) those links have nothing to point to. Checked with every feature on
// (`scripts/test`'s workspace build, docs.rs).
#![cfg_attr(
    not(all(feature = "dynamodb", feature = "jmespath")),
    allow(rustdoc::broken_intra_doc_links)
)]

/// The README's examples, run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

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
mod sets;
mod storable;

pub use config::{
    DEFAULT_EXPIRES_AFTER, DEFAULT_IN_PROGRESS_FALLBACK, DEFAULT_LAYER_OPERATION,
    DEFAULT_LOCAL_CACHE_MAX_ITEMS, DEFAULT_STORE_TIMEOUT, MAX_ITEM_SIZE,
    POWERTOOLS_IDEMPOTENCY_DISABLED,
};
pub use error::{BoxError, Error};
pub use idempotency::{Idempotency, IdempotencyBuilder};
#[cfg(feature = "jmespath")]
#[cfg_attr(docsrs, doc(cfg(feature = "jmespath")))]
pub use jmes_path::JmesPath;
pub use key::{FromFn, KeyExtractor, NoValidation, WholeEvent, is_missing, key_json};
pub use layer::{IdempotencyLayer, IdempotencyService};
#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use persistence::{DynamoDbError, DynamoDbStore, DynamoDbStoreBuilder};
pub use persistence::{IdempotencyStore, InMemoryStore, PutOutcome, StoreCall, StoreError};
pub use record::{DataRecord, MAX_NOT_STORED_REASON_BYTES, RecordState, Status};
