//! Reading and parsing environment variables, written once for every crate.
//!
//! Each utility crate declares the names of its own variables and reads them through [`Env`], so
//! that every malformed value becomes the same typed [`Error`] naming the variable.

use std::collections::HashMap;
use std::ffi::OsString;
use std::str::FromStr;
use std::sync::Arc;

use crate::Error;

/// Names of the environment variables read by `powertools-core`.
pub mod vars {
    /// Service name shown in logs, metrics and traces; defaults to `service_undefined`.
    pub const POWERTOOLS_SERVICE_NAME: &str = "POWERTOOLS_SERVICE_NAME";
    /// Development mode: pretty output, metrics and tracing off unless enabled explicitly.
    pub const POWERTOOLS_DEV: &str = "POWERTOOLS_DEV";
    /// Set by Lambda: the function's name.
    pub const AWS_LAMBDA_FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
    /// Set by Lambda: the function's version (`$LATEST` or a number).
    pub const AWS_LAMBDA_FUNCTION_VERSION: &str = "AWS_LAMBDA_FUNCTION_VERSION";
    /// Set by Lambda: the memory configured for the function, in MB.
    pub const AWS_LAMBDA_FUNCTION_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
    /// Set by Lambda: how the execution environment was initialised.
    pub const AWS_LAMBDA_INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
    /// Set by Lambda Managed Instances: how many invocations one process may run at once.
    pub const AWS_LAMBDA_MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";
    /// Set by Lambda: the AWS Region the function runs in.
    pub const AWS_REGION: &str = "AWS_REGION";
    /// The SDKs' fallback for [`AWS_REGION`].
    pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
}

/// A source of environment variables: the process environment, or a fixed set of values.
///
/// Reading through a fixed set keeps tests independent of the process environment, which is
/// shared by every test thread; it also lets a function override variables in code.
/// An empty value counts as unset, as it does in the Lambda console.
///
/// ```
/// use powertools_core::env::Env;
///
/// let env = Env::from_pairs([("POWERTOOLS_DEV", "true"), ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots")]);
/// assert_eq!(env.bool("POWERTOOLS_DEV"), Ok(Some(true)));
/// let error = env.parse::<u32>("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "a whole number of MB").unwrap_err();
/// assert!(error.to_string().contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Env {
    fixed: Option<Arc<HashMap<String, OsString>>>,
}

impl Env {
    /// Reads the process environment.
    pub const fn process() -> Self {
        Env { fixed: None }
    }

    /// A source in which every variable is unset (tests that must not see the machine's).
    pub fn empty() -> Self {
        Self::from_pairs::<_, String, String>([])
    }

    /// Reads only the given variables; everything else is unset.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<OsString>,
    {
        let vars = pairs
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .collect();
        Env {
            fixed: Some(Arc::new(vars)),
        }
    }

    fn raw(&self, name: &str) -> Option<OsString> {
        let value = match &self.fixed {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var_os(name),
        };
        value.filter(|value| !value.is_empty())
    }

    /// The variable's value, `None` when unset or empty.
    ///
    /// # Errors
    /// [`Error::NonUnicodeEnvVar`] when the value is not valid UTF-8.
    pub fn string(&self, name: &str) -> Result<Option<String>, Error> {
        self.raw(name)
            .map(|value| {
                value
                    .into_string()
                    .map_err(|value| Error::NonUnicodeEnvVar {
                        name: name.to_owned(),
                        value: shown_os(&value),
                    })
            })
            .transpose()
    }

    /// Whether the variable holds something other than white space (a value that is not UTF-8
    /// counts): for a variable that is not read, only named when set.
    ///
    /// ```
    /// use powertools_core::env::Env;
    ///
    /// let env = Env::from_pairs([("A", "gzip"), ("B", " ")]);
    /// assert!(env.is_set("A"));
    /// assert!(!env.is_set("B") && !env.is_set("C"));
    /// ```
    pub fn is_set(&self, name: &str) -> bool {
        self.raw(name)
            .is_some_and(|value| value.to_str().is_none_or(|value| !value.trim().is_empty()))
    }

