use std::fmt;

use crate::Error;
use crate::env::{Env, vars};

/// The service name used when `POWERTOOLS_SERVICE_NAME` is not set, as in every Powertools runtime.
pub const DEFAULT_SERVICE_NAME: &str = "service_undefined";

/// How Lambda initialised this execution environment (`AWS_LAMBDA_INITIALIZATION_TYPE`).
///
/// Provisioned concurrency initialises environments ahead of traffic, so their first invocation
/// is not a cold start as users experience it; Powertools reports no cold start for them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InitializationType {
    /// `on-demand`: the environment was started for an invocation (also assumed when unset).
    #[default]
    OnDemand,
    /// `provisioned-concurrency`: the environment was started ahead of traffic.
    ProvisionedConcurrency,
    /// `snap-start`: the environment was restored from a SnapStart snapshot.
    SnapStart,
    /// `lambda-managed-instances`: the environment runs on Lambda Managed Instances.
    ManagedInstances,
    /// A value this version does not know yet, kept as Lambda sent it.
    Other(String),
}

impl InitializationType {
    /// Parses the value of `AWS_LAMBDA_INITIALIZATION_TYPE`.
    pub fn from_wire(value: &str) -> Self {
        match value {
            "on-demand" => InitializationType::OnDemand,
            "provisioned-concurrency" => InitializationType::ProvisionedConcurrency,
            "snap-start" => InitializationType::SnapStart,
            "lambda-managed-instances" => InitializationType::ManagedInstances,
            other => InitializationType::Other(other.to_owned()),
        }
    }

    /// The value as Lambda writes it.
    pub fn as_str(&self) -> &str {
        match self {
            InitializationType::OnDemand => "on-demand",
            InitializationType::ProvisionedConcurrency => "provisioned-concurrency",
            InitializationType::SnapStart => "snap-start",
            InitializationType::ManagedInstances => "lambda-managed-instances",
            InitializationType::Other(other) => other,
        }
    }

    /// Whether the first invocation of such an environment counts as a cold start.
    pub fn has_cold_start(&self) -> bool {
        !matches!(self, InitializationType::ProvisionedConcurrency)
    }
}

impl fmt::Display for InitializationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Configuration shared by every utility, read from the standard Powertools and Lambda variables.
///
/// Values set in code win over the environment, which wins over the defaults.
///
/// ```
/// use powertools_core::{PowertoolsConfig, env::Env};
///
/// let env = Env::from_pairs([
///     ("POWERTOOLS_SERVICE_NAME", "orders"),
///     ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
/// ]);
/// let config = PowertoolsConfig::from_env_source(&env)?.with_region("eu-west-1");
/// assert_eq!(config.service_name(), "orders");
/// assert_eq!(config.function_memory_size(), Some(512));
/// assert_eq!(config.region(), Some("eu-west-1"));
/// assert!(!config.dev_mode());
/// # Ok::<(), powertools_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowertoolsConfig {
    service_name: String,
    dev_mode: bool,
    function_name: Option<String>,
    function_version: Option<String>,
    function_memory_size: Option<u32>,
    region: Option<String>,
    initialization_type: InitializationType,
    max_concurrency: Option<u32>,
}

impl Default for PowertoolsConfig {
    fn default() -> Self {
        PowertoolsConfig {
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            dev_mode: false,
            function_name: None,
            function_version: None,
            function_memory_size: None,
            region: None,
            initialization_type: InitializationType::OnDemand,
            max_concurrency: None,
        }
    }
}

/// The most invocations Lambda runs at once in one execution environment (Lambda Managed
/// Instances' `PerExecutionEnvironmentMaxConcurrency`): a larger `AWS_LAMBDA_MAX_CONCURRENCY`
/// is refused.
///
/// ```
/// assert_eq!(powertools_core::MAX_CONCURRENCY, 1600);
/// ```
pub const MAX_CONCURRENCY: u32 = 1600;

