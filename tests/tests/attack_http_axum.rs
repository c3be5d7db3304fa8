//! Adversarial tests of `examples/http-axum`, written from its README only, as a client and as
//! an attacker would use it: hostile bodies, keys and headers through API Gateway HTTP API (v2)
//! events under the `cargo lambda` emulator against moto, and the start-up failure path of the
//! built binary.
//!
//! Run with
//! `(cd examples/http-axum && cargo build -q --bin http-axum) && scripts/with-test-services cargo nextest run -p powertools-tests --test attack_http_axum`.

// Test code: a failed expectation is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use powertools_tests::{
    EmulatedFunction, create_idempotency_table, dynamodb_client, required_service, runner_env,
};
use serde_json::{Value, json};

const ORDER: &str = r#"{"customer_id":"c-42","items":[{"sku":"sourdough","quantity":2,"unit_price_cents":650},{"sku":"croissant","quantity":4,"unit_price_cents":225}]}"#;

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/http-axum")
}

struct Harness {
    function: EmulatedFunction,
    table: String,
    client: aws_sdk_dynamodb::Client,
    runtime: tokio::runtime::Runtime,
}

fn start() -> Option<Harness> {
    let otlp = required_service("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(dynamodb_client())?;
    let table = runtime.block_on(create_idempotency_table(&client));
    let function = EmulatedFunction::start_with_watch_args(
        &example_dir(),
        "http-axum",
        &[
            ("IDEMPOTENCY_TABLE", table.as_str()),
            ("POWERTOOLS_SERVICE_NAME", "orders-http"),
            ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ],
        &runner_env("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
    )?;
    Some(Harness {
        function,
        table,
        client,
        runtime,
    })
}

impl Harness {
    /// Items in the idempotency table.
    fn records(&self) -> usize {
        let output = self
            .runtime
            .block_on(
                self.client
                    .scan()
                    .table_name(&self.table)
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .send(),
            )
            .unwrap();
        usize::try_from(output.count()).unwrap()
    }

    fn call(&self, what: &str, event: &Value) -> Http {
        let result = self.function.invoke(event);
        let body = result.body;
        if result.status != 200 {
            return Http {
                what: what.to_owned(),
                failed: Some(format!("invoke answered {}: {body}", result.status)),
                status: 0,
                headers: BTreeMap::new(),
                body: String::new(),
            };
        }
        let status = body["statusCode"]
            .as_u64()
            .and_then(|status| u16::try_from(status).ok());
        let Some(status) = status else {
            return Http {
                what: what.to_owned(),
                failed: Some(format!("not a proxy response: {body}")),
                status: 0,
                headers: BTreeMap::new(),
                body: String::new(),
            };
        };
        let mut headers = BTreeMap::new();
        if let Some(map) = body["headers"].as_object() {
            for (name, value) in map {
                headers.insert(
                    name.to_ascii_lowercase(),
                    value.as_str().unwrap_or_default().to_owned(),
                );
            }
        }
        if let Some(map) = body["multiValueHeaders"].as_object() {
            for (name, values) in map {
                let joined: Vec<&str> = values
                    .as_array()
                    .map(|values| values.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                headers
                    .entry(name.to_ascii_lowercase())
                    .or_insert_with(|| joined.join(","));
            }
        }
        let mut text = body["body"].as_str().unwrap_or_default().to_owned();
        if body["isBase64Encoded"].as_bool() == Some(true) {
            text = String::from_utf8_lossy(&base64_decode(&text).unwrap_or_default()).into_owned();
        }
        Http {
            what: what.to_owned(),
            failed: None,
            status,
            headers,
            body: text,
        }
    }
}

#[derive(Debug)]
struct Http {
    what: String,
    failed: Option<String>,
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Http {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    fn order_id(&self) -> Option<String> {
        self.json()?["order_id"].as_str().map(str::to_owned)
    }

    fn short(&self) -> String {
        let body: String = self.body.chars().take(300).collect();
        format!(
            "{}: failed={:?} status={} headers={:?} body={body:?} ({} bytes)",
            self.what,
            self.failed,
            self.status,
            self.headers,
            self.body.len()
        )
    }
}

/// Collects broken expectations so that one run reports all of them.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            let message = message();
            eprintln!("FINDING: {message}");
            self.0.push(message);
        }
    }

    /// Never a failed invocation, never a 5xx, always a bounded answer.
    fn sane(&mut self, response: &Http) {
        eprintln!("{}", response.short());
        self.check(response.failed.is_none(), || {
            format!("failed invocation for hostile input: {}", response.short())
        });
        self.check(response.failed.is_some() || response.status < 500, || {
            format!("5xx for hostile input: {}", response.short())
        });
        self.check(response.body.len() <= 4096, || {
            format!("unbounded answer: {}", response.short())
        });
    }

    /// A refusal before the claim: 400 with a JSON error body that echoes nothing.
    fn refused_400(&mut self, response: &Http, marker: Option<&str>) {
        self.sane(response);
        self.check(response.status == 400, || {
            format!("expected 400: {}", response.short())
        });
        self.check(response.json().is_some_and(|body| body.is_object()), || {
            format!("refusal without a JSON error body: {}", response.short())
        });
        if let Some(marker) = marker {
            self.no_echo(response, marker);
        }
    }

    fn no_echo(&mut self, response: &Http, marker: &str) {
        self.check(!response.body.contains(marker), || {
            format!("answer echoes the request ({marker}): {}", response.short())
        });
        self.check(
            response.headers.values().all(|v| !v.contains(marker)),
            || {
                format!(
                    "answer headers echo the request ({marker}): {}",
                    response.short()
                )
            },
        );
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} broken expectations:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(1);

fn api_request_id() -> String {
    format!(
        "atk-{}-{}",
        NEXT.fetch_add(1, Ordering::SeqCst),
        uuid::Uuid::new_v4().simple()
    )
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// An API Gateway HTTP API (payload 2.0) event shaped as events/place-order.json.
fn v2_event(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    base64: bool,
    request_id: &str,
) -> Value {
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        header_map.insert((*name).to_owned(), Value::String((*value).to_owned()));
    }
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bakery",
            "domainName": "bakery.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "bakery",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0"
            },
            "requestId": request_id,
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "01/Dec/2026:09:15:02 +0000",
            "timeEpoch": 1_796_116_502_000_u64
        },
        "body": body,
        "isBase64Encoded": base64
    })
}

