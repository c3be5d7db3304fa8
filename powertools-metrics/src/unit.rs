//! CloudWatch units and storage resolutions.

use std::fmt;
use std::str::FromStr;

use crate::Error;

macro_rules! units {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal,)*) => {
        /// A CloudWatch metric unit: the 27 values of CloudWatch's `StandardUnit`, [`Unit::None`]
        /// (a value without a unit) among them.
        ///
        /// Parses from and displays as the CloudWatch spelling (`"Bytes/Second"`), as Powertools
        /// for Python and TypeScript accept it; parses from Python's `MetricUnit` member names
        /// too (`"BytesPerSecond"`, `"NoUnit"`), as Python's `add_metric` takes them.
        ///
        /// ```
        /// use powertools_metrics::Unit;
        /// assert_eq!("Bytes/Second".parse::<Unit>()?, Unit::BytesPerSecond);
        /// assert_eq!("BytesPerSecond".parse::<Unit>()?, Unit::BytesPerSecond);
        /// assert_eq!("NoUnit".parse::<Unit>()?, Unit::None);
        /// assert_eq!(Unit::Milliseconds.as_str(), "Milliseconds");
        /// assert!("Furlongs".parse::<Unit>().is_err());
        /// # Ok::<(), powertools_metrics::Error>(())
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Unit {
            $($(#[$doc])* $variant,)*
        }

        impl Unit {
            /// Every unit, in CloudWatch's order.
            pub const ALL: &'static [Unit] = &[$(Unit::$variant,)*];

            /// The CloudWatch spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Unit::$variant => $wire,)*
                }
            }
        }

        impl FromStr for Unit {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self, Error> {
                match text {
                    $($wire => Ok(Unit::$variant),)*
                    // Powertools for Python's `MetricUnit` member names too (`CountPerSecond`,
                    // `NoUnit`), which its `add_metric` takes as well (found by an attack from
                    // the docs).
                    "NoUnit" => Ok(Unit::None),
                    _ => Unit::ALL
                        .iter()
                        .copied()
                        .find(|unit| unit.member_name() == text)
                        .ok_or_else(|| Error::InvalidUnit { unit: text.to_owned() }),
                }
            }
        }

        impl Unit {
            /// The variant's name, as Powertools for Python names its `MetricUnit` member
            /// (`None` aside, which Python calls `NoUnit`).
            const fn member_name(self) -> &'static str {
                match self {
                    $(Unit::$variant => stringify!($variant),)*
                }
            }
        }
    };
}

