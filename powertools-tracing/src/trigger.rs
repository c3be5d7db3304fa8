//! The trigger of an invocation that is not an HTTP request, read from its event: its
//! `faas.trigger` and, for SQS, the messaging attributes the semantic conventions for AWS Lambda
//! require.

use std::any::{Any, TypeId};

use serde_json::Value;

/// What sent an invocation's event, as far as the event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// API Gateway, a function URL or an Application Load Balancer (read elsewhere).
    Http,
    /// An SQS queue: `pubsub`, with `messaging.system = aws_sqs`.
    Sqs,
    /// An SNS topic, a Kinesis stream, Kafka (MSK or self-managed) or Amazon MQ: `pubsub`.
    PubSub,
    /// A DynamoDB stream, an S3 bucket's notification or a DocumentDB change stream:
    /// `datasource`.
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
    if let Some(json) = as_type::<T, Value>(event) {
        return source_of_json(json);
    }
    #[cfg(feature = "aws-lambda-events")]
    if let Some(source) = events::source_of(event) {
        return source;
    }
    Source::Other
}

/// A batch of records names its source in each record (`eventSource`, `EventSource` for SNS):
/// the first one is read, as Lambda sends one source per batch. Kafka, Amazon MQ and
/// DocumentDB name it once, at the top. A scheduled event is an EventBridge event from
/// `aws.events` whose `detail-type` is `Scheduled Event`.
fn source_of_json(event: &Value) -> Source {
    let Some(event) = event.as_object() else {
        return Source::Other;
    };
    if let Some(source) = event.get("eventSource").and_then(Value::as_str) {
        return match source {
            "aws:kafka" | "SelfManagedKafka" | "aws:mq" | "aws:rmq" => Source::PubSub,
            "aws:docdb" => Source::Datastore,
            _ => Source::Other,
        };
    }
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

/// `event` as a `U` when `T` is `U`. The types are compared as constants of the caller's
/// monomorphization (no call through `Any`'s vtable), so an event of another type costs nothing.
fn as_type<T: 'static, U: 'static>(event: &T) -> Option<&U> {
    if TypeId::of::<T>() == TypeId::of::<U>() {
        (event as &dyn Any).downcast_ref::<U>()
    } else {
        None
    }
}

/// Whether `T` is `U`, as [`as_type`] compares them.
#[cfg(feature = "aws-lambda-events")]
fn is_type<T: 'static, U: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<U>()
}

fn is_schedule(source: Option<&str>, detail_type: Option<&str>) -> bool {
    source == Some("aws.events") && detail_type == Some("Scheduled Event")
}

#[cfg(feature = "aws-lambda-events")]
mod events {
    use aws_lambda_events::activemq::ActiveMqEvent;
    use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
    use aws_lambda_events::documentdb::DocumentDbEvent;
    use aws_lambda_events::dynamodb;
    use aws_lambda_events::eventbridge::EventBridgeEvent;
    use aws_lambda_events::kafka::KafkaEvent;
    use aws_lambda_events::kinesis::KinesisEvent;
    use aws_lambda_events::rabbitmq::RabbitMqEvent;
    use aws_lambda_events::s3::S3Event;
    use aws_lambda_events::sns::SnsEvent;
    use aws_lambda_events::sqs::SqsEvent;

    use super::{Source, as_type, is_schedule, is_type};

    /// The source of the `aws_lambda_events` types that have one; `None` for the others.
    /// `EventBridgeEvent` and `CloudWatchEvent` are read with their default `serde_json::Value`
    /// detail only (a type parameter of the caller's cannot be named here), and `SqsEventObj<T>`
    /// and `SnsEventObj<T>` are told by their type's name (see [`source_of_generic`]).
    pub(super) fn source_of<T: 'static>(event: &T) -> Option<Source> {
        if is_type::<T, SqsEvent>() {
            return Some(Source::Sqs);
        }
        if is_type::<T, SnsEvent>()
            || is_type::<T, KinesisEvent>()
            || is_type::<T, KafkaEvent>()
            || is_type::<T, ActiveMqEvent>()
            || is_type::<T, RabbitMqEvent>()
        {
            return Some(Source::PubSub);
        }
        if is_type::<T, dynamodb::Event>()
            || is_type::<T, S3Event>()
            || is_type::<T, DocumentDbEvent>()
        {
            return Some(Source::Datastore);
        }
        if let Some(scheduled) = as_type::<T, EventBridgeEvent>(event) {
            return is_schedule(Some(&scheduled.source), Some(&scheduled.detail_type))
                .then_some(Source::Timer);
        }
        if let Some(scheduled) = as_type::<T, CloudWatchEvent>(event) {
            return is_schedule(
                scheduled.source.as_deref(),
                scheduled.detail_type.as_deref(),
            )
            .then_some(Source::Timer);
        }
        source_of_generic(std::any::type_name::<T>())
    }

    /// `SqsEventObj<T>` and `SnsEventObj<T>` (a body or message of the caller's type) by the
    /// type's name, which no `TypeId` can match for every `T`. Rust does not promise the form of
    /// a type's name: a form other than `path::Name<…>` is missed (the trigger stays `other`),
    /// never misread, and `the_generic_events_are_told_by_their_names` checks the form.
    pub(super) fn source_of_generic(type_name: &str) -> Option<Source> {
        // A user type fails the first comparison.
        let name = type_name.strip_prefix("aws_lambda_events::event::")?;
        let (path, _parameters) = name.split_once('<')?;
        match path {
            "sqs::SqsEventObj" => Some(Source::Sqs),
            "sns::SnsEventObj" => Some(Source::PubSub),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use aws_lambda_events::sns::SnsEventObj;
        use aws_lambda_events::sqs::{SqsEvent, SqsEventObj};

        use super::{Source, source_of_generic};

        #[test]
        fn the_generic_events_are_told_by_their_names() {
            use std::any::type_name;
            assert_eq!(
                source_of_generic(type_name::<SqsEventObj<Vec<u8>>>()),
                Some(Source::Sqs)
            );
            assert_eq!(
                source_of_generic(type_name::<SnsEventObj<String>>()),
                Some(Source::PubSub)
            );
            assert_eq!(source_of_generic(type_name::<SqsEvent>()), None);
            assert_eq!(source_of_generic(type_name::<Vec<SqsEventObj<u8>>>()), None);
            assert_eq!(source_of_generic("my_crate::sqs::SqsEventObj<u8>"), None);
        }
    }
}
