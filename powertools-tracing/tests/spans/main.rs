//! What the invocation span carries, read from an in-memory exporter: which spans reach the
//! trace, the FaaS and HTTP semantic conventions, exceptions, and the X-Ray annotations.

mod support;

use std::fmt;

#[cfg(feature = "aws-lambda-events")]
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::tower::{Layer, ServiceExt};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use opentelemetry::trace::Status;
use powertools_core::testing::TestContext;
use powertools_tracing::{HttpRequest, TracingLayer, annotate};
use serde_json::{Value, json};
use support::{Recorder, attribute, attribute_count, exception, names, strings, text, tracer};

#[tokio::test]
async fn spans_of_user_crates_named_like_internal_ones_reach_the_trace() {
    // Given a handler whose spans come from crates named like the HTTP and OTel stacks
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
        tracing::info_span!(target: "h2_probe", "probe").in_scope(|| {});
        tracing::info_span!(target: "towers_bakery::oven", "oven").in_scope(|| {});
        tracing::info_span!(target: "hyperlocal_shop", "shop").in_scope(|| {});
        tracing::info_span!(target: "opentelemetry_fans::club", "club").in_scope(|| {});
        // and spans of the real internal crates
        tracing::info_span!(target: "h2", "h2_internal").in_scope(|| {});
        tracing::info_span!(target: "h2::codec", "h2_codec").in_scope(|| {});
        tracing::info_span!(target: "tower::buffer::worker", "tower_buffer").in_scope(|| {});
        tracing::info_span!(target: "hyper_util::client::legacy::pool", "hyper_pool")
            .in_scope(|| {});
        tracing::info_span!(target: "opentelemetry_sdk::trace", "sdk").in_scope(|| {});
        tracing::info_span!(target: "aws_smithy_runtime::client", "smithy").in_scope(|| {});
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));

    // When it is invoked
    service
        .oneshot(
            TestContext::new()
                .with_function_name("bakery")
                .event(json!({})),
        )
        .await
        .unwrap();

    // Then the user crates' spans are children of the invocation, the internal ones are not traced
    let invocation = recorder.span("bakery");
    for name in ["probe", "oven", "shop", "club"] {
        let span = recorder.span(name);
        assert_eq!(
            span.parent_span_id,
            invocation.span_context.span_id(),
            "{name}"
        );
    }
    let exported = support::names(&recorder.spans());
    for internal in [
        "h2_internal",
        "h2_codec",
        "tower_buffer",
        "hyper_pool",
        "sdk",
        "smithy",
    ] {
        assert!(
            !exported.iter().any(|name| name == internal),
            "{internal} in {exported:?}"
        );
    }
}

#[tokio::test]
async fn the_resource_id_is_the_function_arn_with_the_alias_resolved_to_the_version() {
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));
    let arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders";
    for (invoked, version, resource_id) in [
        // Given an invocation through an alias, the alias is replaced by the version it runs
        (format!("{arn}:live"), "7", format!("{arn}:7")),
        // an unqualified ARN and a $LATEST one stay as they are
        (arn.to_owned(), "$LATEST", arn.to_owned()),
        (
            format!("{arn}:$LATEST"),
            "$LATEST",
            format!("{arn}:$LATEST"),
        ),
        // a version stays
        (format!("{arn}:7"), "7", format!("{arn}:7")),
    ] {
        recorder.clear();
        let context = TestContext::new()
            .with_function_name("orders")
            .with_function_arn(invoked.clone())
            .with_function_version(version);
        service
            .clone()
            .oneshot(context.event(json!({})))
            .await
            .unwrap();
        let span = recorder.span("orders");
        assert_eq!(
            text(&span, "cloud.resource_id").as_deref(),
            Some(resource_id.as_str()),
            "{invoked}"
        );
        assert_eq!(
            text(&span, "aws.lambda.invoked_arn").as_deref(),
            Some(invoked.as_str())
        );
        assert_eq!(
            text(&span, "cloud.account.id").as_deref(),
            Some("123456789012")
        );
    }
}

#[derive(Debug)]
struct OrderRejected {
    order: u32,
}

impl fmt::Display for OrderRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {} was rejected", self.order)
    }
}

impl std::error::Error for OrderRejected {}

/// The exception recorded when the handler fails with `error`.
async fn exception_of<E>(error: impl Fn() -> E + Send + Sync + 'static) -> (String, String, Status)
where
    E: fmt::Debug + Send + 'static,
{
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer).layer(service_fn(move |_event: LambdaEvent<Value>| {
        let result = Err::<Value, E>(error());
        async move { result }
    }));
    service
        .oneshot(
            TestContext::new()
                .with_function_name("payments")
                .event(json!({})),
        )
        .await
        .expect_err("the handler fails");
    let span = recorder.span("payments");
    let (kind, message) = exception(&span).expect("an exception event");
    (kind, message, span.status)
}

