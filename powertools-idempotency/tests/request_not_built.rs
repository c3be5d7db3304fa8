//! Requests the SDK never sends: a client without a region is refused when the store is built,
//! naming `AWS_REGION`; a claim whose request never went out (no credentials to sign it with)
//! is not taken back, and no warning says a record may be stored (found by a user writing a
//! function from the docs: the warning said duplicates would get `AlreadyInProgress` until the
//! deadline, over an empty table).

#![cfg(feature = "dynamodb")]

mod support;

use powertools_core::env::Env;
use powertools_core::testing::TestContext;
use powertools_idempotency::{DynamoDbStore, Error, Idempotency};
use support::CapturedWarnings;

/// A client without a region (`AWS_REGION` unset, or empty) is refused when the store is built,
/// naming the variable, not at the first call (where the SDK said "Missing Region: dispatch
/// failure" or "invalid value for field: `region`").
#[test]
fn a_client_without_a_region_is_refused_naming_aws_region() {
    for region in [None, Some(""), Some(" ")] {
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests());
        if let Some(region) = region {
            config = config.region(aws_sdk_dynamodb::config::Region::new(region));
        }
        let client = aws_sdk_dynamodb::Client::from_conf(config.build());
        let refused = DynamoDbStore::new(client, "idempotency").expect_err("no region");
        assert!(
            matches!(&refused, Error::Config(_)) && refused.to_string().contains("AWS_REGION"),
            "{region:?}: {refused}"
        );
    }
}

/// A claim whose request was never sent (no credentials to sign it with) is not taken back,
/// and no warning says a record may be stored: on a table keyed on the key alone, and on one
/// with a sort key, whose first claim reads the key schema first (a review: that read's failure
/// still read as "may have landed").
#[tokio::test]
async fn a_claim_never_sent_is_not_taken_back_nor_said_to_be_maybe_stored() {
    for sort_key in [false, true] {
        claim_never_sent(sort_key).await;
    }
}

async fn claim_never_sent(sort_key: bool) {
    let captured = CapturedWarnings::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let mut store = DynamoDbStore::builder(client, "idempotency");
    if sort_key {
        store = store
            .key_attr("pk")
            .sort_key_attr("sk")
            .static_pk_value("fn");
    }
    // No request could be signed.
    let error = failed_first_run(store.build().expect("a store"), None).await;
    assert!(matches!(error, Error::Persistence { .. }), "{error:?}");
    let message = powertools_core::error_chain::message_chain(&error);
    assert!(
        message.contains(if sort_key { "GetItem" } else { "PutItem" }),
        "{message}"
    );
    // Said so: it said "got no answer from … (the request may have reached it)" of a request
    // that never went out (found by an attack from the docs).
    assert!(
        message.contains("could not send the request to") && !message.contains("may have reached"),
        "{message}"
    );
    let warnings = captured.text();
    assert!(
        !warnings.contains("may be stored"),
        "sort key {sort_key}: a request never sent stored nothing: {warnings}\n{message}"
    );
}

/// A region that is no host label (`AWS_REGION='not a region!'`) is refused when the store is
/// built, naming the variable: every call failed with "could not build the request: invalid
/// value for field: region", naming none (found by an attack from the docs).
#[test]
fn a_region_that_is_not_one_is_refused_naming_aws_region() {
    let store_in = |region: &'static str| {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
            .region(aws_sdk_dynamodb::config::Region::new(region))
            .build();
        DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "idempotency")
    };
    for region in [
        "not a region!",
        "eu_west_1",
        "-eu-west-1",
        "eu-west-1.",
        ".local",
    ] {
        let refused = store_in(region).expect_err(region);
        assert!(
            matches!(&refused, Error::Config(_))
                && refused.to_string().contains("AWS_REGION")
                && refused.to_string().contains(region),
            "{region:?}: {refused}"
        );
    }
    for region in [
        "eu-west-1",
        "us-gov-west-1",
        "cn-north-1",
        "local",
        "local.test",
    ] {
        assert!(store_in(region).is_ok(), "{region}");
    }
}

