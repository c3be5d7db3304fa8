//! CloudWatch's rules, checked when a value is added so that no document is dropped later.

use std::time::{Duration, SystemTime};

use crate::Error;

/// The most user dimensions in one dimension set: CloudWatch's 30 minus `service`.
pub const MAX_DIMENSIONS: usize = 29;
/// The most distinct metrics in one document; the 101st starts a new document.
pub const MAX_METRICS: usize = 100;
/// The most values of one metric in one document; the 101st starts a new document.
pub const MAX_VALUES_PER_METRIC: usize = 100;

/// The longest document written: CloudWatch Logs takes events of at most 256 KB, counted with
/// 26 bytes of overhead per event ("PutLogEvents" quotas); a kilobyte is kept in hand.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 256 * 1024 - 1024;
/// The most bytes of dimensions and metadata one invocation's documents may carry, so that a
/// document with them and a full metric (100 values) always fits in [`MAX_DOCUMENT_BYTES`].
pub(crate) const MAX_CONTEXT_BYTES: usize = 192 * 1024;

const MAX_NAMESPACE_LEN: usize = 255;
const MAX_METRIC_NAME_LEN: usize = 255;
/// AWS's EMF client libraries (Java, Node.js, .NET) refuse dimension names over 250 characters,
/// though CloudWatch's API takes 255: the stricter bound, so that a name is kept everywhere.
const MAX_DIMENSION_NAME_LEN: usize = 250;
const MAX_DIMENSION_VALUE_LEN: usize = 1024;
const MAX_PAST: Duration = Duration::from_secs(14 * 24 * 60 * 60);
const MAX_FUTURE: Duration = Duration::from_secs(2 * 60 * 60);
/// CloudWatch accepts values in -2^360..=2^360, and no NaN or infinity: the `Value` member of
/// `MetricDatum` in the CloudWatch API Reference ("Values must be in the range of -2^360 to
/// 2^360. In addition, special values (for example, NaN, +Infinity, -Infinity) are not
/// supported."). Older versions of that page also gave a magnitude floor of 2^-360
/// (8.515920e-109); the current one does not, so values closer to zero, `f64::MIN_POSITIVE`
/// included, are accepted.
const MAX_ABS_VALUE: f64 = 2.348_542_582_773_833_3e108;

/// The key EMF reserves at the top level of a document.
pub(crate) const ENVELOPE_KEY: &str = "_aws";