#[tokio::test]
async fn a_boxed_error_is_recorded_with_its_own_type_and_its_message() {
    // A boxed error of a type of the user's
    let (kind, message, status) =
        exception_of(|| lambda_runtime::Error::from(OrderRejected { order: 7 })).await;
    assert_eq!(kind, "OrderRejected");
    assert_eq!(message, "order 7 was rejected");
    assert_eq!(status, Status::error("order 7 was rejected"));

    // A message only: no Debug quotes, and no `alloc::boxed::Box<dyn core::error::Error …>`
    let (kind, message, status) =
        exception_of(|| lambda_runtime::Error::from("card declined")).await;
    assert_eq!(kind, "Error");
    assert_eq!(message, "card declined");
    assert_eq!(status, Status::error("card declined"));

    // A Powertools error in a box: its Diagnostic error_type, as Lambda reports it unboxed
    let (kind, message, _) = exception_of(|| {
        lambda_runtime::Error::from(powertools_tracing::Error::Exporter("no route".to_owned()))
    })
    .await;
    assert_eq!(kind, "TracingExporterError");
    assert_eq!(
        message,
        "the OTLP span exporter could not be built: no route"
    );
}

#[tokio::test]
async fn a_diagnostic_error_is_recorded_as_lambda_reports_it() {
    let (kind, message, status) = exception_of(|| Diagnostic {
        error_type: "PaymentDeclined".to_owned(),
        error_message: "card 4242 declined".to_owned(),
    })
    .await;
    assert_eq!(kind, "PaymentDeclined");
    assert_eq!(message, "card 4242 declined");
    assert_eq!(status, Status::error("card 4242 declined"));
}

#[derive(Debug)]
enum Refusal {
    OutOfStock(#[allow(dead_code)] u32),
}

#[tokio::test]
async fn a_plain_error_type_is_recorded_with_its_own_type_name() {
    let (kind, _, _) = exception_of(|| Refusal::OutOfStock(3)).await;
    assert_eq!(
        kind, "spans::Refusal",
        "its path, without generic arguments"
    );
    let (kind, message, _) = exception_of(|| "out of flour".to_owned()).await;
    assert_eq!((kind.as_str(), message.as_str()), ("Error", "out of flour"));
}

/// The invocation span of one invocation with `event`, whose handler answers `response`.
async fn invocation_span<T, R>(event: T, response: R) -> opentelemetry_sdk::trace::SpanData
where
    T: Send + 'static,
    R: serde::Serialize + Clone + Send + Sync + 'static,
{
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer).layer(service_fn(move |_event: LambdaEvent<T>| {
        let response = response.clone();
        async move { Ok::<_, lambda_runtime::Error>(response) }
    }));
    let context = TestContext::new().with_function_name("orders-api").build();
    service
        .oneshot(LambdaEvent::new(event, context))
        .await
        .expect("the handler succeeds");
    recorder.span("orders-api")
}

fn http_attributes(span: &opentelemetry_sdk::trace::SpanData) -> Value {
    json!({
        "faas.trigger": text(span, "faas.trigger"),
        "http.request.method": text(span, "http.request.method"),
        "url.path": text(span, "url.path"),
        "http.route": text(span, "http.route"),
        "http.response.status_code": attribute(span, "http.response.status_code")
            .map(|value| value.to_string()),
    })
}