    /// A boolean in the forms Powertools accepts (`true/false`, `1/0`, `yes/no`, `y/n`, `on/off`,
    /// `t/f`, any case, trimmed), `None` when unset, empty or whitespace only.
    ///
    /// # Errors
    /// [`Error::InvalidEnvVar`] for any other value.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, Error> {
        self.parse_with(
            name,
            "a boolean (true/false, 1/0, yes/no, on/off)",
            |value| match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
                "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
                _ => None,
            },
        )
    }

    /// Any value that implements [`FromStr`], trimmed; `None` when unset, empty or whitespace
    /// only.
    ///
    /// `expected` describes a valid value for the error message, for example `"a number of seconds"`.
    ///
    /// # Errors
    /// [`Error::InvalidEnvVar`] when the value does not parse.
    pub fn parse<T: FromStr>(
        &self,
        name: &str,
        expected: &'static str,
    ) -> Result<Option<T>, Error> {
        self.parse_with(name, expected, |value| value.trim().parse().ok())
    }

    /// A value parsed by `parse`, which returns `None` for an invalid value; `None` when unset,
    /// empty or whitespace only (parsed values are trimmed, so spaces alone are the empty value,
    /// as invisible in the Lambda console).
    ///
    /// # Errors
    /// [`Error::InvalidEnvVar`] when `parse` rejects the value.
    pub fn parse_with<T>(
        &self,
        name: &str,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        let Some(value) = self.string(name)? else {
            return Ok(None);
        };
        if value.trim().is_empty() {
            return Ok(None);
        }
        match parse(&value) {
            Some(parsed) => Ok(Some(parsed)),
            None => Err(Error::InvalidEnvVar {
                name: name.to_owned(),
                value,
                expected,
            }),
        }
    }
}

/// The level names every crate accepts in a level variable (`POWERTOOLS_LOG_LEVEL`, `LOG_LEVEL`,
/// `AWS_LAMBDA_LOG_LEVEL`), as an error message lists them: one list, so that the logger and the
/// metrics layer refuse a value with the same words.
pub const LOG_LEVEL_NAMES: &str =
    "TRACE, DEBUG, INFO, WARN, WARNING, ERROR, FATAL or CRITICAL (any case)";

/// The most characters of a value that an error message shows: a mistaken or hostile value can
/// be megabytes, and its start is enough to recognise it.
pub const MAX_SHOWN_CHARS: usize = 64;