fn post_order(key: Option<&str>, body: &str) -> Value {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    v2_event(
        "POST",
        "/orders",
        &headers,
        Some(body),
        false,
        &api_request_id(),
    )
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = B64.iter().position(|b| *b == c)?;
        bits = (bits << 6) | u32::try_from(value).ok()?;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// The function's own JSON lines (log lines and EMF documents), each a JSON object: a line of
/// the function's output that starts with `{` and does not parse is a broken log line.
fn check_function_lines(function: &EmulatedFunction, findings: &mut Findings) -> Vec<Value> {
    let mut lines = Vec::new();
    for line in function.output().lines() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('{') {
            continue;
        }
        match serde_json::from_str::<Value>(trimmed) {
            Ok(value) if value.is_object() => lines.push(value),
            _ => findings.check(false, || {
                format!("a function line is not one JSON object: {line:?}")
            }),
        }
    }
    lines
}

/// Log lines written while handling an invocation carry its request id and a correlation id.
fn check_log_context(lines: &[Value], findings: &mut Findings) {
    for line in lines {
        if line.get("_aws").is_some() || line.get("level").is_none() {
            continue;
        }
        let in_invocation = line.get("function_request_id").is_some()
            || line.get("correlation_id").is_some()
            || line.get("xray_trace_id").is_some();
        if !in_invocation {
            continue;
        }
        findings.check(
            line["function_request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            || format!("log line without the invocation's request id: {line}"),
        );
    }
}

fn order_with(customer: &str, quantity: &str, price: &str) -> String {
    format!(
        r#"{{"customer_id":{customer},"items":[{{"sku":"sourdough","quantity":{quantity},"unit_price_cents":{price}}}]}}"#
    )
}

/// README: "A request ... with a body that is not an order, or with an invalid order, is answered
/// 400 with a JSON error body and records nothing, so the client can fix it and retry with the
/// same key. No answer echoes the request."
#[test]
fn hostile_bodies_are_refused_with_400_json_record_nothing_and_never_fail() {
    let Some(harness) = start() else { return };
    let mut findings = Findings::default();
    let marker = unique("ZZECHO");

    // Warm up (cold start, build) with a health check.
    let health = harness.call(
        "health",
        &v2_event("GET", "/health", &[], None, false, &api_request_id()),
    );
    findings.sane(&health);
    findings.check(health.status == 200, || health.short());

    let before = harness.records();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_in_unknown = format!(
        r#"{{"customer_id":"c-1","items":[{{"sku":"s","quantity":1,"unit_price_cents":1}}],"x":{}{}}}"#,
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    let not_orders: Vec<(&str, String)> = vec![
        ("empty body", String::new()),
        ("whitespace", "   \n\t ".to_owned()),
        ("null", "null".to_owned()),
        ("truncated", "{".to_owned()),
        ("array", "[]".to_owned()),
        ("string", format!("\"{marker}\"")),
        ("number", "42".to_owned()),
        ("deeply nested array", deep),
        ("deeply nested unknown field", deep_in_unknown),
        ("NaN quantity", order_with("\"c-1\"", "NaN", "650")),
        ("Infinity price", order_with("\"c-1\"", "1", "Infinity")),
        ("1e400 quantity", order_with("\"c-1\"", "1e400", "650")),
        ("fractional quantity", order_with("\"c-1\"", "2.5", "650")),
        ("string quantity", order_with("\"c-1\"", "\"2\"", "650")),
        ("negative quantity", order_with("\"c-1\"", "-2", "650")),
        ("zero quantity", order_with("\"c-1\"", "0", "650")),
        ("negative price", order_with("\"c-1\"", "2", "-650")),
        ("null customer", order_with("null", "2", "650")),
        ("empty customer", order_with("\"\"", "2", "650")),
        (
            "customer with marker and control chars",
            order_with(&format!("\"{marker}\\u0000\\n\""), "NaN", "1"),
        ),
        (
            "marker in sku, missing fields",
            format!(r#"{{"customer_id":"c-1","items":[{{"sku":"{marker}"}}]}}"#),
        ),
        ("no items", r#"{"customer_id":"c-1","items":[]}"#.to_owned()),
        (
            "items not a list",
            r#"{"customer_id":"c-1","items":{}}"#.to_owned(),
        ),
        (
            "invalid UTF-8 escape",
            "{\"customer_id\":\"\\ud800\",\"items\":[]}".to_owned(),
        ),
        ("trailing garbage", format!("{ORDER}{marker}")),
        (
            "marker as a field name",
            format!(r#"{{"{marker}":1,"customer_id":[1,2],"items":[]}}"#),
        ),
    ];
    let mut refused_keys = Vec::new();
    for (what, body) in &not_orders {
        let key = unique("bad-body");
        let response = harness.call(what, &post_order(Some(&key), body));
        findings.refused_400(&response, Some(&marker));
        refused_keys.push(key);
    }

    // Bodies API Gateway could deliver base64-encoded.
    let response = harness.call(
        "base64 of binary garbage",
        &v2_event(
            "POST",
            "/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", &unique("b64")),
            ],
            Some(&base64_encode(&[0xff, 0xfe, 0x00, 0x7b, 0x80])),
            true,
            &api_request_id(),
        ),
    );
    findings.refused_400(&response, None);

    let after = harness.records();
    findings.check(after == before, || {
        format!("refused requests recorded something: {before} records before, {after} after")
    });

    // The README does not say what the content type does: an order without `content-type:
    // application/json` is never a 5xx (observed: it is placed as JSON whatever the type).
    for (what, content_type) in [
        ("no content type", None),
        ("text/plain", Some("text/plain")),
        ("form", Some("application/x-www-form-urlencoded")),
    ] {
        let key = unique("ct");
        let mut headers = vec![("idempotency-key", key.as_str())];
        if let Some(content_type) = content_type {
            headers.push(("content-type", content_type));
        }
        let response = harness.call(
            what,
            &v2_event(
                "POST",
                "/orders",
                &headers,
                Some(ORDER),
                false,
                &api_request_id(),
            ),
        );
        findings.sane(&response);
        findings.check(response.json().is_some(), || {
            format!("an answer without a JSON body: {}", response.short())
        });
    }

    // "so the client can fix it and retry with the same key"
    for key in refused_keys.iter().take(3) {
        let response = harness.call(
            "fixed retry with the same key",
            &post_order(Some(key), ORDER),
        );
        findings.sane(&response);
        findings.check(
            response.status == 201 && response.order_id().is_some(),
            || {
                format!(
                    "a fixed retry after a 400 was not placed: {}",
                    response.short()
                )
            },
        );
    }

    // Valid encodings of a valid order are orders.
    let response = harness.call(
        "base64 of a valid order",
        &v2_event(
            "POST",
            "/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", &unique("b64ok")),
            ],
            Some(&base64_encode(ORDER.as_bytes())),
            true,
            &api_request_id(),
        ),
    );
    findings.sane(&response);
    findings.check(response.status == 201, || {
        format!(
            "a base64-encoded order was not placed: {}",
            response.short()
        )
    });
    let response = harness.call(
        "charset parameter",
        &v2_event(
            "POST",
            "/orders",
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("idempotency-key", &unique("charset")),
            ],
            Some(ORDER),
            false,
            &api_request_id(),
        ),
    );
    findings.sane(&response);
    findings.check(response.status == 201, || {
        format!(
            "an order with a charset parameter was not placed: {}",
            response.short()
        )
    });

    // Orders that are valid JSON but push the arithmetic or the store: never a 5xx.
    let big = "18446744073709551615";
    for (what, body) in [
        (
            "u64::MAX quantity and price",
            order_with("\"c-1\"", big, big),
        ),
        (
            "i64::MAX quantity",
            order_with("\"c-1\"", "9223372036854775807", "2"),
        ),
        (
            "u32::MAX quantity and price",
            order_with("\"c-1\"", "4294967295", "4294967295"),
        ),
        (
            "unicode customer",
            order_with("\"c-\u{1F35E}-\u{202E}x\"", "1", "1"),
        ),
        (
            "450 KB customer id (over DynamoDB's item size if stored)",
            order_with(&format!("\"{}\"", "c".repeat(450 * 1024)), "1", "1"),
        ),
        (
            "20000 items",
            format!(
                r#"{{"customer_id":"c-1","items":[{}]}}"#,
                vec![r#"{"sku":"s","quantity":1,"unit_price_cents":1}"#; 20_000].join(",")
            ),
        ),
    ] {
        let response = harness.call(what, &post_order(Some(&unique("edge")), &body));
        findings.sane(&response);
    }

    // The largest orders the limits allow: if placed, the total is exact (no overflow, no wrap).
    for (what, quantity, price, items) in [
        (
            "50 x 1000 x u32::MAX",
            1000_u128,
            u128::from(u32::MAX),
            50_usize,
        ),
        (
            "1000 x i64::MAX",
            1000,
            u128::from(i64::MAX.unsigned_abs()),
            1,
        ),
        ("1000 x u64::MAX", 1000, u128::from(u64::MAX), 1),
        ("50 x 1000 x 2^53", 1000, 1_u128 << 53, 50),
        ("1 x u64::MAX", 1, u128::from(u64::MAX), 1),
    ] {
        let item =
            format!(r#"{{"sku":"sourdough","quantity":{quantity},"unit_price_cents":{price}}}"#);
        let body = format!(
            r#"{{"customer_id":"c-1","items":[{}]}}"#,
            vec![item; items].join(",")
        );
        let response = harness.call(what, &post_order(Some(&unique("big")), &body));
        findings.sane(&response);
        if response.status == 201 {
            let expected = quantity * price * items as u128;
            let total = response.json().map(|body| body["total_cents"].clone());
            findings.check(
                total.as_ref().and_then(Value::as_u64).map(u128::from) == Some(expected),
                || {
                    format!(
                        "{what}: total {total:?}, expected {expected}: {}",
                        response.short()
                    )
                },
            );
        }
    }

    let lines = check_function_lines(&harness.function, &mut findings);
    check_log_context(&lines, &mut findings);
    let _ = harness.function.emf_documents();
    findings.finish();
}

/// Events lambda_http cannot turn into a request: control characters in header values (which
/// API Gateway itself should not forward) and a body flagged base64 that is not base64 (a
/// Function URL or direct invoke can send one). Never a failed invocation for hostile input, and
/// the failure's log line carries the invocation's request id without a Debug dump.
/// Events `lambda_http` cannot read (a control character in a header, which API Gateway never
/// forwards; a body flagged base64 that is not; another trigger's event) fail the invocation
/// before the router runs, as the README says: never a 2xx that pretends, the input never echoed,
/// each failure logged as one JSON line with its request id, and the function goes on.
#[test]
fn events_lambda_http_cannot_read_fail_the_invocation_logged_with_their_request_id() {
    let Some(harness) = start() else { return };
    let mut findings = Findings::default();
    let warm = harness.call(
        "health",
        &v2_event("GET", "/health", &[], None, false, &api_request_id()),
    );
    findings.sane(&warm);

    let marker = unique("ZZCTL");
    let mut events = Vec::new();
    for (what, value) in [
        ("NUL", format!("k\u{0}{marker}")),
        ("newline", format!("k\n{marker}")),
        (
            "CRLF header injection",
            format!("k\r\nset-cookie: {marker}"),
        ),
        ("DEL", format!("k\u{7f}{marker}")),
    ] {
        events.push((
            format!("{what} in Idempotency-Key"),
            post_order(Some(&value), ORDER),
        ));
        events.push((
            format!("{what} in x-correlation-id"),
            v2_event(
                "GET",
                "/health",
                &[("x-correlation-id", value.as_str())],
                None,
                false,
                &api_request_id(),
            ),
        ));
    }
    events.push((
        "invalid base64".to_owned(),
        v2_event(
            "POST",
            "/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", &unique("b64")),
            ],
            Some("!!!not base64!!!"),
            true,
            &api_request_id(),
        ),
    ));
    events.push(("empty object".to_owned(), json!({})));
    events.push((
        "SQS-like event".to_owned(),
        json!({"Records": [{"body": ORDER}]}),
    ));
    for (what, event) in &events {
        let response = harness.call(what, event);
        findings.check(response.failed.is_some(), || {
            format!(
                "{what}: lambda_http cannot read it, yet it was answered: {}",
                response.short()
            )
        });
        findings.no_echo(&response, &marker);
        // `lambda_http` panics on a body flagged base64 that is not: Lambda is told `Panic`, as
        // the failure line says, not the panic payload's Rust type.
        if what == "invalid base64" {
            let failure = response.failed.as_deref().unwrap_or_default();
            findings.check(
                failure.contains(r#""errorType":"Panic""#) && !failure.contains("dyn core::any"),
                || format!("{what}: a panic is reported as Panic: {failure}"),
            );
        }
    }
    let alive = harness.call(
        "health after malformed events",
        &v2_event("GET", "/health", &[], None, false, &api_request_id()),
    );
    findings.sane(&alive);
    findings.check(alive.status == 200, || {
        format!("the function goes on: {}", alive.short())
    });

    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = check_function_lines(&harness.function, &mut findings);
    let errors: Vec<&Value> = lines
        .iter()
        .filter(|line| line["level"].as_str() == Some("ERROR"))
        .collect();
    for line in &errors {
        findings.check(
            line["function_request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            || format!("a failed invocation's log line without its request id: {line}"),
        );
        findings.check(!line.to_string().contains(&marker), || {
            format!("a failed invocation's log line echoes the header: {line}")
        });
    }
    findings.check(errors.len() >= events.len(), || {
        format!(
            "{} ERROR lines for {} failed invocations",
            errors.len(),
            events.len()
        )
    });
    findings.finish();
}

/// README: "A request without a usable key (1 to 128 characters of `A-Z a-z 0-9 - _`) ... is
/// answered 400 with a JSON error body and records nothing".
#[test]
fn idempotency_keys_at_the_boundary_and_hostile_keys() {
    let Some(harness) = start() else { return };
    let mut findings = Findings::default();
    let warm = harness.call(
        "health",
        &v2_event("GET", "/health", &[], None, false, &api_request_id()),
    );
    findings.sane(&warm);

    // At the boundary: 128 characters is a key, 129 is not.
    let seed = uuid::Uuid::new_v4().simple().to_string();
    let k128: String = format!("{seed}{}", "A-z_9".repeat(40))
        .chars()
        .take(128)
        .collect();
    let k129: String = format!("{seed}{}", "A-z_9".repeat(40))
        .chars()
        .take(129)
        .collect();
    let k1: String = seed.chars().take(1).collect::<String>();
    let response = harness.call("128-char key", &post_order(Some(&k128), ORDER));
    findings.sane(&response);
    findings.check(response.status == 201, || {
        format!("a 128-character key was refused: {}", response.short())
    });
    let response = harness.call("1-char key", &post_order(Some(&k1), ORDER));
    findings.sane(&response);
    findings.check(response.status == 201 || response.status == 422, || {
        format!("a 1-character key was refused: {}", response.short())
    });

    let before = harness.records();
    let marker = unique("ZZKEY").replace('-', "_");
    let long = "k".repeat(100_000);
    let bad_keys: Vec<(&str, String)> = vec![
        ("129-char key", k129),
        ("empty key", String::new()),
        ("space only", " ".to_owned()),
        ("inner space", format!("k {marker}")),
        ("trailing space", format!("k-{marker} ")),
        ("dot", format!("k.{marker}")),
        ("slash", format!("k/{marker}")),
        ("comma-joined duplicates", format!("k-{marker},k-2")),
        (
            "unicode",
            format!("k-\u{043A}\u{043B}\u{044E}\u{0447}-{marker}"),
        ),
        ("fullwidth digits", format!("k-\u{FF11}\u{FF12}-{marker}")),
        ("tab", format!("k\t{marker}")),
        ("100000 chars", long),
    ];
    for (what, key) in &bad_keys {
        let response = harness.call(what, &post_order(Some(key), ORDER));
        findings.refused_400(&response, Some(&marker));
        findings.check(!response.body.contains(&"k".repeat(200)), || {
            format!("answer echoes the long key: {}", response.short())
        });
    }
    let response = harness.call("no key", &post_order(None, ORDER));
    findings.refused_400(&response, None);
    let after = harness.records();
    findings.check(after == before, || {
        format!("requests with unusable keys recorded something: {before} before, {after} after")
    });

    // The key comes from the header only: a key in the query string is no key.
    let mut in_query = post_order(None, ORDER);
    in_query["rawQueryString"] = json!("idempotency-key=k-query-1&Idempotency-Key=k-query-1");
    in_query["queryStringParameters"] =
        json!({"idempotency-key": "k-query-1", "Idempotency-Key": "k-query-1"});
    let response = harness.call("key in the query string", &in_query);
    findings.refused_400(&response, None);

    // HTTP header names are case-insensitive: a client sending `Idempotency-Key` is keyed.
    let key = unique("Case");
    let event = v2_event(
        "POST",
        "/orders",
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", &key),
        ],
        Some(ORDER),
        false,
        &api_request_id(),
    );
    let first = harness.call("capitalised header", &event);
    findings.sane(&first);
    findings.check(first.status == 201, || {
        format!(
            "a capitalised Idempotency-Key header was not honoured: {}",
            first.short()
        )
    });
    let again = harness.call("lower-case header replay", &post_order(Some(&key), ORDER));
    findings.check(
        again.status == 201 && again.order_id() == first.order_id(),
        || {
            format!(
                "the same key in another header casing is not the same key: {} vs {}",
                first.short(),
                again.short()
            )
        },
    );

    // Two differently-cased copies of the header with different keys: never a 5xx, and never a
    // silent pick that changes from one retry to the next.
    let a = unique("dupa");
    let b = unique("dupb");
    let dup = v2_event(
        "POST",
        "/orders",
        &[
            ("content-type", "application/json"),
            ("Idempotency-Key", &a),
            ("idempotency-key", &b),
        ],
        Some(ORDER),
        false,
        &api_request_id(),
    );
    let first = harness.call("two keys, differently cased", &dup);
    findings.sane(&first);
    eprintln!("two keys in one request answered {}", first.short());
    if first.status == 201 {
        let retry = harness.call("two keys, retried", &dup);
        findings.check(
            retry.status == 201 && retry.order_id() == first.order_id(),
            || {
                format!(
                    "a request with two keys is not replayed on retry: {} then {}",
                    first.short(),
                    retry.short()
                )
            },
        );
    }

    // Keys are case-sensitive values: `K-ABC` and `k-abc` are different keys.
    let base = uuid::Uuid::new_v4().simple().to_string();
    let upper = format!("K-{}", base.to_ascii_uppercase());
    let lower = format!("k-{base}");
    let first = harness.call("upper-case key", &post_order(Some(&upper), ORDER));
    let other_order = ORDER.replace("\"quantity\":2", "\"quantity\":3");
    let second = harness.call(
        "lower-case key, other order",
        &post_order(Some(&lower), &other_order),
    );
    findings.sane(&first);
    findings.sane(&second);
    findings.check(
        first.status == 201 && second.status == 201 && first.order_id() != second.order_id(),
        || {
            format!(
                "keys differing only in case collide: {} / {}",
                first.short(),
                second.short()
            )
        },
    );

    let lines = check_function_lines(&harness.function, &mut findings);
    check_log_context(&lines, &mut findings);
    let _ = harness.function.emf_documents();
    findings.finish();
}

/// README: "a retry gets the first answer (the same `order_id`) without placing the order
/// again; the same key with another order is refused with 422 `IdempotencyKeyReused`; a
/// duplicate that arrives while the first is running gets 409 `RequestInProgress`", and the
/// correlation id is returned "in the response's `x-correlation-id` header".
#[test]
fn replays_reordered_orders_and_concurrent_duplicates_place_one_order() {
    let Some(harness) = start() else { return };
    let mut findings = Findings::default();
    let mut placed: Vec<String> = Vec::new();

    let key = unique("replay");
    let first_event = v2_event(
        "POST",
        "/orders",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", &key),
            ("x-correlation-id", "corr-first"),
        ],
        Some(ORDER),
        false,
        &api_request_id(),
    );
    let first = harness.call("first", &first_event);
    findings.sane(&first);
    findings.check(first.status == 201 && first.order_id().is_some(), || {
        format!("the first order was not placed: {}", first.short())
    });
    placed.extend(first.order_id());

    for i in 0..10 {
        let event = v2_event(
            "POST",
            "/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", &key),
                ("x-correlation-id", &format!("corr-retry-{i}")),
            ],
            Some(ORDER),
            false,
            &api_request_id(),
        );
        let retry = harness.call(&format!("retry {i}"), &event);
        findings.sane(&retry);
        findings.check(
            retry.status == first.status && retry.body == first.body,
            || {
                format!(
                    "retry {i} did not get the first answer: {} vs {}",
                    first.short(),
                    retry.short()
                )
            },
        );
        findings.check(
            retry.headers.get("x-correlation-id").map(String::as_str)
                == Some(format!("corr-retry-{i}").as_str()),
            || {
                format!(
                    "a replayed answer carries another request's correlation id: {}",
                    retry.short()
                )
            },
        );
    }

    // The same order, written differently, is the same order.
    let reordered = r#"{"items":[{"unit_price_cents":650,"quantity":2,"sku":"sourdough"},{"quantity":4,"sku":"croissant","unit_price_cents":225}],"customer_id":"c-42"}"#;
    let spaced =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(ORDER).unwrap()).unwrap();
    for (what, body, base64) in [
        ("reordered fields", reordered.to_owned(), false),
        ("pretty-printed", spaced, false),
        ("base64-encoded", base64_encode(ORDER.as_bytes()), true),
    ] {
        let event = v2_event(
            "POST",
            "/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", &key),
            ],
            Some(&body),
            base64,
            &api_request_id(),
        );
        let response = harness.call(what, &event);
        findings.sane(&response);
        findings.check(
            response.status == 201 && response.order_id() == first.order_id(),
            || {
                format!(
                    "the same order, {what}, is not replayed: {}",
                    response.short()
                )
            },
        );
    }

    // Another order with the key: 422 IdempotencyKeyReused, nothing placed, repeatable.
    let other = ORDER.replace("\"quantity\":2", "\"quantity\":20");
    for i in 0..3 {
        let response = harness.call(&format!("other order {i}"), &post_order(Some(&key), &other));
        findings.sane(&response);
        findings.check(
            response.status == 422 && response.body.contains("IdempotencyKeyReused"),
            || format!("another order under the key: {}", response.short()),
        );
    }
    let response = harness.call("first order again", &post_order(Some(&key), ORDER));
    findings.check(response.order_id() == first.order_id(), || {
        format!("after a 422 the first answer is gone: {}", response.short())
    });

    // Sixteen concurrent duplicates with eight invocations at once: one order placed.
    for round in 0..3 {
        let key = unique(&format!("conc{round}"));
        let responses: Vec<Http> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let harness = &harness;
                    let key = key.clone();
                    scope.spawn(move || {
                        harness.call(
                            &format!("concurrent {round}/{i}"),
                            &post_order(Some(&key), ORDER),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ids = Vec::new();
        for response in &responses {
            findings.sane(response);
            findings.check(
                response.status == 201
                    || (response.status == 409 && response.body.contains("RequestInProgress")),
                || {
                    format!(
                        "a concurrent duplicate got neither 201 nor 409: {}",
                        response.short()
                    )
                },
            );
            if response.status == 201 {
                ids.extend(response.order_id());
            }
        }
        ids.sort();
        ids.dedup();
        findings.check(ids.len() == 1, || {
            format!("{} different order ids for one key: {ids:?}", ids.len())
        });
        let settled = harness.call("after the storm", &post_order(Some(&key), ORDER));
        findings.check(
            settled.status == 201 && ids.first() == settled.order_id().as_ref(),
            || format!("after the concurrent duplicates: {}", settled.short()),
        );
        placed.extend(settled.order_id());
    }

    // Eight concurrent requests under one key, each with another order: exactly one placed,
    // the others 409 (in progress) or 422 (another order under the key).
    let key = unique("race");
    let responses: Vec<Http> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=8)
            .map(|quantity| {
                let harness = &harness;
                let key = key.clone();
                scope.spawn(move || {
                    let body = ORDER.replace("\"quantity\":2", &format!("\"quantity\":{quantity}"));
                    harness.call(
                        &format!("racing order {quantity}"),
                        &post_order(Some(&key), &body),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut winners = Vec::new();
    for response in &responses {
        findings.sane(response);
        findings.check(matches!(response.status, 201 | 409 | 422), || {
            format!(
                "a racing order got {}: {}",
                response.status,
                response.short()
            )
        });
        if response.status == 201 {
            winners.extend(response.order_id());
        }
    }
    winners.sort();
    winners.dedup();
    findings.check(winners.len() == 1, || {
        format!(
            "{} orders placed under one key by racing orders: {winners:?}",
            winners.len()
        )
    });
    placed.extend(winners);

    // Give the metrics a moment to be written, then count placements in logs and EMF.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let lines = check_function_lines(&harness.function, &mut findings);
    check_log_context(&lines, &mut findings);
    for order_id in &placed {
        let logged = lines
            .iter()
            .filter(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("order placed"))
                    && line.to_string().contains(order_id.as_str())
            })
            .count();
        findings.check(logged == 1, || {
            format!("{logged} `order placed` log lines for {order_id}")
        });
    }
    let placed_lines = lines
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.contains("order placed"))
        })
        .count();
    findings.check(placed_lines == placed.len(), || {
        format!(
            "{placed_lines} `order placed` log lines for {} distinct orders",
            placed.len()
        )
    });
    let documents = harness.function.emf_documents();
    let orders_placed: f64 = documents
        .iter()
        .filter_map(|document| match &document["OrdersPlaced"] {
            Value::Number(n) => n.as_f64(),
            Value::Array(values) => Some(values.iter().filter_map(Value::as_f64).sum()),
            _ => None,
        })
        .sum();
    #[allow(clippy::cast_precision_loss)]
    let expected = placed.len() as f64;
    findings.check((orders_placed - expected).abs() < f64::EPSILON, || {
        format!(
            "EMF OrdersPlaced sums to {orders_placed} for {} orders placed",
            placed.len()
        )
    });
    findings.finish();
}

/// README: "An axum middleware takes the caller's `x-correlation-id` header (when it is a valid
/// id), else API Gateway's request id, puts it on every log line (`correlation_id`) and returns
/// it in the response's `x-correlation-id` header." Also unknown routes, methods and other event
/// shapes: the function is behind an HTTP API.
#[test]
fn correlation_ids_routes_and_event_shapes() {
    let Some(harness) = start() else { return };
    let mut findings = Findings::default();

    let valid = harness.call(
        "valid correlation id",
        &v2_event(
            "GET",
            "/health",
            &[("x-correlation-id", "corr-2001")],
            None,
            false,
            &api_request_id(),
        ),
    );
    findings.sane(&valid);
    findings.check(
        valid.headers.get("x-correlation-id").map(String::as_str) == Some("corr-2001"),
        || format!("a valid correlation id is not returned: {}", valid.short()),
    );
    findings.check(valid.json() == Some(json!({"status": "ok"})), || {
        format!("health: {}", valid.short())
    });

    let marker = unique("ZZCORR");
    let hostile: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("spaces", "   ".to_owned()),
        ("10 KB", format!("{marker}{}", "c".repeat(10 * 1024))),
        (
            "non-ASCII",
            format!("{marker}-\u{043A}\u{043B}\u{044E}\u{0447}"),
        ),
        ("RTL override", format!("{marker}\u{202E}")),
        ("JSON injection", format!("{marker}\",\"level\":\"ERROR")),
        ("script", format!("<script>{marker}</script>")),
    ];
    for (what, value) in &hostile {
        for (method, path, body, key) in [
            ("GET", "/health", None, None),
            ("POST", "/orders", Some(ORDER), Some(unique("corr"))),
        ] {
            let request_id = api_request_id();
            let mut headers = vec![("x-correlation-id", value.as_str())];
            if let Some(key) = &key {
                headers.push(("idempotency-key", key.as_str()));
                headers.push(("content-type", "application/json"));
            }
            let response = harness.call(
                &format!("{what} correlation id on {method} {path}"),
                &v2_event(method, path, &headers, body, false, &request_id),
            );
            findings.sane(&response);
            findings.check(
                (method == "GET" && response.status == 200)
                    || (method == "POST" && response.status == 201),
                || {
                    format!(
                        "a hostile correlation id broke the request: {}",
                        response.short()
                    )
                },
            );
            findings.check(
                response.headers.get("x-correlation-id") == Some(&request_id),
                || {
                    format!(
                        "an invalid correlation id ({what}) is not replaced by the request id {request_id}: {}",
                        response.short()
                    )
                },
            );
            findings.no_echo(&response, &marker);
            let lines = check_function_lines(&harness.function, &mut findings);
            let tagged = lines
                .iter()
                .filter(|line| line["correlation_id"].as_str() == Some(request_id.as_str()))
                .count();
            // GET /health logs nothing of its own; the order route logs `order placed`.
            findings.check(method == "GET" || tagged > 0, || {
                format!("no log line has correlation_id {request_id} for the {what} id")
            });
        }
    }

    // Duplicate correlation headers in two casings: never a failure.
    let response = harness.call(
        "two correlation ids",
        &v2_event(
            "GET",
            "/health",
            &[
                ("X-Correlation-Id", "corr-a"),
                ("x-correlation-id", "corr-b"),
            ],
            None,
            false,
            &api_request_id(),
        ),
    );
    findings.sane(&response);

    // Unknown routes and methods: 404 and 405, never a 5xx, never echoing the path.
    let long_path = format!("/{marker}{}", "p".repeat(50_000));
    for (method, path, expected) in [
        ("GET", "/nope", Some(404)),
        ("GET", "/ORDERS", Some(404)),
        ("GET", long_path.as_str(), Some(404)),
        ("GET", "/orders/../health", None),
        ("GET", "/orders%00", None),
        ("GET", "/orders/", None),
        ("GET", "/orders", Some(405)),
        ("DELETE", "/orders", Some(405)),
        ("PUT", "/orders", Some(405)),
        ("POST", "/health", Some(405)),
        ("PATCH", "/health", Some(405)),
        ("OPTIONS", "/orders", None),
        ("HEAD", "/health", None),
        ("BREW", "/orders", None),
    ] {
        let response = harness.call(
            &format!("{method} {}", path.chars().take(40).collect::<String>()),
            &v2_event(
                method,
                path,
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", &unique("route")),
                ],
                Some(ORDER),
                false,
                &api_request_id(),
            ),
        );
        findings.sane(&response);
        if let Some(expected) = expected {
            findings.check(response.status == expected, || {
                format!("expected {expected}: {}", response.short())
            });
        }
        findings.no_echo(&response, &marker);
    }

    // Other event shapes. The README puts the function behind an HTTP API; what happens with a
    // REST API (v1) event, an ALB event and a non-HTTP event is reported, and the process must
    // survive them.
    let key = unique("v1");
    let rest_v1 = json!({
        "resource": "/orders", "path": "/orders", "httpMethod": "POST",
        "headers": {"content-type": "application/json", "idempotency-key": key},
        "multiValueHeaders": {"content-type": ["application/json"], "idempotency-key": [key]},
        "queryStringParameters": null, "multiValueQueryStringParameters": null,
        "pathParameters": null, "stageVariables": null,
        "requestContext": {"accountId": "123456789012", "resourceId": "r", "stage": "prod",
            "requestId": api_request_id(), "identity": {"sourceIp": "203.0.113.7"},
            "resourcePath": "/orders", "httpMethod": "POST", "apiId": "bakery",
            "path": "/prod/orders", "protocol": "HTTP/1.1", "requestTimeEpoch": 1_796_116_502_000_u64},
        "body": ORDER, "isBase64Encoded": false
    });
    let alb = json!({
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/t/1"}},
        "httpMethod": "POST", "path": "/orders", "queryStringParameters": {},
        "headers": {"content-type": "application/json", "idempotency-key": unique("alb")},
        "body": ORDER, "isBase64Encoded": false
    });
    for (what, event) in [
        ("REST API v1 event", rest_v1),
        ("ALB event", alb),
        ("SQS-like event", json!({"Records": [{"body": ORDER}]})),
        ("empty object", json!({})),
        ("JSON null", Value::Null),
        (
            "v2 without requestContext",
            json!({"version": "2.0", "rawPath": "/orders", "body": ORDER}),
        ),
    ] {
        let response = harness.call(what, &event);
        eprintln!("OUTCOME {what}: {}", response.short());
        if response.failed.is_none() {
            findings.check(response.status < 500, || {
                format!("{what} answered a 5xx: {}", response.short())
            });
        }
    }
    // An HTTP API stage other than `$default` puts the stage in the path API Gateway sends.
    let mut staged = v2_event(
        "POST",
        "/prod/orders",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", &unique("stage")),
        ],
        Some(ORDER),
        false,
        &api_request_id(),
    );
    staged["requestContext"]["stage"] = json!("prod");
    staged["routeKey"] = json!("POST /orders");
    staged["requestContext"]["routeKey"] = json!("POST /orders");
    let response = harness.call("named stage", &staged);
    eprintln!("OUTCOME named stage: {}", response.short());
    findings.sane(&response);

    let alive = harness.call(
        "health after odd events",
        &v2_event("GET", "/health", &[], None, false, &api_request_id()),
    );
    findings.sane(&alive);
    findings.check(alive.status == 200, || alive.short());

    let lines = check_function_lines(&harness.function, &mut findings);
    check_log_context(&lines, &mut findings);
    let _ = harness.function.emf_documents();
    findings.finish();
}