#[tokio::test]
async fn http_invocations_get_the_http_server_attributes_from_the_events_json() {
    let rest = json!({
        "resource": "/orders/{id}",
        "path": "/orders/42",
        "httpMethod": "GET",
        "headers": {},
        "requestContext": {
            "resourcePath": "/orders/{id}",
            "httpMethod": "GET",
            "path": "/prod/orders/42",
            "stage": "prod",
        },
    });
    let http_api = json!({
        "version": "2.0",
        "routeKey": "POST /orders/{id}/items",
        "rawPath": "/orders/42/items",
        "requestContext": {
            "routeKey": "POST /orders/{id}/items",
            "http": {"method": "POST", "path": "/orders/42/items"},
        },
    });
    let function_url = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/health",
        "requestContext": {
            "domainName": "abc.lambda-url.eu-west-1.on.aws",
            "routeKey": "$default",
            "http": {"method": "GET", "path": "/health"},
        },
    });
    let alb = json!({
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/orders/1"}},
        "httpMethod": "DELETE",
        "path": "/orders/42",
        "headers": {},
        "body": "",
        "isBase64Encoded": false,
    });
    for (event, status, expected) in [
        (
            rest,
            json!({"statusCode": 200, "body": "{}"}),
            json!({"faas.trigger": "http", "http.request.method": "GET", "url.path": "/orders/42",
                   "http.route": "/orders/{id}", "http.response.status_code": "200"}),
        ),
        (
            http_api,
            json!({"statusCode": 201}),
            json!({"faas.trigger": "http", "http.request.method": "POST",
                   "url.path": "/orders/42/items", "http.route": "/orders/{id}/items",
                   "http.response.status_code": "201"}),
        ),
        (
            function_url,
            json!({"statusCode": 204}),
            json!({"faas.trigger": "http", "http.request.method": "GET", "url.path": "/health",
                   "http.route": null, "http.response.status_code": "204"}),
        ),
        (
            alb,
            json!({"statusCode": 404, "statusDescription": "404 Not Found"}),
            json!({"faas.trigger": "http", "http.request.method": "DELETE",
                   "url.path": "/orders/42", "http.route": null,
                   "http.response.status_code": "404"}),
        ),
    ] {
        let span = invocation_span(event.clone(), status).await;
        assert_eq!(http_attributes(&span), expected, "{event}");
    }

    // Events of other triggers get none of them
    let sqs = json!({"Records": [{"messageId": "m-1", "body": "{}", "eventSource": "aws:sqs"}]});
    let span = invocation_span(sqs, json!({"statusCode": 200})).await;
    assert_eq!(
        http_attributes(&span),
        json!({"faas.trigger": "pubsub", "http.request.method": null, "url.path": null,
               "http.route": null, "http.response.status_code": null})
    );
}

/// What the event says of the request is bounded, as annotations and the response are: a direct
/// invoke can send a megabyte path, route and method, which made a span of 3 MB of attributes,
/// past X-Ray's 64 KB segment (found by an attack from the docs). A method the OpenTelemetry
/// HTTP conventions do not know (`get`, `PURGE`, a megabyte of `G`) is `_OTHER`, with the
/// client's in `http.request.method_original`, as the conventions say.
#[tokio::test]
async fn http_attributes_from_the_event_are_bounded_and_unknown_methods_are_other() {
    let long = "/é".repeat(300_000);
    let event = json!({
        "version": "2.0",
        "routeKey": format!("GET {long}"),
        "rawPath": long,
        "requestContext": {"http": {"method": "G".repeat(1_000_000), "path": long}},
    });
    let span = invocation_span(event, json!({"statusCode": 200})).await;
    assert_eq!(
        text(&span, "http.request.method").as_deref(),
        Some("_OTHER")
    );
    for key in ["url.path", "http.route", "http.request.method_original"] {
        let value = text(&span, key).unwrap_or_else(|| panic!("{key} is recorded"));
        assert!(
            !value.is_empty() && value.len() <= 1024,
            "{key}: {} bytes",
            value.len()
        );
    }
    assert!(text(&span, "url.path").unwrap().starts_with("/é/é"));
    let total: usize = span
        .attributes
        .iter()
        .map(|attribute| attribute.value.as_str().len())
        .sum();
    assert!(total < 16 * 1024, "{total} bytes of attributes");

    for (method, recorded, original) in [
        ("PATCH", "PATCH", None),
        ("OPTIONS", "OPTIONS", None),
        ("get", "_OTHER", Some("get")),
        ("PURGE", "_OTHER", Some("PURGE")),
    ] {
        let event = json!({
            "version": "2.0",
            "rawPath": "/orders",
            "requestContext": {"http": {"method": method, "path": "/orders"}},
        });
        let span = invocation_span(event, json!({"statusCode": 200})).await;
        assert_eq!(
            text(&span, "http.request.method").as_deref(),
            Some(recorded),
            "{method}"
        );
        assert_eq!(
            text(&span, "http.request.method_original").as_deref(),
            original,
            "{method}"
        );
    }
}

fn trigger_attributes(span: &opentelemetry_sdk::trace::SpanData) -> Value {
    json!({
        "faas.trigger": text(span, "faas.trigger"),
        "messaging.system": text(span, "messaging.system"),
        "messaging.operation.type": text(span, "messaging.operation.type"),
    })
}

fn trigger(faas: &str) -> Value {
    json!({"faas.trigger": faas, "messaging.system": null, "messaging.operation.type": null})
}