/// A claim whose connections are refused while the store timeout runs out (the client waiting
/// to retry) says that it got no connection: "no answer within …" alone pointed at the store's
/// latency, where the cause is the network (a function in a VPC without a route to DynamoDB;
/// found by a review).
#[tokio::test]
async fn a_store_timeout_after_refused_connections_says_there_was_no_connection() {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .endpoint_url("http://127.0.0.1:9")
        // The retry waits past the store timeout: the bound ends the call between attempts.
        .retry_config(
            aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(std::time::Duration::from_secs(20))
                .with_use_static_exponential_base(true),
        )
        .build();
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "idempotency")
        .expect("a store");
    let idempotency = Idempotency::builder(store)
        .store_timeout(std::time::Duration::from_millis(500))
        .env(Env::from_pairs::<_, &str, &str>([]))
        .build()
        .expect("valid settings");
    let error = idempotency
        .run(
            &TestContext::new().build(),
            "charge",
            "order-1",
            |_| async { Ok::<_, std::io::Error>(1_u32) },
        )
        .await
        .expect_err("no connection");
    let message = powertools_core::error_chain::message_chain(&error);
    assert!(
        message.contains("within 500 ms") && message.contains("no connection ("),
        "{message}"
    );
}

/// The error of a first `run` on `store` (with its store timeout, if one is given), checking that
/// its handler did not run: the claim failed.
async fn failed_first_run(
    store: DynamoDbStore,
    store_timeout: Option<std::time::Duration>,
) -> Error<std::io::Error> {
    let mut builder = Idempotency::builder(store).env(Env::from_pairs::<_, &str, &str>([]));
    if let Some(timeout) = store_timeout {
        builder = builder.store_timeout(timeout);
    }
    let idempotency = builder.build().expect("valid settings");
    let ran = std::sync::atomic::AtomicBool::new(false);
    let error = idempotency
        .run(
            &TestContext::new().build(),
            "charge",
            "order-1",
            |_| async {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>(1_u32)
            },
        )
        .await
        .expect_err("the claim failed");
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "the handler ran"
    );
    error
}

/// A client whose endpoint URL is empty fails each call with a typed error that says so: the
/// SDK panicked resolving it ("URL was unset"), taking the invocation down with a panic that
/// named no setting (found by an attack from the docs: `AWS_ENDPOINT_URL_DYNAMODB=`).
#[tokio::test]
async fn an_empty_endpoint_url_is_a_typed_error_not_a_panic() {
    for endpoint in ["", " "] {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
            .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
            .endpoint_url(endpoint)
            .build();
        let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "idempotency")
            .expect("the client's own endpoint is not seen when the store is built");
        let error = failed_first_run(store, None).await;
        assert!(matches!(error, Error::Persistence { .. }), "{error:?}");
        let message = powertools_core::error_chain::message_chain(&error);
        assert!(
            message.contains("the DynamoDB client's endpoint URL is empty")
                && message.contains("could not build the request"),
            "{endpoint:?}: {message}"
        );
    }
}

/// Set in a child process: the variables of [`in_child_of`].
const CHILD: &str = "POWERTOOLS_IDEMPOTENCY_TEST_CHILD";

