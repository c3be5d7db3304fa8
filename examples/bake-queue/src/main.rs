//! `bake-queue`: the ovens' consumer of the `bake-orders` SQS queue.
//!
//! Each message asks to bake an order. A batch is processed with `powertools-batch`: up to five
//! messages at once; a poison message (a body that is not an order) or an order that cannot be
//! baked fails alone, and only the failed messages go back to the queue (`batchItemFailures`).
//! Each message is baked once however often the queue delivers it: idempotency on the message
//! id, through the function-level API. Every log line of a message carries its `message_id`; the
//! invocation's EMF document counts `LoavesBaked` and the batch's processed and failed records.
//!
//! Deployed, it needs `IDEMPOTENCY_TABLE`; `template.yaml` shows the queue, its dead-letter queue
//! and the event source mapping.

use std::process::ExitCode;

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
#[derive(Debug, Clone, Deserialize)]
struct BakeOrder {
    order_id: String,
    shop: String,
    loaves: u32,
}

/// Bakes one order, once per message id.
async fn bake<St: IdempotencyStore>(
    idempotency: &Idempotency<St>,
    context: &Context,
    record: SqsRecord<BakeOrder>,
) -> Result<(), String> {
    let order = record.body;
    idempotency
        .run(context, "bake", record.message_id, |_| async move {
            if order.loaves == 0 {
                return Err(format!("order {} has nothing to bake", order.order_id));
            }
            tracing::info!(order_id = %order.order_id, shop = %order.shop, loaves = order.loaves, "baked");
            if let Err(error) =
                powertools::metrics::add_metric("LoavesBaked", f64::from(order.loaves), Unit::Count)
            {
                tracing::warn!(%error, "loaves not counted");
            }
            Ok(())
        })
        .await
        .map_err(|error| error.to_string())
}

type Consumer = BoxCloneService<
    LambdaEvent<SqsEvent>,
    SqsBatchResponse,
    powertools::metrics::ServiceError<powertools_batch::Error>,
>;

fn consumer<St: IdempotencyStore + Clone>(
    powertools: &Powertools,
    idempotency: Idempotency<St>,
) -> Consumer {
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(powertools.layer().trigger("pubsub"))
            .service(service_fn(move |event: LambdaEvent<SqsEvent>| {
                let idempotency = idempotency.clone();
                async move {
                    let (batch, context) = (event.payload, event.context);
                    BatchProcessor::new()
                        .concurrency(5)
                        .process_sqs(&batch, |record| bake(&idempotency, &context, record))
                        .await
                }
            })),
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The message, which names the setting and the fix, not a Debug dump.
            eprintln!("{}", powertools::error_report(&*error));
            ExitCode::FAILURE
        }
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
    let aws = aws_config::load_from_env().await;
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&aws), table)?;
    let idempotency = Idempotency::builder(store)
        .key_prefix("bake-queue.bake")
        .raise_on_missing_key(true)
        .build()?;
    // Sequential by default; with `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances) as
    // many batches at once as it says, each with its own logs, metrics and records.
    powertools::run_concurrent(consumer(&powertools, idempotency)).await
}

#[cfg(test)]
mod tests {
    use lambda_runtime::tower::ServiceExt;
    use powertools::core::env::Env;
    use powertools::core::testing::TestContext;
    use powertools::idempotency::InMemoryStore;
    use powertools::logging::MemoryLogs;
    use powertools_tests::emf::CheckedSink;

    use super::*;

    #[tokio::test]
    async fn a_redelivered_batch_bakes_nothing_twice_and_reports_the_same_failures() {
        let logs = MemoryLogs::new();
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
        let _guard = tracing::subscriber::set_default(powertools.subscriber());
        let idempotency = Idempotency::builder(InMemoryStore::new())
            .key_prefix("bake")
            .build()
            .unwrap();
        let consumer = consumer(&powertools, idempotency);
        let batch: SqsEvent =
            serde_json::from_str(include_str!("../events/bake-orders.json")).unwrap();
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
        let baked = logs
            .json()
            .into_iter()
            .filter(|l| l["message"] == "baked")
            .count();
        assert_eq!(baked, 3, "three good orders, baked once each");
    }
}