/// CloudWatch's namespace rules, as its documentation states them:
/// - the CloudWatch concepts page ("Namespaces"): at most 255 characters of "alphanumeric
///   characters (0-9A-Za-z), period (.), hyphen (-), underscore (_), forward slash (/), hash (#),
///   colon (:), and the space character", with "at least one non-whitespace character";
/// - the `Metric` data type of the CloudWatch API Reference: `Namespace` matches `[^:].*`, so
///   no leading colon;
/// - `PutMetricData`: a namespace beginning with `AWS/` is reserved for AWS services.
pub(crate) fn namespace(namespace: &str) -> Result<(), Error> {
    let invalid = |reason| {
        Err(Error::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason,
        })
    };
    if namespace.trim().is_empty() {
        return invalid("it is empty or only spaces");
    }
    if namespace.len() > MAX_NAMESPACE_LEN {
        return invalid("it is longer than 255 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._#:/- ".contains(c);
    if !namespace.chars().all(allowed) {
        return invalid("only ASCII letters, digits, spaces and . _ # : / - are allowed");
    }
    if namespace.starts_with(':') {
        return invalid("it must not start with a colon");
    }
    if namespace.starts_with("AWS/") {
        return invalid("namespaces beginning with AWS/ are reserved for AWS services");
    }
    Ok(())
}

/// Whitespace as Python's `str.isspace` has it (what Powertools' `name.strip()` removes):
/// Unicode's `White_Space`, and U+001C to U+001F, which Python counts as separators.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `name` trimmed of whitespace as Powertools for Python trims metric names.
pub(crate) fn trimmed(name: &str) -> &str {
    name.trim_matches(is_python_space)
}

/// The metric name to use for `name`: trimmed of whitespace, as Powertools for Python trims it
/// before checking it (so that `"OrdersPlaced "` adds to the same CloudWatch metric in both).
pub(crate) fn metric_name(untrimmed: &str) -> Result<&str, Error> {
    let name = trimmed(untrimmed);
    let invalid = |reason| {
        Err(Error::InvalidMetricName {
            name: untrimmed.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty or only whitespace");
    }
    if name.chars().count() > MAX_METRIC_NAME_LEN {
        return invalid("it is longer than 255 characters");
    }
    if name.chars().any(char::is_control) {
        return invalid("it contains control characters");
    }
    if name == ENVELOPE_KEY {
        return Err(Error::NameCollision {
            name: name.to_owned(),
            used_as: "the EMF envelope",
        });
    }
    Ok(name)
}

pub(crate) fn value(name: &str, value: f64) -> Result<(), Error> {
    let reason = if !value.is_finite() {
        "CloudWatch does not accept NaN or infinities"
    } else if value.abs() > MAX_ABS_VALUE {
        "CloudWatch accepts values between -2^360 and 2^360"
    } else {
        return Ok(());
    };
    Err(Error::InvalidValue {
        name: name.to_owned(),
        value,
        reason,
    })
}

/// What to do with a dimension.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DimensionCheck {
    Valid,
    /// An empty name or value: Powertools warns and skips it, because CloudWatch drops every
    /// dimension of a document with one empty value (Powertools for Python #5526).
    Skip,
    /// A value CloudWatch refuses (not printable ASCII, or too long): the value is kept as
    /// metadata instead, so the metrics are still written.
    RefusedValue(&'static str),
}

pub(crate) fn dimension(name: &str, value: &str) -> Result<DimensionCheck, Error> {
    if name.trim().is_empty() || value.trim().is_empty() {
        return Ok(DimensionCheck::Skip);
    }
    let invalid = |reason| {
        Err(Error::InvalidDimension {
            name: name.to_owned(),
            value: value.to_owned(),
            reason,
        })
    };
    let printable_ascii = |text: &str| text.bytes().all(|b| (0x20..0x7f).contains(&b));
    if name.len() > MAX_DIMENSION_NAME_LEN {
        return invalid("the name is longer than 250 characters");
    }
    if !printable_ascii(name) {
        return invalid("the name must be printable ASCII");
    }
    if name.starts_with(':') {
        return invalid("the name must not start with a colon");
    }
    if name == ENVELOPE_KEY {
        return Err(Error::NameCollision {
            name: name.to_owned(),
            used_as: "the EMF envelope",
        });
    }
    if value.len() > MAX_DIMENSION_VALUE_LEN {
        return Ok(DimensionCheck::RefusedValue(VALUE_TOO_LONG));
    }
    if !printable_ascii(value) {
        return Ok(DimensionCheck::RefusedValue(
            "the value must be printable ASCII",
        ));
    }
    Ok(DimensionCheck::Valid)
}

/// The reason a dimension value over 1024 characters is refused.
pub(crate) const VALUE_TOO_LONG: &str = "the value is longer than 1024 characters";

pub(crate) fn timestamp(timestamp: SystemTime, now: SystemTime) -> Result<(), Error> {
    let reason = match timestamp.duration_since(now) {
        Ok(ahead) if ahead > MAX_FUTURE => "it is more than 2 hours in the future",
        Ok(_) => return Ok(()),
        Err(behind) if behind.duration() > MAX_PAST => "it is more than 14 days in the past",
        Err(_) => return Ok(()),
    };
    Err(Error::InvalidTimestamp { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_cloudwatch_rules() {
        namespace("Bakery/Orders-API_v2.0#eu:1").unwrap();
        namespace("has space").unwrap();
        for bad in ["", " ", "émoji", ":x", "AWS/Lambda", &"n".repeat(256)] {
            assert!(
                matches!(namespace(bad), Err(Error::InvalidNamespace { .. })),
                "{bad:?}"
            );
        }
    }

    /// Every character Python 3's `str.isspace` holds true, as `python3 -c` listed them over
    /// the whole Unicode range (Python 3.11): the characters Powertools strips from names.
    #[test]
    fn python_s_whitespace_is_exactly_these_characters() {
        const PYTHON_SPACE: [u32; 29] = [
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
            0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028,
            0x2029, 0x202f, 0x205f, 0x3000,
        ];
        for c in (0..=0x10_ffff).filter_map(char::from_u32) {
            assert_eq!(
                is_python_space(c),
                PYTHON_SPACE.contains(&u32::from(c)),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn metric_names_must_be_visible_short_and_not_the_envelope() {
        metric_name("OrdersPlaced").unwrap();
        metric_name("Latency p99 (ms)").unwrap();
        metric_name(&"n".repeat(255)).unwrap();
        for bad in ["", "   ", "line\nbreak", &"n".repeat(256)] {
            assert!(
                matches!(metric_name(bad), Err(Error::InvalidMetricName { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            metric_name("_aws"),
            Err(Error::NameCollision { .. })
        ));
    }

    #[test]
    fn values_must_be_finite_and_within_cloudwatch_range() {
        for good in [0.0, -1.5, 1e100, -1e100, f64::MIN_POSITIVE] {
            value("m", good).unwrap();
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e109, -1e109] {
            assert!(
                matches!(value("m", bad), Err(Error::InvalidValue { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_dimensions_are_skipped_and_bad_ones_refused() {
        assert_eq!(
            dimension("location", "Lyon").unwrap(),
            DimensionCheck::Valid
        );
        assert_eq!(dimension("location", "").unwrap(), DimensionCheck::Skip);
        assert_eq!(dimension(" ", "Lyon").unwrap(), DimensionCheck::Skip);
        for (name, value) in [
            (":location", "Lyon"),
            ("loca\ttion", "Lyon"),
            (&"n".repeat(251) as &str, "Lyon"),
        ] {
            assert!(
                matches!(dimension(name, value), Err(Error::InvalidDimension { .. })),
                "{name:?}={value:?}"
            );
        }
        for value in ["Zürich", &"v".repeat(1025)] {
            assert!(
                matches!(
                    dimension("location", value),
                    Ok(DimensionCheck::RefusedValue(_))
                ),
                "{value:?}"
            );
        }
    }

    #[test]
    fn timestamps_stay_within_14_days_past_and_2_hours_future() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        timestamp(now - 13 * day, now).unwrap();
        timestamp(now + Duration::from_secs(3600), now).unwrap();
        assert!(timestamp(now - 15 * day, now).is_err());
        assert!(timestamp(now + Duration::from_secs(3 * 3600), now).is_err());
    }
}