/// Runs the test `name` again in a child process with `variables` set (the workspace forbids
/// the `unsafe` of `std::env::set_var`), and whether this is that child.
fn in_child_of(name: &str, variables: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    powertools_core::testing::rerun_in_child(name, CHILD, |command| {
        command
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
            .env_remove("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .envs(variables.iter().copied())
    });
    false
}

/// `AWS_ENDPOINT_URL_DYNAMODB` (or `AWS_ENDPOINT_URL`) set but empty fails each call of a client
/// that follows it with a typed error naming it (the SDK panicked, "URL was unset"). A client
/// given its own endpoint, or told to ignore the variables, is not refused for it: a review
/// found such stores refused when they were built, where the variable was read alone.
#[tokio::test]
async fn an_empty_endpoint_variable_fails_the_calls_of_a_client_that_follows_it() {
    const NAME: &str = "an_empty_endpoint_variable_fails_the_calls_of_a_client_that_follows_it";
    if std::env::var_os(CHILD).is_none() {
        for variable in ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"] {
            in_child_of(NAME, &[(variable, "")]);
        }
        in_child_of(
            NAME,
            &[
                ("AWS_ENDPOINT_URL_DYNAMODB", ""),
                ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
                ("POWERTOOLS_TEST_IGNORED", "1"),
            ],
        );
        return;
    }
    let variable = ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
        .into_iter()
        .find(|name| std::env::var_os(name).is_some())
        .expect("an endpoint variable");
    let ignored = std::env::var_os("POWERTOOLS_TEST_IGNORED").is_some();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await;
    let from_environment = aws_sdk_dynamodb::Client::new(&config);
    let own_endpoint = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    for (client, follows) in [(from_environment, !ignored), (own_endpoint, false)] {
        let store = DynamoDbStore::new(client, "idempotency").expect("a store");
        let error = failed_first_run(store, None).await;
        let message = error.to_string();
        assert_eq!(
            message.contains(&format!(
                "the DynamoDB client's endpoint URL is empty (\"\", set by {variable})"
            )),
            follows,
            "{variable}, follows {follows}: {message}"
        );
    }
}

/// An empty `endpoint_url` in the client's profile fails each call with an error that says
/// where to look: the profile and the file the variables name (it named neither, only the
/// endpoint variables, which did not set it; found by an attack from the docs). A client given
/// the empty URL in code is told the same places.
#[tokio::test]
async fn an_empty_endpoint_url_from_a_profile_names_the_profile_and_its_file() {
    const NAME: &str = "an_empty_endpoint_url_from_a_profile_names_the_profile_and_its_file";
    if std::env::var_os(CHILD).is_none() {
        let file = std::env::temp_dir().join(format!("powertools-profile-{}", std::process::id()));
        std::fs::write(
            &file,
            "[profile edge]\nregion = eu-west-1\nendpoint_url =\n",
        )
        .expect("the config file is written");
        let path = file.to_str().expect("a UTF-8 temporary path");
        in_child_of(
            NAME,
            &[
                ("AWS_CONFIG_FILE", path),
                ("AWS_PROFILE", "edge"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ],
        );
        std::fs::remove_file(&file).expect("the config file is removed");
        return;
    }
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await;
    let path = std::env::var("AWS_CONFIG_FILE").expect("the child's config file");
    let store =
        DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&config), "idempotency").expect("a store");
    let error = failed_first_run(store, None).await;
    let message = error.to_string();
    assert!(
        message.contains("the DynamoDB client's endpoint URL is empty")
            && message.contains(r#"AWS_PROFILE "edge""#)
            && message.contains(&format!("AWS_CONFIG_FILE {path:?}"))
            && !message.contains('\n'),
        "{message}"
    );
}

/// A client given an endpoint URL in code that is no URL fails each call naming that URL: the
/// error named the region's endpoint, where the client never sends (a client's own endpoint,
/// or one its profile sets, is not in its config's public view; found by a review of the
/// endpoint wording).
#[tokio::test]
async fn a_client_s_own_endpoint_that_is_no_url_is_named_by_the_error() {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .endpoint_url("not a url")
        .build();
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "idempotency")
        .expect("a store");
    let error = failed_first_run(store, None).await;
    let message = error.to_string();
    assert!(
        message.contains(r#"the client's endpoint URL "not a url""#)
            && !message.contains("endpoint of eu-west-1"),
        "{message}"
    );
}

/// A store whose client's access key id has a control character: the SDK's signer panics at
/// each call's first request (`InvalidHeaderValue`).
fn store_whose_signer_panics() -> DynamoDbStore {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "AKIDEXAMPLE\n",
            "secret",
            None,
            None,
            "test",
        ))
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "idempotency").expect("a store")
}

