//! Reading a DynamoDB Streams record's image into a type of the function's own.

use serde::de::DeserializeOwned;

use crate::Error;

/// Reads a DynamoDB Streams record's image or keys (`record.change.new_image`,
/// `old_image`, `keys`) into a type of yours, as `serde_dynamo::from_item` does, with an error
/// fit for a failure line: [`Error::InvalidImage`] names the type, the attribute (`at
/// lines[0].qty`) and why, without the value. `serde_dynamo`'s own error quotes a number it
/// cannot read (a card number in the wrong attribute) and names no attribute; a record's error
/// becomes its failure line and, when every record fails, Lambda's `errorMessage`.
///
/// ```
/// use aws_lambda_events::dynamodb::Event;
/// use powertools_batch::read_image;
///
/// #[derive(serde::Deserialize)]
/// struct Order { order_id: String, quantity: u32 }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let event: Event = serde_json::from_value(serde_json::json!({"Records": [{
///     "eventID": "e-1", "eventName": "INSERT", "eventSource": "aws:dynamodb", "awsRegion": "eu-west-1",
///     "dynamodb": {"NewImage": {"order_id": {"S": "o-1"}, "quantity": {"N": "4111111111111111111111"}},
///                  "SequenceNumber": "100", "SizeBytes": 10, "StreamViewType": "NEW_IMAGE"}}]}))?;
/// let record = event.records.into_iter().next().ok_or("no record")?;
/// let error = read_image::<Order>(record.change.new_image).err().ok_or("it read")?;
/// assert!(error.to_string().contains("at quantity"));
/// assert!(!error.to_string().contains("4111"));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::InvalidImage`] when the image does not read as `T`.
pub fn read_image<T: DeserializeOwned>(image: serde_dynamo::Item) -> Result<T, Error> {
    let type_name = std::any::type_name::<T>();
    // A `Deserialize` that panics fails as an image that does not read, without the panic's
    // message (it may quote the image), as a record's body does.
    let read = powertools_core::failure::catch_quiet_panic(|| {
        let deserializer = serde_dynamo::Deserializer::from_attribute_value(
            serde_dynamo::AttributeValue::M(image.into()),
        );
        serde_path_to_error::deserialize::<_, T>(deserializer)
    });
    let error = match read {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(error)) => error,
        Err(_) => {
            return Err(Error::InvalidImage {
                type_name,
                path: String::new(),
                reason: crate::raw::READ_PANICKED.to_owned(),
            });
        }
    };
    let message = error.inner().to_string();
    // An unknown field's name is the path's last key, and comes from the image.
    let unknown_field = message.starts_with("unknown field `");
    Err(Error::InvalidImage {
        type_name,
        path: powertools_core::serde_message::shown_path(error.path(), unknown_field),
        reason: reason(&message),
    })
}

/// `serde_dynamo`'s messages that quote nothing of the image.
const SERDE_DYNAMO_FIXED: &[&str] = &[
    "Not a map-like object",
    "Not a set-like sequence",
    "Expected string",
    "Expected map",
    "Expected seq",
    "Expected num",
    "Expected bool",
    "Expected char",
    "Expected unit",
    "Expected unit struct",
    "Expected enum",
    "Expected binary data",
    "Expected an item with a single key",
];

/// The standard library's reasons for a number that does not parse, which quote nothing.
const PARSE_REASONS: &[&str] = &[
    "cannot parse integer from empty string",
    "invalid digit found in string",
    "number too large to fit in target type",
    "number too small to fit in target type",
    "number would be zero for non-zero type",
    "cannot parse float from empty string",
    "invalid float literal",
];

/// Why an image did not read, without the value: `serde_dynamo`'s fixed messages as they are,
/// its `Failed to parse '4111…' as an integer: …` without the number, and serde's messages as
/// a record's body's are said (`powertools_core::serde_message::without_values`).
fn reason(message: &str) -> String {
    if SERDE_DYNAMO_FIXED.contains(&message) {
        return message.to_owned();
    }
    if message.starts_with("Failed to parse '") {
        for kind in ["an integer", "a float"] {
            // From the end: the number, which comes first, may hold anything.
            if let Some(at) = message.rfind(&format!("' as {kind}: ")) {
                let why = &message[at + "' as : ".len() + kind.len()..];
                let why = PARSE_REASONS.iter().find(|known| **known == why);
                return match why {
                    Some(why) => {
                        format!("the number does not read as {kind}: {why} (the value is left out)")
                    }
                    None => format!("the number does not read as {kind} (the value is left out)"),
                };
            }
        }
    }
    powertools_core::serde_message::without_values(message)
}