#[tokio::test]
async fn events_of_queues_topics_streams_tables_buckets_and_schedules_name_their_trigger() {
    // The semantic conventions for AWS Lambda: an SQS event is `pubsub`, with
    // `messaging.system = aws_sqs` and `messaging.operation.type = process`.
    let sqs_event = json!({"Records": [
        {"messageId": "m-1", "body": "{}", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:orders"},
        {"messageId": "m-2", "body": "{}", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:orders"},
    ]});
    let sqs = json!({"faas.trigger": "pubsub", "messaging.system": "aws_sqs",
                     "messaging.operation.type": "process"});
    let sns_event = json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
        "Sns": {"Message": "hello", "MessageId": "n-1"}}]});
    let kinesis_event = json!({"Records": [{"eventSource": "aws:kinesis",
        "kinesis": {"data": "e30=", "sequenceNumber": "1", "partitionKey": "p"}}]});
    let dynamodb_event = json!({"Records": [{"eventSource": "aws:dynamodb",
        "eventName": "INSERT", "dynamodb": {"Keys": {"id": {"S": "1"}}}}]});
    let s3_event = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]});
    let scheduled = json!({"version": "0", "id": "e-1", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-12-04T05:00:00Z",
        "region": "eu-west-1", "resources": ["arn:aws:events:eu-west-1:123456789012:rule/nightly"],
        "detail": {}});
    let custom_bus_event = json!({"version": "0", "id": "e-2", "detail-type": "OrderPlaced",
        "source": "shop.orders", "detail": {"id": 1}});
    // Kafka (MSK or self-managed), Amazon MQ and DocumentDB name their source at the top.
    let kafka = |source: &str| {
        json!({"eventSource": source, "bootstrapServers": "b-1:9092",
               "records": {"orders-0": [{"topic": "orders", "partition": 0, "offset": 15,
                                         "value": "e30="}]}})
    };
    let activemq = json!({"eventSource": "aws:mq",
        "eventSourceArn": "arn:aws:mq:eu-west-1:123456789012:broker:orders:b-1",
        "messages": [{"messageID": "ID:1", "data": "e30="}]});
    let rabbitmq = json!({"eventSource": "aws:rmq",
        "eventSourceArn": "arn:aws:mq:eu-west-1:123456789012:broker:orders:b-2",
        "rmqMessagesByQueue": {"orders::/": [{"data": "e30="}]}});
    let documentdb = json!({"eventSource": "aws:docdb",
        "eventSourceArn": "arn:aws:rds:eu-west-1:123456789012:cluster:orders",
        "events": [{"event": {"operationType": "insert", "_id": {"_data": "0163"},
                              "clusterTime": {"$timestamp": {"t": 1, "i": 1}},
                              "ns": {"db": "shop", "coll": "orders"}}}]});
    for (event, expected) in [
        (kafka("aws:kafka"), "pubsub"),
        (kafka("SelfManagedKafka"), "pubsub"),
        (activemq, "pubsub"),
        (rabbitmq, "pubsub"),
        (documentdb, "datasource"),
    ] {
        assert_eq!(
            trigger_of(event.clone()).await,
            trigger(expected),
            "{event}"
        );
    }
    for (event, expected) in [
        (sqs_event, sqs.clone()),
        (sns_event, trigger("pubsub")),
        (kinesis_event, trigger("pubsub")),
        (dynamodb_event, trigger("datasource")),
        (s3_event, trigger("datasource")),
        (scheduled, trigger("timer")),
        // What the event does not say stays `other`: a custom EventBridge event, an empty
        // batch, a record without a source, a source of another kind or case.
        (custom_bus_event, trigger("other")),
        (json!({"Records": []}), trigger("other")),
        (json!({"Records": [{"body": "{}"}]}), trigger("other")),
        (
            json!({"Records": [{"eventSource": "aws:SQS"}]}),
            trigger("other"),
        ),
        (json!({"Records": [{"eventSource": 7}]}), trigger("other")),
        (
            json!({"Records": {"eventSource": "aws:sqs"}}),
            trigger("other"),
        ),
        (
            json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
            trigger("timer"),
        ),
        (json!("aws:sqs"), trigger("other")),
        (json!(null), trigger("other")),
    ] {
        assert_eq!(trigger_of(event.clone()).await, expected, "{event}");
    }

    // The typed events of `aws_lambda_events` say the same
    #[cfg(feature = "aws-lambda-events")]
    {
        use aws_lambda_events::{
            activemq::ActiveMqEvent, cloudwatch_events::CloudWatchEvent,
            documentdb::DocumentDbEvent, dynamodb, eventbridge::EventBridgeEvent,
            kafka::KafkaEvent, kinesis::KinesisEvent, rabbitmq::RabbitMqEvent, s3::S3Event,
            sns::SnsEvent, sns::SnsEventObj, sqs::SqsEvent, sqs::SqsEventObj,
        };
        #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
        struct Order {
            id: u32,
        }
        let bus_event = |detail_type: &str, source: &str| {
            json!({"version": "0", "id": "e-1", "detail-type": detail_type, "source": source,
                   "account": "123456789012", "time": "2026-12-04T05:00:00Z",
                   "region": "eu-west-1", "resources": [], "detail": {}})
        };
        fn read<T: serde::de::DeserializeOwned>(event: Value) -> T {
            serde_json::from_value(event).expect("an EventBridge event")
        }
        let scheduled: EventBridgeEvent = read(bus_event("Scheduled Event", "aws.events"));
        let custom: EventBridgeEvent = read(bus_event("OrderPlaced", "shop.orders"));
        let classic: CloudWatchEvent = read(bus_event("Scheduled Event", "aws.events"));
        for (found, expected, what) in [
            (
                trigger_of(SqsEvent::default()).await,
                sqs.clone(),
                "SqsEvent",
            ),
            (
                trigger_of(SqsEventObj::<Order>::default()).await,
                sqs,
                "SqsEventObj",
            ),
            (
                trigger_of(SnsEvent::default()).await,
                trigger("pubsub"),
                "SnsEvent",
            ),
            (
                trigger_of(SnsEventObj::<Order>::default()).await,
                trigger("pubsub"),
                "SnsEventObj",
            ),
            (
                trigger_of(KinesisEvent::default()).await,
                trigger("pubsub"),
                "KinesisEvent",
            ),
            (
                trigger_of(KafkaEvent::default()).await,
                trigger("pubsub"),
                "KafkaEvent",
            ),
            (
                trigger_of(ActiveMqEvent::default()).await,
                trigger("pubsub"),
                "ActiveMqEvent",
            ),
            (
                trigger_of(RabbitMqEvent::default()).await,
                trigger("pubsub"),
                "RabbitMqEvent",
            ),
            (
                trigger_of(dynamodb::Event::default()).await,
                trigger("datasource"),
                "dynamodb::Event",
            ),
            (
                trigger_of(S3Event::default()).await,
                trigger("datasource"),
                "S3Event",
            ),
            (
                trigger_of(DocumentDbEvent::default()).await,
                trigger("datasource"),
                "DocumentDbEvent",
            ),
            (
                trigger_of(scheduled).await,
                trigger("timer"),
                "EventBridgeEvent",
            ),
            (
                trigger_of(custom).await,
                trigger("other"),
                "custom EventBridgeEvent",
            ),
            (
                trigger_of(classic).await,
                trigger("timer"),
                "CloudWatchEvent",
            ),
        ] {
            assert_eq!(found, expected, "{what}");
        }
    }
}

