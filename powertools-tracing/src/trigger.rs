//! The trigger of an invocation that is not an HTTP request, read from its event: its
//! `faas.trigger` and, for SQS, the messaging attributes the semantic conventions for AWS Lambda
//! require.

use std::any::Any;

use serde_json::Value;

/// What sent an invocation's event, as far as the event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// API Gateway, a function URL or an Application Load Balancer (read elsewhere).
    Http,
    /// An SQS queue: `pubsub`, with `messaging.system = aws_sqs`.
    Sqs,
    /// An SNS topic or a Kinesis stream: `pubsub`.
    PubSub,
    /// A DynamoDB stream or an S3 bucket's notification: `datasource`.
    Datastore,
    /// An EventBridge (CloudWatch Events) schedule: `timer`.
    Timer,
    /// Anything else: `other`.
    Other,
}

impl Source {
    /// The `faas.trigger` of the source.
    pub(crate) fn faas_trigger(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Sqs | Source::PubSub => "pubsub",
            Source::Datastore => "datasource",
            Source::Timer => "timer",
            Source::Other => "other",
        }
    }
}

/// The source of an event that is not an HTTP request: from its JSON for `serde_json::Value`
/// events, from its type for the `aws_lambda_events` types (with the `aws-lambda-events`
/// feature), else `Other`.
pub(crate) fn source_of<T: 'static>(event: &T) -> Source {
    let any: &dyn Any = event;
    if let Some(json) = any.downcast_ref::<Value>() {
        return source_of_json(json);
    }
    #[cfg(feature = "aws-lambda-events")]
    if let Some(source) = events::source_of(any) {
        return source;
    }
    Source::Other
}

/// A batch of records names its source in each record (`eventSource`, `EventSource` for SNS):
/// the first one is read, as Lambda sends one source per batch. A scheduled event is an
/// EventBridge event from `aws.events` whose `detail-type` is `Scheduled Event`.
fn source_of_json(event: &Value) -> Source {
    let Some(event) = event.as_object() else {
        return Source::Other;
    };
    if let Some(records) = event.get("Records") {
        let first = records.as_array().and_then(|records| records.first());
        let source = first
            .and_then(|record| {
                record
                    .get("eventSource")
                    .or_else(|| record.get("EventSource"))
            })
            .and_then(Value::as_str);
        return match source {
            Some("aws:sqs") => Source::Sqs,
            Some("aws:sns" | "aws:kinesis") => Source::PubSub,
            Some("aws:dynamodb" | "aws:s3") => Source::Datastore,
            _ => Source::Other,
        };
    }
    let text = |key: &str| event.get(key).and_then(Value::as_str);
    if is_schedule(text("source"), text("detail-type")) {
        Source::Timer
    } else {
        Source::Other
    }
}

fn is_schedule(source: Option<&str>, detail_type: Option<&str>) -> bool {
    source == Some("aws.events") && detail_type == Some("Scheduled Event")
}

#[cfg(feature = "aws-lambda-events")]
mod events {
    use std::any::Any;

    use aws_lambda_events::dynamodb;
    use aws_lambda_events::eventbridge::EventBridgeEvent;
    use aws_lambda_events::kinesis::KinesisEvent;
    use aws_lambda_events::s3::S3Event;
    use aws_lambda_events::sns::SnsEvent;
    use aws_lambda_events::sqs::SqsEvent;

    use super::{Source, is_schedule};

    /// The source of the `aws_lambda_events` types that have one; `None` for the others
    /// (`EventBridgeEvent` only with its default `serde_json::Value` detail: a type parameter of
    /// the caller's cannot be named here).
    pub(super) fn source_of(event: &dyn Any) -> Option<Source> {
        if event.is::<SqsEvent>() {
            return Some(Source::Sqs);
        }
        if event.is::<SnsEvent>() || event.is::<KinesisEvent>() {
            return Some(Source::PubSub);
        }
        if event.is::<dynamodb::Event>() || event.is::<S3Event>() {
            return Some(Source::Datastore);
        }
        let scheduled = event.downcast_ref::<EventBridgeEvent>()?;
        is_schedule(Some(&scheduled.source), Some(&scheduled.detail_type)).then_some(Source::Timer)
    }
}