/// `value` as an error message shows it: quoted and escaped as Rust's `Debug` writes a string
/// (a tab is `\t`, so that an invisible character is visible), cut after
/// [`MAX_SHOWN_CHARS`] characters, on a character boundary, with `…` after the closing quote.
///
/// ```
/// use powertools_core::env::{MAX_SHOWN_CHARS, shown};
///
/// assert_eq!(shown("Zürich\t"), r#""Zürich\t""#);
/// assert_eq!(shown(&"é".repeat(1000)), format!("\"{}\"…", "é".repeat(MAX_SHOWN_CHARS)));
/// ```
pub fn shown(value: &str) -> String {
    match shown_end(value) {
        Some(end) => format!("{:?}…", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// `value` cut as [`shown`] cuts it, without the quotes and escapes: for a log line's field,
/// which a query compares with the text itself (`metric = "OrdersAccepted"`).
///
/// ```
/// use powertools_core::env::{MAX_SHOWN_CHARS, shown_bare};
///
/// assert_eq!(shown_bare("Orders\t"), "Orders\t");
/// assert_eq!(shown_bare(&"é".repeat(1000)), format!("{}…", "é".repeat(MAX_SHOWN_CHARS)));
/// ```
pub fn shown_bare(value: &str) -> std::borrow::Cow<'_, str> {
    match shown_end(value) {
        Some(end) => std::borrow::Cow::Owned(format!("{}…", &value[..end])),
        None => std::borrow::Cow::Borrowed(value),
    }
}

/// Where [`shown`] cuts `value`, when it is longer than [`MAX_SHOWN_CHARS`] characters.
fn shown_end(value: &str) -> Option<usize> {
    value
        .char_indices()
        .nth(MAX_SHOWN_CHARS)
        .map(|(end, _)| end)
}

/// A value that is not valid UTF-8 as an error message shows it: as [`shown`] writes text, each
/// byte that is not UTF-8 as `\xNN`, so that the user sees which bytes are wrong.
fn shown_os(value: &std::ffi::OsStr) -> String {
    let mut out = String::from("\"");
    let mut left = MAX_SHOWN_CHARS;
    let mut cut = false;
    'chunks: for chunk in value.as_encoded_bytes().utf8_chunks() {
        let valid = chunk.valid();
        let end = match valid.char_indices().nth(left) {
            Some((end, _)) => {
                cut = true;
                end
            }
            None => valid.len(),
        };
        let quoted = format!("{:?}", &valid[..end]);
        // Without the quotes `Debug` puts around it.
        out.push_str(&quoted[1..quoted.len() - 1]);
        if cut {
            break;
        }
        left -= valid.chars().count();
        for byte in chunk.invalid() {
            if left == 0 {
                cut = true;
                break 'chunks;
            }
            out.push_str(&format!("\\x{byte:02X}"));
            left -= 1;
        }
    }
    out.push('"');
    if cut {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_the_powertools_spellings_in_any_case() {
        for (value, expected) in [
            ("TRUE", true),
            ("1", true),
            ("on", true),
            ("No", false),
            ("0", false),
            ("off", false),
        ] {
            let env = Env::from_pairs([("FLAG", value)]);
            assert_eq!(env.bool("FLAG"), Ok(Some(expected)), "{value}");
        }
    }

    #[test]
    fn an_empty_value_counts_as_unset() {
        let env = Env::from_pairs([("FLAG", "")]);
        assert_eq!(env.bool("FLAG"), Ok(None));
        assert_eq!(env.string("FLAG"), Ok(None));
    }

    #[test]
    fn a_malformed_value_names_the_variable_and_the_value() {
        let env = Env::from_pairs([("FLAG", "maybe")]);
        let error = env.bool("FLAG").unwrap_err();
        assert_eq!(
            error,
            Error::InvalidEnvVar {
                name: "FLAG".into(),
                value: "maybe".into(),
                expected: "a boolean (true/false, 1/0, yes/no, on/off)",
            }
        );
        assert_eq!(error.error_type(), "InvalidEnvironmentVariable");
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_a_typed_error() {
        use std::os::unix::ffi::OsStringExt;
        let env = Env::from_pairs([("NAME", OsString::from_vec(vec![0x66, 0xff]))]);
        assert_eq!(
            env.string("NAME"),
            Err(Error::NonUnicodeEnvVar {
                name: "NAME".into(),
                value: r#""f\xFF""#.into(),
            })
        );
    }

    // Found by an attack: the message named the variable only, not which bytes were wrong.
    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_shown_with_its_bytes_escaped_and_cut() {
        use std::os::unix::ffi::OsStringExt;
        let env = Env::from_pairs([(
            "NAME",
            OsString::from_vec(b"caf\xc3\xa9\xff\xfe\tx".to_vec()),
        )]);
        assert_eq!(
            env.string("NAME").unwrap_err().to_string(),
            r#"environment variable NAME is not valid UTF-8: "café\xFF\xFE\tx""#
        );
        let long = Env::from_pairs([("NAME", OsString::from_vec(vec![0xff; 10_000]))]);
        let error = long.string("NAME").unwrap_err().to_string();
        assert!(error.ends_with("\"…"), "{error}");
        assert!(error.len() < 400, "{error}");
    }

    #[test]
    fn numbers_are_trimmed_and_parsed() {
        let env = Env::from_pairs([("N", " 42 ")]);
        assert_eq!(env.parse::<u32>("N", "a number"), Ok(Some(42)));
        assert_eq!(env.parse::<u32>("MISSING", "a number"), Ok(None));
    }

    /// Spaces alone trim to the empty value, which counts as unset: `POWERTOOLS_DEV=" "` (a
    /// template's blank parameter) stopped the function for what the console does not show
    /// (found by an attack from the docs). A text variable keeps its value.
    #[test]
    fn a_parsed_value_of_whitespace_only_counts_as_unset() {
        for blank in [" ", "\t", " \n "] {
            let env = Env::from_pairs([("FLAG", blank), ("N", blank), ("TEXT", blank)]);
            assert_eq!(env.bool("FLAG"), Ok(None), "{blank:?}");
            assert_eq!(env.parse::<u32>("N", "a number"), Ok(None), "{blank:?}");
            assert_eq!(env.string("TEXT"), Ok(Some(blank.to_owned())), "{blank:?}");
        }
        let config = crate::PowertoolsConfig::from_env_source(&Env::from_pairs([
            ("POWERTOOLS_DEV", " "),
            ("AWS_LAMBDA_MAX_CONCURRENCY", " "),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "  "),
        ]))
        .unwrap();
        assert!(!config.dev_mode());
        assert_eq!(config.max_concurrency(), None);
        assert_eq!(config.function_memory_size(), None);
    }
}
