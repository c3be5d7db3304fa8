//! The warning about an untrusted deadline is logged once per process. This file holds one test
//! so that the process is its own under `cargo test` as well as under nextest.

use std::io::Write;
use std::sync::{Arc, Mutex};

use lambda_runtime::Context;
use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{Idempotency, InMemoryStore};

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_untrusted_deadline_is_warned_about_once_per_process() {
    // Given a subscriber that captures warnings,
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
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
    let warnings_before = String::from_utf8(captured.0.lock().expect("not poisoned").clone())
        .expect("UTF-8")
        .matches("deadline")
        .count();
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
    let output =
        String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("UTF-8");
    assert_eq!(warnings_before, 0, "a real deadline is not warned about");
    assert_eq!(
        output.matches("deadline is missing, long past").count(),
        1,
        "{output}"
    );
    assert!(output.contains("fallback_secs=900"), "{output}");
}