// ---------------------------------------------------------------------------------------------
// Start-up failure path: README (root) "stops at start with a message that names a bad setting
// and its fix"; powertools::error_report: "`main`'s default `Debug` output
// (`Error: Metrics(MissingNamespace)`) would hide them".

fn binary() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/http-axum");
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {} is not built (cd examples/http-axum && cargo build --bin http-axum)",
            path.display()
        );
        None
    }
}

/// Runs the binary outside Lambda (no runtime API, so no extension registration) with a good
/// environment changed by `changes` (`None` removes the variable).
fn run_binary(changes: &[(&str, Option<&str>)]) -> Option<(i32, String)> {
    let binary = binary()?;
    let mut env: BTreeMap<&str, &str> = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("IDEMPOTENCY_TABLE", "orders-idempotency"),
        ("POWERTOOLS_SERVICE_NAME", "orders-http"),
        ("POWERTOOLS_METRICS_NAMESPACE", "Bakery"),
    ]
    .into_iter()
    .collect();
    for (name, value) in changes {
        match value {
            Some(value) => env.insert(name, value),
            None => env.remove(name),
        };
    }
    let mut command = std::process::Command::new(binary);
    command.env_clear().envs(env);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.code().unwrap_or(-1), text))
}

fn assert_startup_refusal(changes: &[(&str, Option<&str>)], variable: &str) {
    let Some((code, output)) = run_binary(changes) else {
        return;
    };
    eprintln!("{changes:?} -> exit {code}: {output}");
    assert!(
        code != 0 && code != 101,
        "{changes:?}: expected a clean non-zero exit (not success, not a panic), got {code}: {output}"
    );
    assert!(
        !output.contains("panicked"),
        "{changes:?}: a panic instead of a message: {output}"
    );
    let debug_dump = output.lines().any(|line| {
        let line = line.trim_start_matches("Error: ");
        let mut chars = line.chars();
        chars.next().is_some_and(char::is_uppercase)
            && line
                .split_once('(')
                .is_some_and(|(head, _)| head.chars().all(char::is_alphanumeric))
    }) || output.contains(" { ");
    assert!(!debug_dump, "{changes:?}: a Debug dump: {output}");
    assert!(
        output.contains(variable),
        "{changes:?}: the message does not name {variable}: {output}"
    );
    assert!(
        output.len() < 2000,
        "{changes:?}: an unbounded message ({} bytes)",
        output.len()
    );
}

