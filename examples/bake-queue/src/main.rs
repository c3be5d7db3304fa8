//! `bake-queue`: the ovens' consumer of the `bake-orders` SQS queue.
//!
//! Each message asks to bake an order. A batch is processed with `powertools-batch`: up to five
//! messages at once; a poison message (a body that is not an order) or an order that cannot be
//! baked fails alone, and only the failed messages go back to the queue (`batchItemFailures`).
//! Each order is baked once however often the queue delivers it, and however often its producer
//! sends it: idempotency on the order id (the order as validation data), through the
//! function-level API, and ovens that bake an order once (for a bake whose record the store
//! failed to complete, or an order sent again after the record's window). Every log line of a message carries its `message_id`; the
//! invocation's EMF document counts `LoavesBaked` and the batch's processed and failed records.
//!
//! Deployed, it needs `IDEMPOTENCY_TABLE`; `template.yaml` shows the queue, its dead-letter queue
//! and the event source mapping.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::tower::ServiceBuilder;
use lambda_runtime::tower::util::BoxCloneService;
use lambda_runtime::{Context, LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::idempotency::{DynamoDbStore, Idempotency, IdempotencyStore};
use powertools::metrics::Unit;
use powertools_batch::{BatchProcessor, SqsRecord};
use serde::Deserialize;

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct BakeOrder {
    order_id: String,
    shop: String,
    loaves: u32,
}

/// The ovens, simulated: they keep the orders they baked. A real function records a bake with a
/// conditional write keyed on the order id that holds the order: the guard for the cases the
/// idempotency record cannot cover, a bake that happened before the store failed to complete its
/// record (the record stays in progress until the invocation's deadline, and SQS's redelivery
/// after it runs the bake again), and an order sent again after the record's window.
#[derive(Debug, Clone, Default)]
struct Ovens {
    baked: Arc<Mutex<HashMap<String, BakeOrder>>>,
}

impl Ovens {
    /// Whether `order` is new to the ovens (it is theirs from now on), or was baked already;
    /// an error when its id was baked with other contents.
    fn start(&self, order: &BakeOrder) -> Result<bool, String> {
        let mut baked = self.baked.lock().unwrap_or_else(PoisonError::into_inner);
        match baked.get(&order.order_id) {
            None => {
                baked.insert(order.order_id.clone(), order.clone());
                Ok(true)
            }
            Some(before) if before == order => Ok(false),
            Some(_) => Err(format!(
                "order {} was baked before with other contents: not baked again",
                order.order_id
            )),
        }
    }
}

/// The longest order id, as the orders-api example bounds it.
const MAX_ORDER_ID: usize = 64;
/// The longest shop name.
const MAX_SHOP: usize = 64;
/// The most loaves one order bakes (as the orders-api example bounds a line's quantity).
const MAX_LOAVES: u32 = 1_000;

/// An order id: 1 to 64 characters of `A-Z a-z 0-9 - _`.
fn is_order_id(id: &str) -> bool {
    (1..=MAX_ORDER_ID).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A shop name: 1 to 64 characters, not all of them spaces or invisible, none of them a control
/// character, a line separator or a bidirectional formatting character (which break a log line
/// or display a name reversed), as the orders-api example bounds a location (a shop of
/// zero-width spaces, or `camden` with a right-to-left override, was baked: found by an
/// attack). Look-alikes (a zero-width space inside, another script's letters) pass: the README
/// says so.
fn is_shop(shop: &str) -> bool {
    use powertools::core::text::{displays_as_empty, is_bidi_control};
    (1..=MAX_SHOP).contains(&shop.chars().count())
        && !displays_as_empty(shop)
        && !shop
            .chars()
            .any(|c| c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// Bakes one order, once per order.
async fn bake<St: IdempotencyStore>(
    idempotency: &Idempotency<St>,
    ovens: &Ovens,
    context: &Context,
    record: SqsRecord<BakeOrder>,
) -> Result<(), BoxError> {
    let order = record.body;
    // Bounded before anything is claimed, baked or logged: an id is the order's identity, so
    // spellings of one id (a trailing space, another Unicode form) would bake it twice,
    // and it is on every line (a 200 KB id made a 200 KB line). A message refused here fails on
    // every delivery, until the queue's redrive policy moves it to its dead-letter queue; its
    // reason does not quote it.
    if !is_order_id(&order.order_id) {
        return Err(format!(
            "the order_id is not 1 to {MAX_ORDER_ID} characters of A-Z a-z 0-9 - _ \
             (its {} bytes are left out)",
            order.order_id.len()
        )
        .into());
    }
    // On the record's lines, its failure line included: a failed order is found by its id.
    if let Err(error) = powertools::logging::append_key("order_id", &order.order_id) {
        tracing::warn!(%error, "the order id is not on the record's lines");
    }
    if !is_shop(&order.shop) {
        return Err(format!(
            "the shop is not 1 to {MAX_SHOP} visible characters without control, line \
             separator or bidirectional formatting characters (its {} bytes are left out)",
            order.shop.len()
        )
        .into());
    }
    // Before the claim too: a refused order leaves no record, so the fixed one, sent again
    // under the same id, is baked.
    if !(1..=MAX_LOAVES).contains(&order.loaves) {
        return Err(format!(
            "order {} asks for {} loaves: an order bakes 1 to {MAX_LOAVES}",
            order.order_id, order.loaves
        )
        .into());
    }
    // Keyed on the order, not on the message id: a producer that sends an order again (its
    // `SendMessage` answer lost) makes a second message with an id of its own, which must not
    // bake it twice (found by an attack). The order is validation data, so that one order id
    // with other contents fails with `IdempotencyValidationError` instead of being answered as
    // the first one's duplicate, reported processed and never baked.
    let validation = serde_json::json!({
        "order_id": order.order_id,
        "shop": order.shop,
        "loaves": order.loaves,
    });
    idempotency
        .run_keyed(
            context,
            "bake",
            serde_json::json!(order.order_id),
            Some(validation),
            || async move {
                if !ovens.start(&order)? {
                    tracing::warn!(order_id = %order.order_id, "baked already: not baked again");
                    return Ok(());
                }
                tracing::info!(order_id = %order.order_id, shop = %order.shop, loaves = order.loaves, "baked");
                if let Err(error) = powertools::metrics::add_metric(
                    "LoavesBaked",
                    f64::from(order.loaves),
                    Unit::Count,
                ) {
                    tracing::warn!(%error, "loaves not counted");
                }
                Ok::<(), String>(())
            },
        )
        .await?;
    // The call's error as it is, boxed (not its message alone): the failure line names it as
    // Powertools does (`IdempotencyAlreadyInProgressError` for a copy that found the order still
    // baking, `IdempotencyValidationError`, `IdempotencyPersistenceLayerError`), where a string
    // made every failed record `Error` (found by an attack).
    Ok(())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Consumer = BoxCloneService<
    LambdaEvent<SqsEvent>,
    SqsBatchResponse,
    powertools::metrics::ServiceError<powertools_batch::Error>,
>;

fn consumer<St: IdempotencyStore + Clone>(
    powertools: &Powertools,
    idempotency: Idempotency<St>,
    ovens: Ovens,
) -> Consumer {
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(powertools.layer())
            .service(service_fn(move |event: LambdaEvent<SqsEvent>| {
                let (idempotency, ovens) = (idempotency.clone(), ovens.clone());
                async move {
                    let (batch, context) = (event.payload, event.context);
                    BatchProcessor::new()
                        .concurrency(5)
                        .process_sqs(&batch, |record| {
                            bake(&idempotency, &ovens, &context, record)
                        })
                        .await
                }
            })),
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        // The message, which names the setting and the fix (not a Debug dump), in the log and,
        // under Lambda, in the answer to the invocation that started the function.
        Err(error) => powertools::init_failed(&*error).await,
    }
}

/// The deployed function: settings from the environment, once, then the Runtime API.
async fn run() -> Result<(), lambda_runtime::Error> {
    let powertools = Powertools::builder()
        .metrics(|metrics| metrics.capture_cold_start_metric(true))
        .build()?;
    powertools.init()?;
    // Spans leave after the response (an in-process Lambda extension): callers never wait for
    // the collector.
    powertools.register_extension().await?;
    let table = std::env::var("IDEMPOTENCY_TABLE")
        .ok()
        .filter(|table| !table.is_empty())
        .ok_or(
            "IDEMPOTENCY_TABLE is not set: set it to the name of the idempotency table \
             (template.yaml sets it for the deployed function)",
        )?;
    // Not `aws_config::load_from_env()`, which panics on an invalid `AWS_MAX_ATTEMPTS` or
    // `AWS_RETRY_MODE`: an error naming it, which Lambda reports as the start's.
    let aws = powertools::load_aws_config().await?;
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&aws), table)?;
    let idempotency = Idempotency::builder(store)
        .key_prefix("bake-queue.bake")
        .raise_on_missing_key(true)
        .build()?;
    // Sequential by default; with `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances) as
    // many batches at once as it says, each with its own logs, metrics and records.
    powertools::run_concurrent(consumer(&powertools, idempotency, Ovens::default())).await
}

#[cfg(test)]
mod tests {
    use lambda_runtime::tower::ServiceExt;
    use powertools::core::env::Env;
    use powertools::core::testing::TestContext;
    use powertools::idempotency::InMemoryStore;
    use powertools::logging::MemoryLogs;
    use powertools_tests::emf::CheckedSink;
    use powertools_tests::idempotency::FailingStore;

    use super::*;

    /// The stack writing its logs to `logs`, and the thread's `tracing` default set to it.
    fn powertools(logs: &MemoryLogs) -> (Powertools, tracing::subscriber::DefaultGuard) {
        let powertools = Powertools::builder()
            .service("ovens")
            .env(Env::from_pairs([
                ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
                ("POWERTOOLS_TRACE_DISABLED", "true"),
            ]))
            .logger(|logger| logger.writer(logs.clone()))
            .metrics(|metrics| metrics.sink(CheckedSink::new()))
            .build()
            .unwrap();
        let guard = powertools_tests::set_test_default(powertools.subscriber());
        (powertools, guard)
    }

    /// The consumer on an in-memory store, its logs, and the thread's `tracing` default.
    fn in_memory_consumer() -> (Consumer, MemoryLogs, tracing::subscriber::DefaultGuard) {
        consumer_on(InMemoryStore::new())
    }

    /// The consumer on `store`, its logs, and the thread's `tracing` default.
    fn consumer_on<St: IdempotencyStore + Clone + 'static>(
        store: St,
    ) -> (Consumer, MemoryLogs, tracing::subscriber::DefaultGuard) {
        let logs = MemoryLogs::new();
        let (powertools, guard) = powertools(&logs);
        let idempotency = Idempotency::builder(store)
            .key_prefix("bake")
            .build()
            .unwrap();
        let consumer = consumer(&powertools, idempotency, Ovens::default());
        (consumer, logs, guard)
    }

    fn sample_batch() -> SqsEvent {
        serde_json::from_str(include_str!("../events/bake-orders.json")).unwrap()
    }

    fn baked(logs: &MemoryLogs) -> usize {
        logs.json()
            .into_iter()
            .filter(|line| line["message"] == "baked")
            .count()
    }

    #[tokio::test]
    async fn a_redelivered_batch_bakes_nothing_twice_and_reports_the_same_failures() {
        let (consumer, logs, _guard) = in_memory_consumer();
        let batch = sample_batch();
        for _delivery in 0..2 {
            let response = consumer
                .clone()
                .oneshot(TestContext::new().event(batch.clone()))
                .await
                .unwrap();
            let failed: Vec<&str> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            assert_eq!(failed, ["7b1c0f2e-0003", "7b1c0f2e-0004"]);
        }
        assert_eq!(baked(&logs), 3, "three good orders, baked once each");
    }

    #[tokio::test]
    async fn a_message_baked_but_not_recorded_is_not_baked_again_on_redelivery() {
        // Given a message is baked, then the store fails to complete its record
        let store = FailingStore::completions("bake", 1);
        let (consumer, logs, _guard) = consumer_on(store.clone());
        let mut batch: SqsEvent =
            serde_json::from_str(include_str!("../events/bake-orders.json")).unwrap();
        batch.records.truncate(1);
        let first = consumer
            .clone()
            .oneshot(
                TestContext::new()
                    .with_remaining_time(std::time::Duration::from_millis(200))
                    .event(batch.clone()),
            )
            .await;
        // Every record of the batch failed: the whole batch goes back (BatchProcessingError).
        assert!(first.is_err(), "the message goes back: {first:?}");
        assert_eq!(store.failures_left(), 0);

        // When SQS delivers it again, after the record's in-progress deadline
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let again = consumer
            .oneshot(TestContext::new().event(batch))
            .await
            .unwrap();

        // Then it succeeds without a second bake
        assert!(again.batch_item_failures.is_empty());
        assert_eq!(baked(&logs), 1, "baked once");
    }

    /// A producer whose `SendMessage` answer was lost sends the order again: SQS makes a second
    /// message, with an id of its own. Found by an attack: keyed on the message id, the order
    /// was baked twice. Keyed on the order, the second message is its duplicate.
    #[tokio::test]
    async fn an_order_sent_twice_by_its_producer_is_baked_once() {
        let (consumer, logs, _guard) = in_memory_consumer();
        let mut batch = sample_batch();
        batch.records.truncate(1);
        for message_id in ["m-first-send", "m-retried-send"] {
            batch.records[0].message_id = Some(message_id.to_owned());
            let response = consumer
                .clone()
                .oneshot(TestContext::new().event(batch.clone()))
                .await
                .unwrap();
            assert!(response.batch_item_failures.is_empty(), "{message_id}");
        }
        assert_eq!(baked(&logs), 1, "ord-1001 baked once");
    }

    /// Copies of one order in one batch, run side by side: the ones that find the first still
    /// baking fail, named `IdempotencyAlreadyInProgressError` (they were `Error`, like an invalid
    /// order; found by an attack), so that they can be told from orders bound for the
    /// dead-letter queue.
    #[tokio::test]
    async fn copies_that_find_their_order_baking_are_named_as_powertools_names_them() {
        let (consumer, logs, _guard) = consumer_on(FailingStore::late_completions());
        let mut batch = sample_batch();
        batch.records.truncate(1);
        let copies = (0..10).map(|copy| {
            let mut record = batch.records[0].clone();
            record.message_id = Some(format!("m-copy-{copy}"));
            record
        });
        batch.records = copies.collect();
        let response = consumer
            .oneshot(TestContext::new().event(batch))
            .await
            .unwrap();

        assert_eq!(baked(&logs), 1, "baked once");
        let failed = failure_lines(&logs);
        assert_eq!(failed.len(), response.batch_item_failures.len());
        assert!(!failed.is_empty(), "copies ran side by side");
        for line in &failed {
            assert_eq!(
                (line["exception_name"].as_str(), line["order_id"].as_str()),
                (Some("IdempotencyAlreadyInProgressError"), Some("ord-1001")),
                "{line}"
            );
        }
    }

    fn failure_lines(logs: &MemoryLogs) -> Vec<serde_json::Value> {
        logs.json()
            .into_iter()
            .filter(|line| line["message"] == "Record processing exception; skipping this record")
            .collect()
    }

    /// An order id out of bounds (spaces, case or Unicode variants of one id, which would bake
    /// one order twice; 200 KB, which made a 200 KB log line; a line break) fails its record
    /// before anything is claimed or baked, without the id in its reason or any line (every id
    /// was baked, and logged whole; found by an attack through the emulator).
    #[tokio::test]
    async fn an_order_id_out_of_bounds_fails_its_record_unbaked_and_unquoted() {
        let (consumer, logs, _guard) = in_memory_consumer();
        let mut batch = sample_batch();
        batch.records.truncate(1);
        let template = batch.records.remove(0);
        let ids = [
            "b-3 ".to_owned(),
            r"b-e\u0301".to_owned(),
            "ｂ-4".to_owned(),
            "x".repeat(200_000),
            r#"b-5\n{\"level\":\"ERROR\"}"#.to_owned(),
            String::new(),
        ];
        batch.records = ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                let mut record = template.clone();
                record.message_id = Some(format!("m-{index}"));
                record.body = Some(format!(
                    r#"{{"order_id": "{id}", "shop": "camden", "loaves": 2}}"#
                ));
                record
            })
            .chain(std::iter::once(template.clone()))
            .collect();
        let response = consumer
            .oneshot(TestContext::new().event(batch))
            .await
            .expect("the batch is answered");
        assert_eq!(response.batch_item_failures.len(), ids.len());
        assert_eq!(baked(&logs), 1, "the good order only");
        let text = logs.lines().concat();
        assert!(text.len() < 100_000, "{} bytes of logs", text.len());
        assert!(
            !text.contains("xxxxxxxxxx") && !text.contains("b-3 "),
            "an id quoted"
        );
    }

    /// A shop name that displays as nothing or reversed, or breaks a line, and a number of
    /// loaves out of bounds, fail their record before anything is claimed or baked, without the name in the
    /// reason (zero-width spaces, a right-to-left override and 4 billion loaves were baked:
    /// found by an attack); the corrected order, under the same id, is baked.
    #[tokio::test]
    async fn a_shop_that_displays_as_another_or_a_count_out_of_bounds_fails_unbaked() {
        let (consumer, logs, _guard) = in_memory_consumer();
        let mut batch = sample_batch();
        batch.records.truncate(1);
        let template = batch.records.remove(0);
        let bodies = [
            r#"{"order_id": "s-1", "shop": "\u200b\u200b", "loaves": 2}"#,
            r#"{"order_id": "s-2", "shop": "camden\u202enedmac", "loaves": 2}"#,
            r#"{"order_id": "s-3", "shop": "\u2066camden", "loaves": 2}"#,
            r#"{"order_id": "s-4", "shop": "camden\u2028x", "loaves": 2}"#,
            r#"{"order_id": "s-5", "shop": "\u3164", "loaves": 2}"#,
            r#"{"order_id": "s-6", "shop": "camden", "loaves": 0}"#,
            r#"{"order_id": "s-7", "shop": "camden", "loaves": 1001}"#,
            r#"{"order_id": "s-8", "shop": "camden", "loaves": 4294967295}"#,
        ];
        let records = |bodies: &[&str]| {
            bodies
                .iter()
                .enumerate()
                .map(|(index, body)| {
                    let mut record = template.clone();
                    record.message_id = Some(format!("m-{index}"));
                    record.body = Some((*body).to_owned());
                    record
                })
                .collect::<Vec<_>>()
        };
        // And one good order: a batch whose every record fails is an error of its own.
        batch.records = records(&bodies);
        batch.records.push(template.clone());
        let response = consumer
            .clone()
            .oneshot(TestContext::new().event(batch.clone()))
            .await
            .expect("the batch is answered");
        assert_eq!(response.batch_item_failures.len(), bodies.len());
        assert_eq!(baked(&logs), 1, "the good order only");
        let text = logs.lines().concat();
        assert!(!text.contains("nedmac"), "a shop name quoted");
        // Fixed, under the same ids: baked (nothing was claimed).
        batch.records = records(&[
            r#"{"order_id": "s-1", "shop": "camden", "loaves": 2}"#,
            r#"{"order_id": "s-6", "shop": "camden", "loaves": 1000}"#,
            r#"{"order_id": "s-7", "shop": "Café Zürich", "loaves": 1}"#,
        ]);
        let response = consumer
            .oneshot(TestContext::new().event(batch))
            .await
            .expect("the batch is answered");
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert_eq!(baked(&logs), 4);
    }

    /// A message id seen before carrying another order (SQS's ids are unique: a hand-written
    /// or replayed-and-edited event): that order is baked, not answered as the first one's
    /// duplicate and dropped (found by an attack, after the first one's record had expired:
    /// the ovens' guard on the message id said "baked already").
    #[tokio::test]
    async fn a_message_id_seen_before_with_another_order_bakes_that_order() {
        let (consumer, logs, _guard) = in_memory_consumer();
        let mut batch = sample_batch();
        batch.records.truncate(1);
        consumer
            .clone()
            .oneshot(TestContext::new().event(batch.clone()))
            .await
            .unwrap();
        batch.records[0].body =
            Some(r#"{"order_id": "o-99", "shop": "camden", "loaves": 5}"#.to_owned());
        let again = consumer
            .oneshot(TestContext::new().event(batch.clone()))
            .await
            .unwrap();
        assert!(again.batch_item_failures.is_empty());
        let orders: Vec<serde_json::Value> = logs
            .json()
            .into_iter()
            .filter(|line| line["message"] == "baked")
            .map(|line| line["order_id"].clone())
            .collect();
        assert_eq!(orders, ["ord-1001", "o-99"]);
    }

    /// One order id with other contents (another shop, another number of loaves) is not the
    /// same order: it fails, named, goes back to the queue, then to the dead-letter queue,
    /// within the record's window (validation data) and after it (the ovens compare the order
    /// they baked), instead of being answered as the first one and never baked.
    #[tokio::test]
    async fn an_order_id_with_other_contents_fails_within_the_window_and_after_it() {
        let (consumer, logs, _guard) = in_memory_consumer();
        let mut batch = sample_batch();
        batch.records.truncate(1);
        consumer
            .clone()
            .oneshot(TestContext::new().event(batch.clone()))
            .await
            .unwrap();
        batch.records[0].message_id = Some("m-edited".to_owned());
        batch.records[0].body =
            Some(r#"{"order_id": "ord-1001", "shop": "camden", "loaves": 9}"#.to_owned());
        let error = consumer
            .oneshot(TestContext::new().event(batch.clone()))
            .await
            .expect_err("the record fails");
        assert!(
            error
                .to_string()
                .contains("payload does not match the stored record"),
            "{error}"
        );
        assert_eq!(baked(&logs), 1);
        // Named as Powertools names it, with the order on the line (found by an attack: every
        // failed record was `Error`, so a Logs Insights count could not tell a conflicting order
        // from a duplicate still baking or a store outage)
        let failed = failure_lines(&logs);
        assert_eq!(
            (
                failed[0]["exception_name"].as_str(),
                failed[0]["order_id"].as_str()
            ),
            (Some("IdempotencyValidationError"), Some("ord-1001")),
            "{}",
            failed[0]
        );

        // After the window: the ovens remember what they baked for the order
        let ovens = Ovens::default();
        let first = BakeOrder {
            order_id: "ord-1001".to_owned(),
            shop: "camden".to_owned(),
            loaves: 2,
        };
        assert_eq!(ovens.start(&first), Ok(true));
        assert_eq!(ovens.start(&first), Ok(false), "baked already");
        let edited = BakeOrder {
            loaves: 9,
            ..first.clone()
        };
        let conflict = ovens.start(&edited).unwrap_err();
        assert!(
            conflict.contains("ord-1001") && conflict.contains("other contents"),
            "{conflict}"
        );
    }
}