/// The trigger attributes of an invocation of `event`.
async fn trigger_of<T: Send + 'static>(event: T) -> Value {
    trigger_attributes(&invocation_span(event, Value::Null).await)
}

#[tokio::test]
async fn an_explicit_trigger_keeps_what_the_event_says_about_its_queue() {
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer)
        .trigger("datasource")
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }));
    let event = json!({"Records": [{"messageId": "m-1", "body": "{}", "eventSource": "aws:sqs"}]});
    service
        .oneshot(TestContext::new().with_function_name("orders").event(event))
        .await
        .unwrap();
    let span = recorder.span("orders");
    assert_eq!(
        trigger_attributes(&span),
        json!({"faas.trigger": "datasource", "messaging.system": "aws_sqs",
               "messaging.operation.type": "process"})
    );
}

#[tokio::test]
async fn a_5xx_response_marks_the_span_as_an_error() {
    let event = json!({
        "version": "2.0",
        "routeKey": "GET /orders",
        "rawPath": "/orders",
        "requestContext": {"http": {"method": "GET", "path": "/orders"}},
    });
    let span = invocation_span(event.clone(), json!({"statusCode": 503})).await;
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    let span = invocation_span(event, json!({"statusCode": 404})).await;
    assert_eq!(
        span.status,
        Status::Unset,
        "a client error is not the server's"
    );
}