#[test]
fn startup_without_metrics_namespace_names_it() {
    assert_startup_refusal(
        &[("POWERTOOLS_METRICS_NAMESPACE", None)],
        "POWERTOOLS_METRICS_NAMESPACE",
    );
}

#[test]
fn startup_without_idempotency_table_names_it() {
    assert_startup_refusal(&[("IDEMPOTENCY_TABLE", None)], "IDEMPOTENCY_TABLE");
}

#[test]
fn startup_with_empty_idempotency_table_names_it() {
    assert_startup_refusal(&[("IDEMPOTENCY_TABLE", Some(""))], "IDEMPOTENCY_TABLE");
}

#[test]
fn startup_with_bad_log_level_names_the_variable() {
    assert_startup_refusal(
        &[("POWERTOOLS_LOG_LEVEL", Some("LOUD"))],
        "POWERTOOLS_LOG_LEVEL",
    );
}

#[test]
fn startup_with_bad_lambda_log_level_names_the_variable() {
    assert_startup_refusal(
        &[("AWS_LAMBDA_LOG_LEVEL", Some("LOUD"))],
        "AWS_LAMBDA_LOG_LEVEL",
    );
}

#[test]
fn startup_with_bad_sample_rate_names_the_variable() {
    assert_startup_refusal(
        &[("POWERTOOLS_LOGGER_SAMPLE_RATE", Some("2"))],
        "POWERTOOLS_LOGGER_SAMPLE_RATE",
    );
}