impl PowertoolsConfig {
    /// Reads the process environment.
    ///
    /// # Errors
    /// A typed [`Error`] naming the first variable whose value is malformed.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_env_source(&Env::process())
    }

    /// Reads the given environment source.
    ///
    /// # Errors
    /// A typed [`Error`] naming the first variable whose value is malformed.
    pub fn from_env_source(env: &Env) -> Result<Self, Error> {
        let defaults = PowertoolsConfig::default();
        Ok(PowertoolsConfig {
            service_name: env
                .string(vars::POWERTOOLS_SERVICE_NAME)?
                .unwrap_or(defaults.service_name),
            dev_mode: env.bool(vars::POWERTOOLS_DEV)?.unwrap_or(defaults.dev_mode),
            function_name: env.string(vars::AWS_LAMBDA_FUNCTION_NAME)?,
            function_version: env.string(vars::AWS_LAMBDA_FUNCTION_VERSION)?,
            function_memory_size: env.parse_with(
                vars::AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
                "a positive whole number of MB",
                |value| value.trim().parse().ok().filter(|mb: &u32| *mb > 0),
            )?,
            region: match env.string(vars::AWS_REGION)? {
                Some(region) => Some(region),
                None => env.string(vars::AWS_DEFAULT_REGION)?,
            },
            initialization_type: env
                .string(vars::AWS_LAMBDA_INITIALIZATION_TYPE)?
                .map(|value| InitializationType::from_wire(&value))
                .unwrap_or_default(),
            max_concurrency: env.parse_with(
                vars::AWS_LAMBDA_MAX_CONCURRENCY,
                "a whole number from 1 to 1600 (Lambda's maximum), without spaces (as \
                 lambda_runtime reads it)",
                // Read as `lambda_runtime` reads it (an untrimmed `u32`), so that the runtime and
                // Powertools never disagree on whether invocations run at once: the runtime
                // reads " 4" as unset and runs one at a time. Above Lambda's maximum, the
                // runtime started that many workers, each asking for the next invocation, and
                // stopped answering (found by an attack from the docs: 99999999).
                |value| {
                    value
                        .parse()
                        .ok()
                        .filter(|n: &u32| (1..=MAX_CONCURRENCY).contains(n))
                },
            )?,
        })
    }

    /// The service name (`POWERTOOLS_SERVICE_NAME`, default `service_undefined`).
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Whether development mode is on (`POWERTOOLS_DEV`, default off).
    pub fn dev_mode(&self) -> bool {
        self.dev_mode
    }

    /// The function name (`AWS_LAMBDA_FUNCTION_NAME`), if known.
    pub fn function_name(&self) -> Option<&str> {
        self.function_name.as_deref()
    }

    /// The function version (`AWS_LAMBDA_FUNCTION_VERSION`), if known.
    pub fn function_version(&self) -> Option<&str> {
        self.function_version.as_deref()
    }

    /// The configured memory in MB (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`), if known.
    pub fn function_memory_size(&self) -> Option<u32> {
        self.function_memory_size
    }

    /// The AWS Region (`AWS_REGION`, then `AWS_DEFAULT_REGION`), if known.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// How Lambda initialised this environment (`AWS_LAMBDA_INITIALIZATION_TYPE`).
    pub fn initialization_type(&self) -> &InitializationType {
        &self.initialization_type
    }

    /// How many invocations the runtime may run at once (`AWS_LAMBDA_MAX_CONCURRENCY`, 1 to
    /// 1600), if set.
    pub fn max_concurrency(&self) -> Option<u32> {
        self.max_concurrency
    }

    /// Sets the service name.
    #[must_use]
    pub fn with_service_name(mut self, service_name: impl Into<String>) -> Self {
        self.service_name = service_name.into();
        self
    }

    /// Turns development mode on or off.
    #[must_use]
    pub fn with_dev_mode(mut self, dev_mode: bool) -> Self {
        self.dev_mode = dev_mode;
        self
    }

    /// Sets the function name.
    #[must_use]
    pub fn with_function_name(mut self, function_name: impl Into<String>) -> Self {
        self.function_name = Some(function_name.into());
        self
    }

    /// Sets the function version.
    #[must_use]
    pub fn with_function_version(mut self, function_version: impl Into<String>) -> Self {
        self.function_version = Some(function_version.into());
        self
    }

    /// Sets the memory size in MB.
    #[must_use]
    pub fn with_function_memory_size(mut self, megabytes: u32) -> Self {
        self.function_memory_size = Some(megabytes);
        self
    }

    /// Sets the AWS Region.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the initialization type.
    #[must_use]
    pub fn with_initialization_type(mut self, initialization_type: InitializationType) -> Self {
        self.initialization_type = initialization_type;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config =
            PowertoolsConfig::from_env_source(&Env::from_pairs::<_, &str, &str>([])).unwrap();
        assert_eq!(config, PowertoolsConfig::default());
        assert_eq!(config.service_name(), "service_undefined");
        assert_eq!(config.initialization_type(), &InitializationType::OnDemand);
    }

    #[test]
    fn every_variable_is_read() {
        let env = Env::from_pairs([
            ("POWERTOOLS_SERVICE_NAME", "orders"),
            ("POWERTOOLS_DEV", "1"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders-api"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency"),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
        ]);
        let config = PowertoolsConfig::from_env_source(&env).unwrap();
        assert_eq!(config.service_name(), "orders");
        assert!(config.dev_mode());
        assert_eq!(config.function_name(), Some("orders-api"));
        assert_eq!(config.function_version(), Some("$LATEST"));
        assert_eq!(config.function_memory_size(), Some(1024));
        assert_eq!(config.region(), Some("eu-west-1"));
        assert_eq!(
            config.initialization_type(),
            &InitializationType::ProvisionedConcurrency
        );
        assert!(!config.initialization_type().has_cold_start());
        assert_eq!(config.max_concurrency(), Some(8));
    }

    #[test]
    fn aws_region_wins_over_the_sdk_fallback() {
        let env = Env::from_pairs([
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]);
        let config = PowertoolsConfig::from_env_source(&env).unwrap();
        assert_eq!(config.region(), Some("us-east-1"));
    }

    #[test]
    fn values_set_in_code_win_over_the_environment() {
        let env = Env::from_pairs([("POWERTOOLS_SERVICE_NAME", "from-env")]);
        let config = PowertoolsConfig::from_env_source(&env)
            .unwrap()
            .with_service_name("from-code")
            .with_dev_mode(true)
            .with_function_name("f")
            .with_function_version("7")
            .with_function_memory_size(256)
            .with_initialization_type(InitializationType::SnapStart);
        assert_eq!(config.service_name(), "from-code");
        assert!(config.dev_mode());
        assert_eq!(config.function_name(), Some("f"));
        assert_eq!(config.function_version(), Some("7"));
        assert_eq!(config.function_memory_size(), Some(256));
        assert_eq!(config.initialization_type().to_string(), "snap-start");
    }

    #[test]
    fn every_malformed_variable_gives_its_typed_error() {
        let cases = [
            ("POWERTOOLS_DEV", "sometimes"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "big"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "-128"),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "0"),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "many"),
            // `lambda_runtime` reads it untrimmed, and runs one invocation at a time for " 4":
            // the tracer took it as 4 and exported in the background (found by an attack).
            ("AWS_LAMBDA_MAX_CONCURRENCY", " 4"),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "4 "),
            // Over Lambda's maximum (1600): `lambda_runtime` started that many workers, each
            // asking for the next invocation, and stopped answering (found by an attack).
            ("AWS_LAMBDA_MAX_CONCURRENCY", "1601"),
            ("AWS_LAMBDA_MAX_CONCURRENCY", "99999999"),
        ];
        for (name, value) in cases {
            let error =
                PowertoolsConfig::from_env_source(&Env::from_pairs([(name, value)])).unwrap_err();
            match &error {
                Error::InvalidEnvVar {
                    name: got_name,
                    value: got_value,
                    ..
                } => {
                    assert_eq!((got_name.as_str(), got_value.as_str()), (name, value));
                }
                other => panic!("{name}={value}: unexpected {other:?}"),
            }
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn every_string_variable_rejects_non_utf8() {
        use std::os::unix::ffi::OsStringExt;
        for name in [
            "POWERTOOLS_SERVICE_NAME",
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_LAMBDA_INITIALIZATION_TYPE",
        ] {
            let env = Env::from_pairs([(name, std::ffi::OsString::from_vec(vec![0xc3, 0x28]))]);
            assert_eq!(
                PowertoolsConfig::from_env_source(&env),
                Err(Error::NonUnicodeEnvVar {
                    name: name.into(),
                    value: r#""\xC3(""#.into(),
                })
            );
        }
    }

    #[test]
    fn unknown_initialization_types_are_kept() {
        let env = Env::from_pairs([("AWS_LAMBDA_INITIALIZATION_TYPE", "future-mode")]);
        let config = PowertoolsConfig::from_env_source(&env).unwrap();
        assert_eq!(
            config.initialization_type(),
            &InitializationType::Other("future-mode".into())
        );
        assert!(config.initialization_type().has_cold_start());
    }
}
