//! The JMESPath envelopes of Powertools for Python (`jmespath_utils.envelopes`), under the same
//! names: expressions that take the payload out of an event of each source, for
//! [`JmesPath::new`](super::JmesPath::new).
//!
//! ```
//! use powertools_core::jmespath::{JmesPath, envelopes};
//! use serde_json::json;
//!
//! let orders = JmesPath::new(envelopes::SQS)?;
//! let event = json!({"Records": [{"body": "{\"order_id\": \"o-1\"}"}, {"body": "{\"order_id\": \"o-2\"}"}]});
//! assert_eq!(orders.search(&event)?, json!([{"order_id": "o-1"}, {"order_id": "o-2"}]));
//! # Ok::<(), powertools_core::Error>(())
//! ```
//!
//! With a typed event, read the payload from its fields instead: the compiler checks them.

/// The JSON body of an API Gateway REST API (v1) event.
pub const API_GATEWAY_REST: &str = "powertools_json(body)";
/// The JSON body of an API Gateway HTTP API (v2) event or a function URL's.
pub const API_GATEWAY_HTTP: &str = "powertools_json(body)";
/// The JSON body of each SQS message.
pub const SQS: &str = "Records[*].powertools_json(body)";
/// The JSON message of an SNS notification's first record (SNS sends one).
pub const SNS: &str = "Records[0].Sns.Message | powertools_json(@)";
/// The `detail` of an EventBridge event.
pub const EVENTBRIDGE: &str = "detail";
/// The `detail` of a scheduled CloudWatch Events (EventBridge) event.
pub const CLOUDWATCH_EVENTS_SCHEDULED: &str = "detail";
/// The JSON data of each Kinesis record, decoded from base64.
pub const KINESIS_DATA_STREAM: &str = "Records[*].kinesis.powertools_json(powertools_base64(data))";
/// The log events of a CloudWatch Logs subscription, decoded from base64 and gzip.
pub const CLOUDWATCH_LOGS: &str =
    "awslogs.powertools_base64_gzip(data) | powertools_json(@).logEvents[*]";
/// The S3 record of each S3 notification sent to SNS, then to SQS.
pub const S3_SNS_SQS: &str = "Records[*].powertools_json(body).powertools_json(Message).Records[0]";
/// The S3 record of each S3 notification sent to SQS.
pub const S3_SQS: &str = "Records[*].powertools_json(body).Records[0]";
/// The S3 record of each S3 notification sent to SNS, then to Kinesis Data Firehose.
pub const S3_SNS_KINESIS_FIREHOSE: &str =
    "records[*].powertools_json(powertools_base64(data)).powertools_json(Message).Records[0]";
/// The S3 record of each S3 notification sent to Kinesis Data Firehose.
pub const S3_KINESIS_FIREHOSE: &str =
    "records[*].powertools_json(powertools_base64(data)).Records[0]";
/// The `detail` of each S3 EventBridge event sent to SQS.
pub const S3_EVENTBRIDGE_SQS: &str = "Records[*].powertools_json(body).detail";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jmespath::JmesPath;
    use base64::Engine as _;
    use serde_json::{Value, json};
    use std::io::Write as _;

    fn base64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn search(envelope: &str, event: &Value) -> Value {
        JmesPath::new(envelope)
            .and_then(|path| path.search(event))
            .unwrap_or_else(|error| panic!("{envelope}: {error}"))
    }

    /// Each envelope takes the payload out of its source's event, as Python's does (the
    /// expected values are what `jmespath_utils.query(event, envelope)` gives in Powertools for
    /// Python 3.37).
    #[test]
    fn each_envelope_takes_the_payload_out_of_its_event() {
        let order = json!({"order_id": "o-1"});
        let s3 = json!({"eventSource": "aws:s3", "s3": {"object": {"key": "a.csv"}}});
        let sns_of_s3 = json!({"Message": json!({"Records": [s3]}).to_string()}).to_string();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(
            json!({"logEvents": [{"id": "1", "message": "m"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let logs = base64(&gzip.finish().unwrap());
        let cases = [
            (
                API_GATEWAY_REST,
                json!({"body": order.to_string()}),
                order.clone(),
            ),
            (
                API_GATEWAY_HTTP,
                json!({"body": order.to_string()}),
                order.clone(),
            ),
            (
                SQS,
                json!({"Records": [{"body": order.to_string()}]}),
                json!([order]),
            ),
            (
                SNS,
                json!({"Records": [{"Sns": {"Message": order.to_string()}}]}),
                order.clone(),
            ),
            (EVENTBRIDGE, json!({"detail": order}), order.clone()),
            (
                CLOUDWATCH_EVENTS_SCHEDULED,
                json!({"detail": order}),
                order.clone(),
            ),
            (
                KINESIS_DATA_STREAM,
                json!({"Records": [{"kinesis": {"data": base64(order.to_string().as_bytes())}}]}),
                json!([order]),
            ),
            (
                CLOUDWATCH_LOGS,
                json!({"awslogs": {"data": logs}}),
                json!([{"id": "1", "message": "m"}]),
            ),
            (
                S3_SNS_SQS,
                json!({"Records": [{"body": sns_of_s3}]}),
                json!([s3]),
            ),
            (
                S3_SQS,
                json!({"Records": [{"body": json!({"Records": [s3]}).to_string()}]}),
                json!([s3]),
            ),
            (
                S3_SNS_KINESIS_FIREHOSE,
                json!({"records": [{"data": base64(sns_of_s3.as_bytes())}]}),
                json!([s3]),
            ),
            (
                S3_KINESIS_FIREHOSE,
                json!({"records": [{"data": base64(json!({"Records": [s3]}).to_string().as_bytes())}]}),
                json!([s3]),
            ),
            (
                S3_EVENTBRIDGE_SQS,
                json!({"Records": [{"body": json!({"detail": s3}).to_string()}]}),
                json!([s3]),
            ),
        ];
        for (envelope, event, expected) in cases {
            assert_eq!(search(envelope, &event), expected, "{envelope}");
        }
    }
}
