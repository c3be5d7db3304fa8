//! From an HTTP request to an order the function can place, or a 400 that says why not.
//!
//! Every check that does not depend on the catalogue runs here, before the idempotency claim: a
//! refused request leaves no record, so the client who fixes it can retry with the same
//! `Idempotency-Key` (as with Stripe: a request refused by validation before any side effect is
//! not remembered). The catalogue prices the order inside the claim, which a refusal there
//! releases (`api::place_order`).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use base64::Engine as _;
use powertools::core::serde_message;
use serde_json::json;

use crate::order::Order;

/// The header a client sets so that a retried request never places the order twice.
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The longest `Idempotency-Key` accepted, in bytes (Stripe's limit).
pub(crate) const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The longest error message a refusal carries, in characters: what serde_json says about a
/// body can quote the body, and an answer must never grow with the request.
const MAX_MESSAGE_CHARS: usize = 200;

/// A request that passed every check: what the idempotent part of the function works on.
#[derive(Debug, Clone)]
pub(crate) struct PlaceOrder {
    /// The client's `Idempotency-Key`.
    pub(crate) idempotency_key: String,
    /// The order as sent: checked, not priced.
    pub(crate) order: Order,
}

/// Why a request is refused before anything is claimed, charged or saved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    /// The HTTP status: 400, or 405 for a method other than `POST`.
    pub(crate) status: i64,
    /// A stable code for API clients.
    pub(crate) code: &'static str,
    /// What is wrong: at most [`MAX_MESSAGE_CHARS`] characters, then `…` if it was cut.
    pub(crate) message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match message.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((end, _)) => format!("{}…", &message[..end]),
            None => message,
        };
        Refusal {
            status: 400,
            code,
            message,
        }
    }

    /// The answer: its status, and `{"error", "message"}`.
    pub(crate) fn response(&self) -> ApiGatewayV2httpResponse {
        let mut response = crate::api::json_response(
            self.status,
            &json!({"error": self.code, "message": self.message}),
        );
        if self.status == 405 {
            response
                .headers
                .insert("allow", http::HeaderValue::from_static("POST"));
        }
        response
    }
}

impl PlaceOrder {
    /// Reads and checks the key and the order of `request`.
    ///
    /// The body may be base64-encoded: API Gateway encodes a body whose content type it does
    /// not treat as text (`isBase64Encoded`).
    pub(crate) fn from_request(request: &ApiGatewayV2httpRequest) -> Result<Self, Refusal> {
        // The template routes only `POST /orders` here; a route for any method (`ANY`, a
        // `$default` route, a function URL) would otherwise let a `GET`, which no client or
        // proxy expects to change anything, place an order.
        if request.request_context.http.method != http::Method::POST {
            return Err(Refusal {
                status: 405,
                ..Refusal::new("MethodNotAllowed", "orders are placed with POST")
            });
        }
        let idempotency_key = idempotency_key(request)?;
        let Some(body) = request.body.as_deref() else {
            return Err(Refusal::new(
                "InvalidBody",
                "the request has no body: send the order as JSON",
            ));
        };
        let decoded;
        let json = if request.is_base64_encoded {
            decoded = base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|error| {
                    Refusal::new(
                        "InvalidBody",
                        format!("the body is marked base64 but is not: {error}"),
                    )
                })?;
            decoded.as_slice()
        } else {
            body.as_bytes()
        };
        // serde_json refuses what an order can't hold: broken JSON, a lone surrogate escape, a
        // number out of range, nesting over 128 levels. Said with the field where it went wrong
        // and what the field must be (`items[1].quantity: invalid type (the value is left out),
        // expected u32`), never serde's message as it is: it quotes the value (a card number in
        // the wrong field would be answered and logged). The facade's helpers write the path
        // (a key that looks like data is `<key>`) and the message without the value.
        let deserializer = &mut serde_json::Deserializer::from_slice(json);
        let order: Order = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = serde_message::shown_path(error.path(), false);
            let error = error.into_inner();
            let code = if error.is_data() {
                "InvalidOrder"
            } else {
                "InvalidBody"
            };
            let at = if path.is_empty() {
                String::new()
            } else {
                format!(" at {path}")
            };
            Refusal::new(
                code,
                format!(
                    "the body is not an order{at}: {}",
                    serde_message::without_values(&error.to_string())
                ),
            )
        })?;
        order
            .check()
            .map_err(|refused| Refusal::new(refused.code(), refused.to_string()))?;
        Ok(PlaceOrder {
            idempotency_key,
            order,
        })
    }
}

