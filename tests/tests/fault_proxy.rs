//! `scripts/fault-proxy.py` does what each of its rules says, against moto: the proof that the
//! failure tests built on it test what they claim.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use powertools_tests::{FaultProxy, create_idempotency_table, dynamodb_client};
use serde_json::json;

/// A channel, a client through it, a client straight to moto, and a table created through the
/// channel.
struct Setup {
    proxy: FaultProxy,
    proxied: Client,
    direct: Client,
    table: String,
}

async fn setup() -> Option<Setup> {
    let proxy = FaultProxy::start().await?;
    let direct = dynamodb_client().await?;
    let proxied = proxy.client().await;
    let table = create_idempotency_table(&proxied).await;
    Some(Setup {
        proxy,
        proxied,
        direct,
        table,
    })
}

impl Setup {
    async fn put(&self, id: &str) -> Result<(), SdkError<PutItemError>> {
        self.proxied
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(id.into()))
            .send()
            .await
            .map(drop)
    }

    async fn get(&self, id: &str) -> Result<bool, SdkError<GetItemError>> {
        self.proxied
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.into()))
            .consistent_read(true)
            .send()
            .await
            .map(|output| output.item().is_some())
    }

    /// Whether moto holds the item, asked directly.
    async fn stored(&self, id: &str) -> bool {
        self.direct
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("moto answers directly")
            .item()
            .is_some()
    }
}

#[tokio::test]
async fn pass_forwards_requests_and_answers_and_counts_them() {
    let Some(setup) = setup().await else {
        return;
    };
    setup.put("a").await.expect("the put passes");
    assert!(setup.get("a").await.expect("the get passes"));
    assert!(setup.stored("a").await);
    assert_eq!(setup.proxy.requests("CreateTable"), 1);
    assert_eq!(setup.proxy.requests("UpdateTimeToLive"), 1);
    assert_eq!(setup.proxy.requests("PutItem"), 1);
    assert_eq!(setup.proxy.requests("GetItem"), 1);
    assert_eq!(setup.proxy.requests("DeleteItem"), 0);
}

#[tokio::test]
async fn refuse_resets_connections_and_forwards_nothing() {
    let Some(setup) = setup().await else {
        return;
    };
    setup.proxy.set(json!({"action": "refuse"}));
    let error = setup.put("a").await.expect_err("the put is refused");
    assert!(
        matches!(error, SdkError::DispatchFailure(_)),
        "a dispatch failure, not {error:?}"
    );
    assert!(!setup.stored("a").await);
    assert_eq!(setup.proxy.requests("PutItem"), 0);
    assert!(setup.proxy.stats()["refused"].as_u64() >= Some(1));
    setup.proxy.set(json!({"action": "pass"}));
    setup.put("a").await.expect("the put passes again");
}

#[tokio::test]
async fn delay_forwards_after_the_delay() {
    let Some(setup) = setup().await else {
        return;
    };
    setup.proxy.set(json!({"action": "delay", "ms": 200}));
    let started = Instant::now();
    setup.put("a").await.expect("the delayed put passes");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert!(setup.stored("a").await);
}

#[tokio::test]
async fn hang_never_answers_nor_forwards() {
    let Some(setup) = setup().await else {
        return;
    };
    setup.proxy.set(json!({"action": "hang"}));
    let outcome = tokio::time::timeout(Duration::from_secs(1), setup.put("a")).await;
    assert!(
        outcome.is_err(),
        "the put hangs, but ended with {outcome:?}"
    );
    assert_eq!(setup.proxy.requests("PutItem"), 1);
    setup.proxy.set(json!({"action": "pass"}));
    assert!(!setup.stored("a").await);
    setup.put("b").await.expect("the put passes again");
    assert!(!setup.stored("a").await, "the hung request stays unsent");
}

#[tokio::test]
async fn cut_applies_the_write_but_loses_the_answer() {
    let Some(setup) = setup().await else {
        return;
    };
    setup.proxy.set(json!({"action": "cut"}));
    let error = setup.put("a").await.expect_err("the answer is lost");
    assert!(
        matches!(
            error,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "a connection error, not {error:?}"
    );
    assert!(setup.stored("a").await, "moto applied the write");
    assert_eq!(setup.proxy.requests("PutItem"), 1);
}

#[tokio::test]
async fn drop_closes_the_connection_without_forwarding() {
    let Some(setup) = setup().await else {
        return;
    };
    setup.proxy.set(json!({"action": "drop"}));
    let error = setup.put("a").await.expect_err("the request is dropped");
    assert!(
        matches!(
            error,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "a connection error, not {error:?}"
    );
    assert!(!setup.stored("a").await, "moto never saw the write");
    assert_eq!(setup.proxy.requests("PutItem"), 1);
}

#[tokio::test]
async fn a_target_limits_the_rule_to_one_operation() {
    let Some(setup) = setup().await else {
        return;
    };
    setup
        .proxy
        .set(json!({"action": "drop", "target": "PutItem"}));
    assert!(!setup.get("a").await.expect("a GetItem passes"));
    setup.put("a").await.expect_err("a PutItem is dropped");
    setup.put("a").await.expect_err("every PutItem is dropped");
    assert!(!setup.get("a").await.expect("a GetItem still passes"));
    assert_eq!(setup.proxy.requests("PutItem"), 2);
    assert_eq!(setup.proxy.requests("GetItem"), 2);
}

#[tokio::test]
async fn times_applies_the_rule_to_the_next_requests_only() {
    let Some(setup) = setup().await else {
        return;
    };
    setup
        .proxy
        .set(json!({"action": "drop", "target": "PutItem", "times": 2}));
    setup
        .put("a")
        .await
        .expect_err("the first PutItem is dropped");
    assert!(!setup.get("a").await.expect("a GetItem passes, uncounted"));
    setup
        .put("a")
        .await
        .expect_err("the second PutItem is dropped");
    setup.put("a").await.expect("the third PutItem passes");
    assert!(setup.stored("a").await);
    assert_eq!(setup.proxy.requests("PutItem"), 3);
}

#[tokio::test]
async fn skip_lets_the_first_requests_pass_then_applies_the_rule() {
    let Some(setup) = setup().await else {
        return;
    };
    setup
        .proxy
        .set(json!({"action": "drop", "target": "PutItem", "skip": 1, "times": 1}));
    setup.put("a").await.expect("the first PutItem passes");
    assert!(setup.get("a").await.expect("a GetItem passes, uncounted"));
    setup
        .put("b")
        .await
        .expect_err("the second PutItem is dropped");
    assert!(!setup.stored("b").await);
    setup.put("b").await.expect("the third PutItem passes");
    assert!(setup.stored("b").await);
    // An untargeted refuse acts on connections, before any request: `skip` cannot count
    // requests there, so the rule is refused rather than applied early (found by a review).
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        setup.proxy.set(json!({"action": "refuse", "skip": 1}));
    }));
    assert!(refused.is_err(), "the proxy refuses the rule");
}

#[tokio::test]
async fn channels_are_isolated_from_each_other() {
    let Some(setup) = setup().await else {
        return;
    };
    let Some(other) = FaultProxy::start().await else {
        return;
    };
    assert_ne!(other.port(), setup.proxy.port());
    other.set(json!({"action": "refuse"}));
    setup.put("a").await.expect("this channel still passes");
    assert_eq!(other.requests("PutItem"), 0);
}