/// A panic of the AWS SDK inside a store call is the call's error, not the invocation's panic:
/// an access key id with a control character (`AWS_ACCESS_KEY_ID` read with its trailing
/// newline) made the SDK's signer panic at the first request (`InvalidHeaderValue`; found by an
/// attack from the docs).
#[tokio::test]
async fn a_panic_of_the_sdk_is_the_call_s_error() {
    let store = store_whose_signer_panics();
    let error = failed_first_run(store, None).await;
    assert!(matches!(error, Error::Persistence { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("DynamoDB PutItem on table idempotency failed")
            && message.contains("the AWS SDK panicked"),
        "{message}"
    );
}

/// The SDK's panic is each call's own error when many calls on one store panic at once, on
/// one key and on many: every call fails with it, no task panics and no handler runs. A review
/// checked this by hand; now a test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sdk_s_panics_in_concurrent_calls_are_each_call_s_own_error() {
    let store = store_whose_signer_panics();
    let idempotency = std::sync::Arc::new(
        Idempotency::builder(store)
            .env(Env::from_pairs::<_, &str, &str>([]))
            .build()
            .expect("valid settings"),
    );
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = (0..64).map(|call| {
        let (idempotency, ran) = (idempotency.clone(), ran.clone());
        tokio::spawn(async move {
            // Half the calls share one key; the others have one each.
            let key = if call % 2 == 0 {
                "order-1".to_owned()
            } else {
                format!("order-{call}")
            };
            idempotency
                .run(&TestContext::new().build(), "charge", key, |_| async {
                    ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, std::io::Error>(1_u32)
                })
                .await
        })
    });
    for result in futures_util::future::join_all(calls).await {
        let error = result
            .expect("the task did not panic")
            .expect_err("no request can be signed");
        let message = powertools_core::error_chain::message_chain(&error);
        assert!(
            matches!(error, Error::Persistence { .. })
                && message.contains("the AWS SDK panicked")
                && message.contains("DynamoDB PutItem on table idempotency failed"),
            "{message}"
        );
    }
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// `AWS_ACCESS_KEY_ID` with a control character (read with its trailing newline) fails each call
/// with the SDK's panic as its error, naming the variable, without its value. Not refused when
/// the store is built: the client may have other credentials.
#[tokio::test]
async fn an_access_key_id_with_a_control_character_is_named_by_the_call_s_error() {
    const NAME: &str = "an_access_key_id_with_a_control_character_is_named_by_the_call_s_error";
    if std::env::var_os(CHILD).is_none() {
        in_child_of(
            NAME,
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE\n"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ],
        );
        return;
    }
    let error = failed_first_run(store_from_the_environment().await, None).await;
    let message = error.to_string();
    assert!(
        message.contains("the AWS SDK panicked")
            && message.contains("AWS_ACCESS_KEY_ID has a control character")
            && !message.contains("AKIDEXAMPLE"),
        "{message}"
    );
}

/// Before any request went out, a store error names the client's own endpoint without what may
/// be secret in it (user-info, query), and a store timeout names it rather than the region
/// (found by a review).
#[tokio::test]
async fn before_any_request_the_error_names_the_endpoint_without_its_secrets() {
    #[derive(Debug)]
    struct NeverAnswers;
    impl aws_sdk_dynamodb::config::ProvideCredentials for NeverAnswers {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::new(std::future::pending())
        }
    }
    let endpoint = "http://admin:hunter2@127.0.0.1:9/p?token=s3cr3t";
    let without_credentials = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .endpoint_url(endpoint)
        .build();
    let hanging_credentials = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .credentials_provider(NeverAnswers)
        .endpoint_url(endpoint)
        .build();
    for config in [without_credentials, hanging_credentials] {
        let store = DynamoDbStore::builder(aws_sdk_dynamodb::Client::from_conf(config), "idem")
            .build()
            .expect("a store");
        let error = failed_first_run(store, Some(std::time::Duration::from_millis(300))).await;
        let message = error.to_string();
        assert!(
            message.contains("http://127.0.0.1:9/p")
                && !message.contains("hunter2")
                && !message.contains("s3cr3t")
                && !message.contains("region eu-west-1"),
            "{message}"
        );
    }
}

/// A panic of the SDK after an attempt went out (an interceptor of the client's that panics on
/// the answer) is worded as a request that may have reached the table, not as one that "could
/// not be built" (found by a review: the claim had landed).
#[tokio::test]
async fn a_panic_after_the_request_went_out_may_have_reached_the_table() {
    #[derive(Debug)]
    struct PanicsOnTheAnswer;
    impl aws_sdk_dynamodb::config::Intercept for PanicsOnTheAnswer {
        fn name(&self) -> &'static str {
            "panics on the answer"
        }
        fn read_after_transmit(
            &self,
            _context: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
            _runtime_components: &aws_sdk_dynamodb::config::RuntimeComponents,
            _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
        ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
            panic!("an interceptor's bug, after the request went out")
        }
    }
    // A table that answers every request with an empty JSON object.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 64 * 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
            });
        }
    });
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .endpoint_url(format!("http://{address}"))
        .interceptor(PanicsOnTheAnswer)
        .build();
    let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::from_conf(config), "idempotency")
        .expect("a store");
    let error = failed_first_run(store, None).await;
    let message = powertools_core::error_chain::message_chain(&error);
    assert!(
        message.contains("the AWS SDK panicked")
            && message.contains("may have reached")
            && !message.contains("could not build"),
        "{message}"
    );
}