// Without the feature the layer does not know the `aws_lambda_events` types.
#[cfg(feature = "aws-lambda-events")]
#[tokio::test]
async fn http_invocations_get_the_http_server_attributes_from_typed_events() {
    let request: ApiGatewayV2httpRequest = serde_json::from_value(json!({
        "version": "2.0",
        "routeKey": "GET /orders/{id}",
        "rawPath": "/orders/42",
        "headers": {},
        "requestContext": {
            "routeKey": "GET /orders/{id}",
            "http": {"method": "GET", "path": "/orders/42", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"},
        },
        "isBase64Encoded": false,
    }))
    .unwrap();
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = 200;
    let span = invocation_span(request, response).await;
    assert_eq!(
        http_attributes(&span),
        json!({"faas.trigger": "http", "http.request.method": "GET", "url.path": "/orders/42",
               "http.route": "/orders/{id}", "http.response.status_code": "200"})
    );
}

#[tokio::test]
async fn cold_start_and_service_are_x_ray_annotations() {
    let span = invocation_span(json!({}), Value::Null).await;
    assert_eq!(attribute(&span, "Service"), Some("orders".into()));
    assert!(matches!(
        attribute(&span, "ColdStart"),
        Some(opentelemetry::Value::Bool(_))
    ));
    assert_eq!(
        strings(&span, "aws.xray.annotations"),
        Some(vec!["ColdStart".to_owned(), "Service".to_owned()])
    );
    assert_eq!(attribute_count(&span, "aws.xray.annotations"), 1);
}

#[tokio::test]
async fn annotations_go_on_the_invocation_span_and_are_listed_for_x_ray() {
    // Given a handler that annotates from a child span
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
        let recorded = tracing::info_span!("validate").in_scope(|| {
            [
                annotate("order_id", "o-41"),
                annotate("items", 3_u32),
                annotate("express", true),
                annotate("total", 12.5),
                // annotating a key again replaces its value
                annotate("order_id", "o-42".to_owned()),
                // the layer's own keys, and an empty one, are refused
                annotate("ColdStart", false),
                annotate("Service", "other"),
                annotate("aws.xray.annotations", "order_id"),
                annotate("", 1),
            ]
        });
        Ok::<_, lambda_runtime::Error>(json!(recorded))
    }));

    // When it is invoked
    let recorded = service
        .oneshot(
            TestContext::new()
                .with_function_name("orders")
                .event(json!({})),
        )
        .await
        .unwrap();

    // Then the annotations are attributes of the invocation span, listed after ColdStart and
    // Service in aws.xray.annotations, each once
    assert_eq!(
        recorded,
        json!([true, true, true, true, true, false, false, false, false])
    );
    let span = recorder.span("orders");
    assert_eq!(text(&span, "order_id").as_deref(), Some("o-42"));
    assert_eq!(attribute(&span, "items"), Some(3_i64.into()));
    assert_eq!(attribute(&span, "express"), Some(true.into()));
    assert_eq!(attribute(&span, "total"), Some(12.5.into()));
    assert_eq!(text(&span, "Service").as_deref(), Some("orders"));
    assert_eq!(
        strings(&span, "aws.xray.annotations"),
        Some(
            [
                "ColdStart",
                "Service",
                "order_id",
                "items",
                "express",
                "total"
            ]
            .map(str::to_owned)
            .to_vec()
        )
    );
    for key in ["order_id", "Service", "ColdStart", "aws.xray.annotations"] {
        assert_eq!(attribute_count(&span, key), 1, "{key}");
    }
    assert_eq!(attribute(&recorder.span("validate"), "order_id"), None);
}

#[tokio::test]
async fn outside_an_invocation_or_with_tracing_off_nothing_is_annotated() {
    assert!(!annotate("order_id", "o-1"), "no subscriber");
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(tracer(&recorder).subscriber());
    assert!(!annotate("order_id", "o-1"), "no span");
    tracing::info_span!("batch").in_scope(|| {
        assert!(!annotate("order_id", "o-1"), "a span of no invocation");
    });

    let disabled = powertools_tracing::Tracer::builder()
        .disabled(true)
        .build()
        .unwrap();
    let service =
        TracingLayer::new(disabled).layer(service_fn(|_event: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(json!(annotate("order_id", "o-2")))
        }));
    let annotated = service
        .oneshot(TestContext::new().event(json!({})))
        .await
        .unwrap();
    assert_eq!(annotated, false);
}