#[test]
fn startup_with_non_ascii_service_names_the_variable() {
    assert_startup_refusal(
        &[("POWERTOOLS_SERVICE_NAME", Some("boulangerie-\u{e9}"))],
        "POWERTOOLS_SERVICE_NAME",
    );
}

#[test]
fn startup_with_overlong_namespace_names_the_variable() {
    let long = "N".repeat(300);
    assert_startup_refusal(
        &[("POWERTOOLS_METRICS_NAMESPACE", Some(long.as_str()))],
        "POWERTOOLS_METRICS_NAMESPACE",
    );
}

#[test]
fn startup_with_bad_log_event_flag_names_the_variable() {
    assert_startup_refusal(
        &[("POWERTOOLS_LOGGER_LOG_EVENT", Some("maybe"))],
        "POWERTOOLS_LOGGER_LOG_EVENT",
    );
}

#[test]
fn startup_with_non_numeric_sample_rate_names_the_variable() {
    assert_startup_refusal(
        &[("POWERTOOLS_LOGGER_SAMPLE_RATE", Some("abc"))],
        "POWERTOOLS_LOGGER_SAMPLE_RATE",
    );
}

/// A `POWERTOOLS_METRICS_FUNCTION_NAME` CloudWatch would refuse as a dimension value (not
/// ASCII, or blank) stops the function at start, naming the variable, as a bad service name
/// does. (It used to be accepted, its `ColdStart` document written with the name as metadata; a
/// blank one left the dimension out of every `ColdStart` document without a word.)
#[test]
fn startup_with_a_metrics_function_name_cloudwatch_refuses_names_the_variable() {
    for name in ["boulangerie-\u{e9}", "   "] {
        assert_startup_refusal(
            &[("POWERTOOLS_METRICS_FUNCTION_NAME", Some(name))],
            "POWERTOOLS_METRICS_FUNCTION_NAME",
        );
    }
}

