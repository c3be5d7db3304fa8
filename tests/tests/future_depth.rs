//! A compile-time guard: a function composed as the bake-queue example is (the stack's layer,
//! a batch whose records each make an idempotent call through a store that wraps another) builds
//! with 28 levels to spare under the compiler's default depth limit (128). Building the
//! example's tests failed with `queries overflow the depth limit!` when one more level went into
//! a claim's DynamoDB call: it had 8 to spare, and a user's function a little deeper than the
//! example's would not have built. The idempotency engine now boxes a claim's write and its
//! take-back, and the DynamoDB store its SDK calls; this file fails to build if the depth comes
//! back.
#![recursion_limit = "100"]

use lambda_runtime::tower::{ServiceBuilder, ServiceExt};
use lambda_runtime::{LambdaEvent, service_fn};
use powertools::Powertools;
use powertools::batch::{BatchProcessor, SqsRecord};
use powertools::core::env::Env;
use powertools::core::testing::TestContext;
use powertools::events::sqs::{SqsBatchResponse, SqsEvent};
use powertools::idempotency::{
    DataRecord, DynamoDbStore, Idempotency, IdempotencyStore, PutOutcome, StoreError,
};
use powertools_tests::{create_idempotency_table, dynamodb_client};
use serde_json::{Value, json};

/// A store of the user's own that forwards to another: one more level on every call.
#[derive(Clone)]
struct Forwarding<S>(S);

impl<S: IdempotencyStore> IdempotencyStore for Forwarding<S> {
    async fn get(&self, key: &str) -> Result<Option<DataRecord>, StoreError> {
        self.0.get(key).await
    }
    async fn put_in_progress(
        &self,
        record: &DataRecord,
        now: std::time::SystemTime,
    ) -> Result<PutOutcome, StoreError> {
        self.0.put_in_progress(record, now).await
    }
    async fn put_over_fence(
        &self,
        record: &DataRecord,
        fence: &DataRecord,
    ) -> Result<PutOutcome, StoreError> {
        self.0.put_over_fence(record, fence).await
    }
    async fn update(&self, record: &DataRecord) -> Result<(), StoreError> {
        self.0.update(record).await
    }
    async fn delete(&self, record: &DataRecord) -> Result<(), StoreError> {
        self.0.delete(record).await
    }
    async fn replace_with_fence(
        &self,
        claim: &DataRecord,
        fence: &DataRecord,
    ) -> Result<(), StoreError> {
        self.0.replace_with_fence(claim, fence).await
    }
}

/// One record's work, an `async fn` of the user's, as the example's `bake`.
async fn bake<St: IdempotencyStore>(
    idempotency: &Idempotency<St>,
    context: &lambda_runtime::Context,
    record: SqsRecord<Value>,
) -> Result<(), String> {
    let order = record.body["order_id"].clone();
    idempotency
        .run(context, "bake", order, |order| async move {
            tokio::task::yield_now().await;
            Ok::<_, String>(json!({"baked": order}))
        })
        .await
        .map(drop)
        .map_err(|error| error.to_string())
}

#[tokio::test]
async fn a_batch_of_idempotent_records_inside_the_stack_builds_and_runs() {
    let Some(client) = dynamodb_client().await else {
        return;
    };
    let table = create_idempotency_table(&client).await;
    let store = Forwarding(DynamoDbStore::new(client, &table).expect("a store"));
    let idempotency = Idempotency::builder(store).build().expect("valid settings");
    let powertools = Powertools::builder()
        .service("ovens")
        .env(Env::from_pairs([
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("POWERTOOLS_TRACE_DISABLED", "true"),
        ]))
        .metrics(|metrics| metrics.sink(powertools::metrics::MemorySink::new()))
        .build()
        .expect("valid settings");
    let service = ServiceBuilder::new()
        .layer(powertools.layer())
        .service(service_fn(move |event: LambdaEvent<SqsEvent>| {
            let idempotency = idempotency.clone();
            async move {
                let (batch, context) = (event.payload, event.context);
                BatchProcessor::new()
                    .concurrency(5)
                    .process_sqs(&batch, |record| bake(&idempotency, &context, record))
                    .await
            }
        }));
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m-1", "body": "{\"order_id\": \"o-1\"}", "eventSource": "aws:sqs"},
        {"messageId": "m-2", "body": "{\"order_id\": \"o-2\"}", "eventSource": "aws:sqs"},
    ]}))
    .expect("an SQS event");
    let response: SqsBatchResponse = service
        .oneshot(TestContext::new().event(event))
        .await
        .expect("the batch's response");
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
}