#[tokio::test]
async fn concurrent_invocations_annotate_their_own_spans() {
    // Given invocations that interleave on one thread, each annotating its own order
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer).layer(service_fn(|event: LambdaEvent<Value>| async move {
            let order = event.payload["order"].as_u64().unwrap();
            for step in 0..3_u64 {
                tokio::task::yield_now().await;
                annotate("order", order as i64);
                annotate("step", step as i64);
                tracing::info_span!("step").in_scope(|| annotate("last_step_of", order as i64));
            }
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }));

    // When they run at once
    let calls = (0..20_u64).map(|order| {
        let context = TestContext::new()
            .with_function_name("orders")
            .with_request_id(format!("req-{order}"));
        service
            .clone()
            .oneshot(context.event(json!({"order": order})))
    });
    for result in futures_util::future::join_all(calls).await {
        result.unwrap();
    }

    // Then each invocation span carries its own annotations only
    let spans = recorder.spans();
    let invocations: Vec<_> = spans.iter().filter(|span| span.name == "orders").collect();
    assert_eq!(invocations.len(), 20);
    for span in invocations {
        let request = text(span, "faas.invocation_id").unwrap();
        let order = attribute(span, "order").unwrap();
        assert_eq!(format!("req-{order}"), request);
        assert_eq!(attribute(span, "last_step_of"), Some(order));
        assert_eq!(attribute(span, "step"), Some(2_i64.into()));
        assert_eq!(attribute_count(span, "order"), 1);
        assert_eq!(
            strings(span, "aws.xray.annotations"),
            Some(
                ["ColdStart", "Service", "order", "step", "last_step_of"]
                    .map(str::to_owned)
                    .to_vec()
            )
        );
    }
}

#[tokio::test]
async fn an_invocation_dropped_before_its_handler_ends_keeps_its_annotations() {
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer).layer(service_fn(|_event: LambdaEvent<Value>| async {
        annotate("order_id", "o-9");
        std::future::pending::<()>().await;
        Ok::<_, lambda_runtime::Error>(Value::Null)
    }));
    let call = service.oneshot(
        TestContext::new()
            .with_function_name("orders")
            .event(json!({})),
    );
    // An outer timeout drops the invocation's future.
    tokio::time::timeout(std::time::Duration::from_millis(20), call)
        .await
        .unwrap_err();
    let span = recorder.span("orders");
    assert_eq!(
        strings(&span, "aws.xray.annotations"),
        Some(
            ["ColdStart", "Service", "order_id"]
                .map(str::to_owned)
                .to_vec()
        )
    );
    assert_eq!(text(&span, "order_id").as_deref(), Some("o-9"));
}

#[derive(Debug, Clone)]
enum OrderError {
    OutOfStock(u32),
}

impl From<OrderError> for Diagnostic {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::OutOfStock(item) => Diagnostic {
                error_type: "OutOfStock".to_owned(),
                error_message: format!("item {item} is out of stock"),
            },
        }
    }
}

#[tokio::test]
async fn an_error_of_the_users_is_described_as_lambda_reports_it_through_the_hook() {
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer)
        .error_diagnostic(|error: &OrderError| Diagnostic::from(error.clone()))
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            Err::<Value, _>(OrderError::OutOfStock(12))
        }));
    let error = service
        .oneshot(
            TestContext::new()
                .with_function_name("orders")
                .event(json!({})),
        )
        .await
        .unwrap_err();
    let lambda = Diagnostic::from(error);
    let span = recorder.span("orders");
    assert_eq!(
        exception(&span),
        Some((lambda.error_type.clone(), lambda.error_message.clone()))
    );
    assert_eq!(lambda.error_type, "OutOfStock");
    assert_eq!(span.status, Status::error("item 12 is out of stock"));
}

struct Checkout {
    verb: &'static str,
    path: &'static str,
}

#[tokio::test]
async fn an_event_of_the_users_gives_its_http_request_through_the_hook() {
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer)
        .http_request(|event: &Checkout| {
            Some(
                HttpRequest::new(event.verb)
                    .with_path(event.path)
                    .with_route("/checkout/{cart}"),
            )
        })
        .layer(service_fn(|_event: LambdaEvent<Checkout>| async {
            Ok::<_, lambda_runtime::Error>(json!({"statusCode": 302}))
        }));
    let context = TestContext::new().with_function_name("orders-api").build();
    let event = Checkout {
        verb: "PUT",
        path: "/checkout/c-1",
    };
    service
        .oneshot(LambdaEvent::new(event, context))
        .await
        .unwrap();
    assert_eq!(
        http_attributes(&recorder.span("orders-api")),
        json!({"faas.trigger": "http", "http.request.method": "PUT", "url.path": "/checkout/c-1",
               "http.route": "/checkout/{cart}", "http.response.status_code": "302"})
    );
}