#[test]
fn startup_with_bad_concurrency_names_the_variable() {
    assert_startup_refusal(
        &[("AWS_LAMBDA_MAX_CONCURRENCY", Some("0"))],
        "AWS_LAMBDA_MAX_CONCURRENCY",
    );
}

#[test]
fn startup_with_bad_otlp_endpoint_names_the_variable() {
    assert_startup_refusal(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", Some("not a url"))],
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    );
}

/// The spans the OTLP receiver got whose recorded response carries `marker` (the spans file
/// holds every test's spans; the response's `x-correlation-id` tells them apart).
fn spans_with(marker: &str) -> Vec<Value> {
    let Ok(path) = std::env::var("POWERTOOLS_TEST_SPANS_FILE") else {
        return Vec::new();
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with('{') && line.contains(marker))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn span_attribute(span: &Value, key: &str) -> Option<Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|attribute| attribute["key"] == key)
        .map(|attribute| {
            let value = &attribute["value"];
            value
                .get("stringValue")
                .or_else(|| value.get("intValue"))
                .or_else(|| value.get("boolValue"))
                .cloned()
                .unwrap_or_else(|| value.clone())
        })
}

/// README: "one span per invocation with the HTTP server attributes (`http.request.method`,
/// `url.path`, `http.route`, `http.response.status_code`)". Checked on the spans the OTLP
/// receiver got, for a placed order, a refusal, an unknown route and a 50 KB path.
#[test]
fn spans_carry_the_http_server_attributes() {
    if std::env::var_os("POWERTOOLS_TEST_SPANS_FILE").is_none() {
        eprintln!("skipping: POWERTOOLS_TEST_SPANS_FILE is not set");
        return;
    }
    let Some(harness) = start() else { return };
    let mut findings = Findings::default();
    let long_path = format!("/{}", "p".repeat(50_000));
    let cases: Vec<(&str, &str, Value, u16, Option<&str>)> = {
        let placed = api_request_id();
        let refused = api_request_id();
        let unknown = api_request_id();
        let long = api_request_id();
        vec![
            (
                "placed order",
                "POST",
                v2_event(
                    "POST",
                    "/orders",
                    &[
                        ("content-type", "application/json"),
                        ("idempotency-key", &unique("span")),
                        ("x-correlation-id", &placed),
                    ],
                    Some(ORDER),
                    false,
                    &placed,
                ),
                201,
                Some("/orders"),
            ),
            (
                "refusal",
                "POST",
                v2_event(
                    "POST",
                    "/orders",
                    &[
                        ("content-type", "application/json"),
                        ("x-correlation-id", &refused),
                    ],
                    Some(ORDER),
                    false,
                    &refused,
                ),
                400,
                Some("/orders"),
            ),
            (
                "unknown route",
                "GET",
                v2_event(
                    "GET",
                    "/nope",
                    &[("x-correlation-id", &unknown)],
                    None,
                    false,
                    &unknown,
                ),
                404,
                None,
            ),
            (
                "50 KB path",
                "GET",
                v2_event(
                    "GET",
                    &long_path,
                    &[("x-correlation-id", &long)],
                    None,
                    false,
                    &long,
                ),
                404,
                None,
            ),
        ]
    };
    for (what, method, event, status, route) in &cases {
        let response = harness.call(what, event);
        findings.sane(&response);
        let marker = event["requestContext"]["requestId"]
            .as_str()
            .unwrap()
            .to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let mut spans = spans_with(&marker);
        while spans.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(200));
            spans = spans_with(&marker);
        }
        findings.check(spans.len() == 1, || {
            format!("{what}: {} spans record the response", spans.len())
        });
        let Some(span) = spans.first() else { continue };
        let keys: Vec<String> = span["attributes"]
            .as_array()
            .map(|attributes| {
                attributes
                    .iter()
                    .filter_map(|a| a["key"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        eprintln!(
            "{what}: span {} kind {} attributes {keys:?}",
            span["name"], span["kind"]
        );
        let method_attribute = span_attribute(span, "http.request.method");
        findings.check(method_attribute == Some(json!(method)), || {
            format!("{what}: http.request.method is {method_attribute:?}, span attributes {keys:?}")
        });
        let status_attribute = span_attribute(span, "http.response.status_code");
        findings.check(
            status_attribute
                .as_ref()
                .is_some_and(|value| value.to_string().trim_matches('"') == status.to_string()),
            || format!("{what}: http.response.status_code is {status_attribute:?}, span attributes {keys:?}"),
        );
        let path_attribute = span_attribute(span, "url.path");
        findings.check(path_attribute.is_some(), || {
            format!("{what}: no url.path, span attributes {keys:?}")
        });
        // The route template is checked where a real HTTP API has one (`routeKey`); for the
        // unknown routes this test's events carry a made-up route key.
        if let Some(route) = route {
            let route_attribute = span_attribute(span, "http.route");
            findings.check(route_attribute == Some(json!(route)), || {
                format!("{what}: http.route is {route_attribute:?}, expected {route:?}")
            });
        }
        let trigger = span_attribute(span, "faas.trigger");
        findings.check(trigger == Some(json!("http")), || {
            format!("{what}: faas.trigger is {trigger:?}, not \"http\"")
        });
    }
    findings.finish();
}