/// The `Idempotency-Key` header: present, 1 to 255 bytes of visible ASCII but a comma.
fn idempotency_key(request: &ApiGatewayV2httpRequest) -> Result<String, Refusal> {
    let mut values = request.headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Err(Refusal::new(
            "MissingIdempotencyKey",
            "set the Idempotency-Key header so that a retry never places the order twice",
        ));
    };
    let bytes = value.as_bytes();
    // A comma is two headers, which an HTTP API joins with one: taken as one key, the same two
    // in the other order would be another (found by a review). So is a second value, which a
    // direct invoke can send as a list (found by an attack).
    let visible = bytes
        .iter()
        .all(|&byte| byte.is_ascii_graphic() && byte != b',');
    let one = values.next().is_none();
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY_BYTES || !visible || !one {
        return Err(Refusal::new(
            "InvalidIdempotencyKey",
            format!(
                "the Idempotency-Key must be one key of 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible \
                 ASCII characters other than a comma (two headers arrive joined by one)"
            ),
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: Option<&str>, body: Option<&str>) -> ApiGatewayV2httpRequest {
        let mut request: ApiGatewayV2httpRequest =
            serde_json::from_str(include_str!("../events/first-order.json")).unwrap();
        request.headers.remove(IDEMPOTENCY_KEY_HEADER);
        if let Some(key) = key {
            request
                .headers
                .insert(IDEMPOTENCY_KEY_HEADER, key.parse().unwrap());
        }
        request.body = body.map(str::to_owned);
        request
    }

    fn refusal(request: &ApiGatewayV2httpRequest) -> Refusal {
        PlaceOrder::from_request(request).unwrap_err()
    }

    /// A method other than `POST` (a route for any method, a function URL) places nothing: a
    /// `GET` with the sample order's body was placed as a `POST` is.
    #[test]
    fn a_method_other_than_post_is_a_405_that_allows_post() {
        let body = include_str!("../events/first-order.json");
        for method in ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            let mut request = request(Some("k-1"), None);
            let sample: ApiGatewayV2httpRequest = serde_json::from_str(body).unwrap();
            request.body = sample.body;
            request.request_context.http.method = method.parse().unwrap();
            let refused = refusal(&request);
            assert_eq!((refused.status, refused.code), (405, "MethodNotAllowed"));
            let response = refused.response();
            assert_eq!(response.status_code, 405);
            assert_eq!(response.headers["allow"], "POST");
        }
    }

    #[test]
    fn the_sample_order_passes_with_its_key_and_total() {
        let sample = serde_json::from_str(include_str!("../events/first-order.json")).unwrap();
        let mut placed = PlaceOrder::from_request(&sample).unwrap();
        let total_cents = placed
            .order
            .price(&crate::order::Catalogue::bakery())
            .unwrap();
        assert_eq!(
            (placed.idempotency_key.as_str(), total_cents),
            ("k-7f3a-1001", 2550)
        );
    }

    #[test]
    fn keys_are_required_and_bounded() {
        let body = include_str!("../events/first-order.json");
        let order: serde_json::Value = serde_json::from_str(body).unwrap();
        let body = order["body"].as_str();
        assert_eq!(refusal(&request(None, body)).code, "MissingIdempotencyKey");
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1);
        assert_eq!(
            refusal(&request(Some(&long), body)).code,
            "InvalidIdempotencyKey"
        );
        assert_eq!(
            refusal(&request(Some("two words"), body)).code,
            "InvalidIdempotencyKey"
        );
        // Two headers, which an HTTP API joins with a comma: taken as one key, the same two in
        // the other order were another (found by a review; the http-axum example refused them).
        for twice in ["k-a,k-b", "k-b,k-a", "k-a, k-b"] {
            let refused = refusal(&request(Some(twice), body));
            assert_eq!(refused.code, "InvalidIdempotencyKey", "{twice}");
            assert!(refused.message.contains("comma"), "{}", refused.message);
        }
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES);
        assert!(PlaceOrder::from_request(&request(Some(&longest), body)).is_ok());
    }

    /// Two values of the header as a list (a direct invoke can send one; the typed event keeps
    /// both) are two keys, refused as the joined ones are: the first was taken, so the same two
    /// in the other order were another key (found by an attack through the emulator).
    #[test]
    fn a_header_with_two_values_is_refused() {
        let mut event: serde_json::Value =
            serde_json::from_str(include_str!("../events/first-order.json")).unwrap();
        for values in [json!(["k-a", "k-c"]), json!(["k-c", "k-a"])] {
            event["headers"] = json!({ IDEMPOTENCY_KEY_HEADER: values });
            let request: ApiGatewayV2httpRequest = serde_json::from_value(event.clone()).unwrap();
            let refused = refusal(&request);
            assert_eq!(refused.code, "InvalidIdempotencyKey", "{values}");
        }
    }

    /// A value of the wrong type or out of range is refused naming its field and what it must
    /// be, never the value: the message said "a value of the wrong type or out of range at
    /// line 1 column 96", which names no field (found by an attack through the emulator).
    #[test]
    fn a_wrong_value_is_refused_naming_its_field_and_not_the_value() {
        let item = |quantity: &str, price: &str| {
            format!(
                r#"{{"order_id":"o-1","customer_id":"c-1","location":"Leeds","items":[{{"sku":"rye","quantity":2,"unit_price_cents":300}},{{"sku":"bap","quantity":{quantity},"unit_price_cents":{price}}}]}}"#
            )
        };
        for (body, field, expected) in [
            (item("-7", "300"), "items[1].quantity", "u32"),
            (item("4294967296", "300"), "items[1].quantity", "u32"),
            (item("2", "450.5"), "items[1].unit_price_cents", "u64"),
            (
                r#"{"order_id":17,"customer_id":"c-1","location":"Leeds","items":[]}"#.to_owned(),
                "order_id",
                "a string",
            ),
        ] {
            let refused = refusal(&request(Some("k-1"), Some(&body)));
            assert_eq!(refused.code, "InvalidOrder", "{refused:?}");
            assert!(
                refused.message.contains(&format!("at {field}"))
                    && refused.message.contains(expected),
                "{body}: {}",
                refused.message
            );
            for value in ["-7", "4294967296", "450.5", "17"] {
                assert!(!refused.message.contains(value), "{}", refused.message);
            }
        }
    }

    #[test]
    fn a_message_never_grows_with_the_body() {
        let body = format!(
            r#"{{"order_id": 1, "customer_id": "{}"}}"#,
            "c".repeat(100_000)
        );
        let refused = refusal(&request(Some("k-1"), Some(&body)));
        assert_eq!(refused.code, "InvalidOrder");
        assert!(
            refused.message.chars().count() <= MAX_MESSAGE_CHARS + 1,
            "{}",
            refused.message
        );
        let body = format!(r#"{{"order_id": "{}"}}"#, "o".repeat(100_000));
        let refused = refusal(&request(Some("k-1"), Some(&body)));
        assert!(
            refused.message.chars().count() <= MAX_MESSAGE_CHARS + 1,
            "{}",
            refused.message
        );
    }

    #[test]
    fn a_refusal_never_quotes_a_value_from_the_body() {
        // serde's own message quotes the value ("invalid type: string \"4111…\""): a card
        // number in the wrong field was answered and logged (found by a review).
        let card = "4111111111111111";
        for body in [
            format!(r#"{{"items": [{{"sku": "rye", "quantity": "{card}"}}]}}"#),
            format!(r#"{{"{card}": 1}}"#),
            format!(r#"{{"location": {card}00000000000000000000}}"#),
            format!(r#"{{"items": "{card}"#),
        ] {
            let refused = refusal(&request(Some("k-1"), Some(&body)));
            assert!(
                refused.code == "InvalidOrder" || refused.code == "InvalidBody",
                "{refused:?}"
            );
            assert!(
                !refused.message.contains("4111"),
                "{body}: {}",
                refused.message
            );
            assert!(refused.message.contains("line 1"), "{}", refused.message);
        }
    }
}