#[tokio::test]
async fn an_explicit_trigger_wins_over_the_events_shape() {
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service = TracingLayer::new(tracer)
        .trigger("pubsub")
        .layer(service_fn(|_event: LambdaEvent<Value>| async {
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }));
    let event = json!({"httpMethod": "GET", "path": "/", "requestContext": {}});
    service
        .oneshot(TestContext::new().with_function_name("orders").event(event))
        .await
        .unwrap();
    let span = recorder.span("orders");
    assert_eq!(text(&span, "faas.trigger").as_deref(), Some("pubsub"));
    assert_eq!(text(&span, "http.request.method").as_deref(), Some("GET"));
}

#[tokio::test]
async fn a_queued_exporter_gets_the_invocations_spans_in_one_batch_at_its_end() {
    // Given a tracer that drives an exporter of the caller's as it drives OTLP
    let recorder = Recorder::default();
    let tracer = powertools_tracing::Tracer::builder()
        .service("orders")
        .env(powertools_core::env::Env::empty())
        .queued_exporter(recorder.clone())
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let seen_in_handler = recorder.clone();
    let service = TracingLayer::new(tracer).layer(service_fn(move |_event: LambdaEvent<Value>| {
        let seen = seen_in_handler.clone();
        async move {
            tracing::info_span!("bake").in_scope(|| {});
            // The child span has ended, and waits in the queue
            Ok::<_, lambda_runtime::Error>(json!({"exported_so_far": seen.spans().len()}))
        }
    }));

    // When it is invoked (outside Lambda: no extension, so the layer flushes before returning)
    let response = service
        .oneshot(
            TestContext::new()
                .with_function_name("orders-api")
                .event(json!({})),
        )
        .await
        .unwrap();

    // Then nothing was exported during the invocation, and both spans were by its end
    assert_eq!(response["exported_so_far"], 0);
    let spans = recorder.spans();
    assert_eq!(names(&spans), ["bake", "orders-api"]);
    assert_eq!(spans[0].parent_span_id, spans[1].span_context.span_id());
}

/// A `TracingLayer` inside another (the facade's stack around a layer of your own, or the stack
/// applied twice) records no second invocation span: two counted the cold start twice in X-Ray,
/// and `annotate` reached only the inner one (found by an attack from the docs). The handler's
/// spans and annotations go to the one invocation span.
#[tokio::test]
async fn a_tracing_layer_inside_another_records_one_invocation_span() {
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let inner =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_: LambdaEvent<Value>| async {
            assert!(powertools_tracing::annotate("order_id", "o-1"));
            tracing::info_span!("charge").in_scope(|| {});
            Ok::<_, lambda_runtime::Error>(json!({}))
        }));
    let service = TracingLayer::new(tracer).layer(inner);
    let context = TestContext::new()
        .with_function_name("orders-api")
        .with_cold_start(true)
        .build();
    service
        .oneshot(LambdaEvent::new(json!({}), context))
        .await
        .unwrap();
    let spans = recorder.spans();
    let invocations: Vec<&opentelemetry_sdk::trace::SpanData> = spans
        .iter()
        .filter(|span| span.name == "orders-api")
        .collect();
    assert_eq!(invocations.len(), 1, "{:?}", names(&spans));
    let invocation = invocations[0];
    assert_eq!(attribute_count(invocation, "ColdStart"), 1);
    assert_eq!(text(invocation, "order_id").as_deref(), Some("o-1"));
    let charge = recorder.span("charge");
    assert_eq!(charge.parent_span_id, invocation.span_context.span_id());
}

/// An invocation whose future is dropped before it completes (a timeout outside the layer):
/// its span ends in error, saying so, where it ended `Unset`, as a success reads in a trace
/// (found by an attack from the docs: "nothing is dropped without a word").
#[tokio::test]
async fn an_invocation_cancelled_from_outside_ends_its_span_in_error() {
    let recorder = Recorder::default();
    let tracer = tracer(&recorder);
    let _guard = tracing::subscriber::set_default(tracer.subscriber());
    let service =
        TracingLayer::new(tracer.clone()).layer(service_fn(|_event: LambdaEvent<Value>| async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            Ok::<_, lambda_runtime::Error>(Value::Null)
        }));
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        service.oneshot(
            TestContext::new()
                .with_function_name("orders")
                .event(Value::Null),
        ),
    )
    .await;
    assert!(cancelled.is_err(), "the timeout fired");
    tracer.flush().await;
    let span = recorder.span("orders");
    match &span.status {
        Status::Error { description } => {
            assert!(description.contains("cancelled"), "{description}");
        }
        other => panic!("{other:?}"),
    }
}
