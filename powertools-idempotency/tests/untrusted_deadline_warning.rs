//! The warning about an untrusted deadline is logged once per process. This file holds one test
//! so that the process is its own under `cargo test` as well as under nextest.

mod support;

use lambda_runtime::Context;
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{Idempotency, InMemoryStore};
use support::CapturedWarnings;

#[tokio::test]
async fn an_untrusted_deadline_is_warned_about_once_per_process() {
    // Given a subscriber that captures warnings,
    let captured = CapturedWarnings::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let idempotency = Idempotency::builder(InMemoryStore::new())
        .env(Env::from_pairs::<_, &str, &str>([]))
        .build()
        .expect("valid settings");

    // when a real deadline, then three untrusted ones (two idempotency instances) are claimed,
    idempotency
        .run(&TestContext::new().build(), "op", 0, |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect("runs");
    let warnings_before = captured.text().matches("deadline").count();
    let other = idempotency.clone();
    for (key, idempotency) in [(1, &idempotency), (2, &idempotency), (3, &other)] {
        idempotency
            .run(&Context::default(), "op", key, |_| async {
                Ok::<_, std::io::Error>(())
            })
            .await
            .expect("runs");
    }

    // then only the untrusted ones warned, and only once.
    let output = captured.text();
    assert_eq!(warnings_before, 0, "a real deadline is not warned about");
    assert_eq!(
        output.matches("deadline is missing, long past").count(),
        1,
        "{output}"
    );
    assert!(output.contains("fallback_secs=900"), "{output}");
}