/// A call without credentials says so, and what to set: it said "could not send the request to
/// the client's endpoint URL …: request forbidden: IMDS is disabled …", blaming the endpoint,
/// and never named `AWS_SECRET_ACCESS_KEY` set but empty (found by an attack from the docs).
#[tokio::test]
async fn a_call_without_credentials_says_so_and_names_an_empty_variable() {
    const NAME: &str = "a_call_without_credentials_says_so_and_names_an_empty_variable";
    let nowhere = std::env::temp_dir().join("powertools-no-such-aws-file");
    let nowhere = nowhere.to_str().expect("a UTF-8 path");
    if std::env::var_os(CHILD).is_none() {
        // Both set but empty, then a key id with an empty secret (the attacker's case), with
        // no other source of credentials.
        for key_id in ["", "AKIDEXAMPLE"] {
            powertools_core::testing::rerun_in_child(NAME, CHILD, |command| {
                for name in [
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_SESSION_TOKEN",
                    "AWS_PROFILE",
                ] {
                    command.env_remove(name);
                }
                command
                    .env("AWS_EC2_METADATA_DISABLED", "true")
                    .env("AWS_CONFIG_FILE", nowhere)
                    .env("AWS_SHARED_CREDENTIALS_FILE", nowhere)
                    .env("AWS_ACCESS_KEY_ID", key_id)
                    .env("AWS_SECRET_ACCESS_KEY", "")
            });
        }
        return;
    }
    let message = failed_first_run(store_from_the_environment().await, None)
        .await
        .to_string();
    assert!(
        message
            .contains("DynamoDB PutItem on table idempotency failed: could not sign the request"),
        "{message}"
    );
    assert!(
        !message.contains("could not send the request to"),
        "{message}"
    );
    let empty: Vec<&str> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .into_iter()
        .filter(|name| std::env::var_os(name).is_some_and(|value| value.is_empty()))
        .collect();
    assert!(!empty.is_empty());
    for name in empty {
        assert!(
            message.contains(&format!("{name} is set but empty")),
            "{message}"
        );
    }
}

/// A store on a client that takes its credentials from the environment, as `aws_config` finds
/// them, sending to a port where nothing listens.
async fn store_from_the_environment() -> DynamoDbStore {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:9")
        .load()
        .await;
    DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&config), "idempotency")
        .expect("built: the client may have other credentials")
}