units! {
    /// `Seconds`
    Seconds => "Seconds",
    /// `Microseconds`
    Microseconds => "Microseconds",
    /// `Milliseconds`
    Milliseconds => "Milliseconds",
    /// `Bytes`
    Bytes => "Bytes",
    /// `Kilobytes`
    Kilobytes => "Kilobytes",
    /// `Megabytes`
    Megabytes => "Megabytes",
    /// `Gigabytes`
    Gigabytes => "Gigabytes",
    /// `Terabytes`
    Terabytes => "Terabytes",
    /// `Bits`
    Bits => "Bits",
    /// `Kilobits`
    Kilobits => "Kilobits",
    /// `Megabits`
    Megabits => "Megabits",
    /// `Gigabits`
    Gigabits => "Gigabits",
    /// `Terabits`
    Terabits => "Terabits",
    /// `Percent`
    Percent => "Percent",
    /// `Count`
    Count => "Count",
    /// `Bytes/Second`
    BytesPerSecond => "Bytes/Second",
    /// `Kilobytes/Second`
    KilobytesPerSecond => "Kilobytes/Second",
    /// `Megabytes/Second`
    MegabytesPerSecond => "Megabytes/Second",
    /// `Gigabytes/Second`
    GigabytesPerSecond => "Gigabytes/Second",
    /// `Terabytes/Second`
    TerabytesPerSecond => "Terabytes/Second",
    /// `Bits/Second`
    BitsPerSecond => "Bits/Second",
    /// `Kilobits/Second`
    KilobitsPerSecond => "Kilobits/Second",
    /// `Megabits/Second`
    MegabitsPerSecond => "Megabits/Second",
    /// `Gigabits/Second`
    GigabitsPerSecond => "Gigabits/Second",
    /// `Terabits/Second`
    TerabitsPerSecond => "Terabits/Second",
    /// `Count/Second`
    CountPerSecond => "Count/Second",
    /// `None`: a value without a unit.
    None => "None",
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How finely CloudWatch stores a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Resolution {
    /// One-minute resolution (`60`), the default; not written to the document.
    #[default]
    Standard,
    /// One-second resolution (`1`), priced higher; written as `"StorageResolution": 1`.
    High,
}

/// Every unit's CloudWatch spelling, separated by commas, for the error of a unit that is none.
pub(crate) fn unit_names() -> String {
    Unit::ALL
        .iter()
        .map(|unit| unit.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Resolution {
    /// `60 (standard)` or `1 (high)`, for messages.
    pub(crate) const fn described(self) -> &'static str {
        match self {
            Resolution::Standard => "60 (standard)",
            Resolution::High => "1 (high)",
        }
    }

    /// The resolution in seconds, as EMF writes it.
    pub const fn seconds(self) -> u8 {
        match self {
            Resolution::Standard => 60,
            Resolution::High => 1,
        }
    }
}

impl TryFrom<u64> for Resolution {
    type Error = Error;

    /// `60` or `1`; anything else is [`Error::InvalidResolution`].
    fn try_from(seconds: u64) -> Result<Self, Error> {
        match seconds {
            60 => Ok(Resolution::Standard),
            1 => Ok(Resolution::High),
            other => Err(Error::InvalidResolution { seconds: other }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_27_cloudwatch_standard_units_round_trip() {
        // 26 units plus `None`, as CloudWatch's StandardUnit and Powertools' MetricUnit list them.
        assert_eq!(Unit::ALL.len(), 27);
        for unit in Unit::ALL {
            assert_eq!(unit.as_str().parse::<Unit>().unwrap(), *unit);
        }
    }

    /// Every `MetricUnit` member name of Powertools for Python 3.37 parses to the unit its
    /// value names (Python's `add_metric` takes both): `CountPerSecond` was refused (found by
    /// an attack from the docs).
    #[test]
    fn python_s_member_names_parse_to_their_units() {
        let python = [
            ("Seconds", "Seconds"),
            ("Microseconds", "Microseconds"),
            ("Milliseconds", "Milliseconds"),
            ("Bytes", "Bytes"),
            ("Kilobytes", "Kilobytes"),
            ("Megabytes", "Megabytes"),
            ("Gigabytes", "Gigabytes"),
            ("Terabytes", "Terabytes"),
            ("Bits", "Bits"),
            ("Kilobits", "Kilobits"),
            ("Megabits", "Megabits"),
            ("Gigabits", "Gigabits"),
            ("Terabits", "Terabits"),
            ("Percent", "Percent"),
            ("Count", "Count"),
            ("BytesPerSecond", "Bytes/Second"),
            ("KilobytesPerSecond", "Kilobytes/Second"),
            ("MegabytesPerSecond", "Megabytes/Second"),
            ("GigabytesPerSecond", "Gigabytes/Second"),
            ("TerabytesPerSecond", "Terabytes/Second"),
            ("BitsPerSecond", "Bits/Second"),
            ("KilobitsPerSecond", "Kilobits/Second"),
            ("MegabitsPerSecond", "Megabits/Second"),
            ("GigabitsPerSecond", "Gigabits/Second"),
            ("TerabitsPerSecond", "Terabits/Second"),
            ("CountPerSecond", "Count/Second"),
            ("NoUnit", "None"),
        ];
        for (name, value) in python {
            assert_eq!(name.parse::<Unit>().unwrap().as_str(), value, "{name}");
        }
        assert!("countpersecond".parse::<Unit>().is_err());
    }

    #[test]
    fn unknown_units_and_resolutions_are_typed_errors() {
        assert!(matches!(
            "Count/Minute".parse::<Unit>(),
            Err(Error::InvalidUnit { unit }) if unit == "Count/Minute"
        ));
        assert_eq!(Resolution::try_from(1).unwrap(), Resolution::High);
        assert_eq!(Resolution::try_from(60).unwrap(), Resolution::Standard);
        assert!(matches!(
            Resolution::try_from(5),
            Err(Error::InvalidResolution { seconds: 5 })
        ));
    }
}
