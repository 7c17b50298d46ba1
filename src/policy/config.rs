//! Policies from a configuration file (feature `serde`): defaults and a policy per
//! downstream, in TOML or YAML.
//!
//! A platform team writes one file; each service loads it with
//! [`PolicyConfig::from_path`] (or [`from_toml_str`](PolicyConfig::from_toml_str),
//! [`from_yaml_str`](PolicyConfig::from_yaml_str)) and builds the policy of each
//! downstream with [`PolicyConfig::policy`], or takes its [`PolicyBuilder`] with
//! [`PolicyConfig::builder`] to add what a file cannot say (a classifier, a replay).
//!
//! **A config that loads builds.** Loading checks every value the way the builders do,
//! by building every policy (and the policy of the defaults alone): a value that a
//! builder would refuse is an error of the load, naming the key that holds it, e.g.
//! `policies.payments.circuit_breaker.failure_rate`. So is an unknown key (every table is
//! closed), a value of the wrong type, a bad duration or a bad name of a choice; the
//! error has the line and column where the format gives them
//! ([`ConfigFileError`]). Once a file has loaded, [`PolicyConfig::policy`] cannot fail
//! on its values. (The policies built to check the file are dropped at once; with the
//! `metrics` feature they have registered their series, the defaults' under the
//! `policy` label `defaults`.)
//!
//! ```
//! use seawall::policy::PolicyConfig;
//! use std::time::Duration;
//!
//! let config = PolicyConfig::from_toml_str(r#"
//!     [defaults]
//!     deadline = "2s"
//!     attempt_timeout = "500ms"
//!     retry = { max_attempts = 3, backoff = { base = "25ms", max = "250ms", jitter = "full" } }
//!     budget = { ratio = 0.2, min_per_sec = 10.0, window = "10s" }
//!     circuit_breaker = { window = { count = 100 }, failure_rate = 0.5, minimum_calls = 20 }
//!     bulkhead = { max_concurrent = 25 }
//!
//!     [policies.payments]
//!     deadline = "5s"
//!     retry = { max_attempts = 2 }       # backoff still from the defaults
//!     circuit_breaker = { consecutive_failures = 5, open_duration = "10s" }
//!
//!     [policies.search]
//!     attempt_timeout = "150ms"
//!     hedge = { percentile = 0.95, min_samples = 200 }
//!     bulkhead = { max_concurrent = 100, max_wait = "20ms" }
//! "#)?;
//!
//! let payments = config.policy("payments")?;
//! assert_eq!(payments.handle().deadline(), Some(Duration::from_secs(5)));
//! assert_eq!(payments.handle().attempt_timeout(), Some(Duration::from_millis(500)));
//! assert!(payments.handle().hedge().is_none());
//!
//! let search = config.policy("search")?;
//! assert_eq!(search.handle().bulkhead().unwrap().limit(), 100);
//! assert!(search.handle().hedge().is_some());
//!
//! // A downstream the file does not name gets the defaults.
//! assert!(!config.contains("ledger"));
//! assert_eq!(config.policy("ledger")?.handle().deadline(), Some(Duration::from_secs(2)));
//! # Ok::<(), seawall::policy::ConfigFileError>(())
//! ```
//!
//! The same file in YAML:
//!
//! ```
//! use seawall::policy::PolicyConfig;
//! use std::time::Duration;
//!
//! let config = PolicyConfig::from_yaml_str(r#"
//! defaults:
//!   deadline: 2s
//!   attempt_timeout: 500ms
//!   retry: { max_attempts: 3, backoff: { base: 25ms, max: 250ms, jitter: full } }
//!   budget: { ratio: 0.2, min_per_sec: 10.0, window: 10s }
//!   circuit_breaker: { window: { count: 100 }, failure_rate: 0.5, minimum_calls: 20 }
//!   bulkhead: { max_concurrent: 25 }
//! policies:
//!   payments:
//!     deadline: 5s
//!     retry: { max_attempts: 2 }
//!     circuit_breaker: { consecutive_failures: 5, open_duration: 10s }
//!   search:
//!     attempt_timeout: 150ms
//!     hedge: { percentile: 0.95, min_samples: 200 }
//!     bulkhead: { max_concurrent: 100, max_wait: 20ms }
//! "#)?;
//! assert_eq!(config.policy("payments")?.handle().deadline(), Some(Duration::from_secs(5)));
//!
//! // An unknown key is an error that names it.
//! let err = PolicyConfig::from_yaml_str("policies:\n  payments:\n    retry: { max_atempts: 2 }\n")
//!     .unwrap_err();
//! assert_eq!(err.path(), "policies.payments.retry.max_atempts");
//! assert_eq!(err.line(), Some(3));
//! # Ok::<(), seawall::policy::ConfigFileError>(())
//! ```
//!
//! # The schema
//!
//! The file has two tables, both optional: `defaults`, and `policies`, a table of
//! policies by name. Each is a [`StageSettings`]; every key in it is optional, and a key
//! left out keeps the default of [`Policy::builder`](super::Policy::builder) (see the
//! policy's [defaults](super#defaults)).
//!
//! | key | value | builder call |
//! |---|---|---|
//! | `deadline` | duration or `"off"` | [`deadline`](PolicyBuilder::deadline), [`without_deadline`](PolicyBuilder::without_deadline) |
//! | `attempt_timeout` | duration or `"off"` | [`attempt_timeout`](PolicyBuilder::attempt_timeout), [`without_attempt_timeout`](PolicyBuilder::without_attempt_timeout) |
//! | `retry.enabled` | bool | [`without_retry`](PolicyBuilder::without_retry) when `false` |
//! | `retry.max_attempts` | integer | [`max_attempts`](crate::retry::Builder::max_attempts) |
//! | `retry.max_pushback` | duration | [`max_pushback`](crate::retry::Builder::max_pushback) |
//! | `retry.backoff.base`, `.max` | duration | [`ExponentialBackoffBuilder`](crate::retry::backoff::ExponentialBackoffBuilder) |
//! | `retry.backoff.multiplier` | number | [`multiplier`](crate::retry::backoff::ExponentialBackoffBuilder::multiplier) |
//! | `retry.backoff.jitter` | `"none"`, `"full"`, `"equal"`, `"decorrelated"` | [`jitter`](crate::retry::backoff::ExponentialBackoffBuilder::jitter) |
//! | `budget.ratio`, `.min_per_sec` | number | [`RetryBudgetBuilder`](crate::retry::budget::RetryBudgetBuilder), then [`budget`](PolicyBuilder::budget) |
//! | `budget.window` | duration | [`window`](crate::retry::budget::RetryBudgetBuilder::window) |
//! | `budget.buckets` | integer | [`buckets`](crate::retry::budget::RetryBudgetBuilder::buckets) |
//! | `hedge.enabled` | bool | [`hedge`](PolicyBuilder::hedge), [`without_hedge`](PolicyBuilder::without_hedge) |
//! | `hedge.delay` | duration | [`delay`](crate::hedge::Builder::delay) |
//! | `hedge.percentile` | number | [`percentile`](crate::hedge::Builder::percentile) |
//! | `hedge.window` | duration | [`window`](crate::hedge::Builder::window) |
//! | `hedge.min_samples`, `.max_hedges` | integer | [`min_samples`](crate::hedge::Builder::min_samples), [`max_hedges`](crate::hedge::Builder::max_hedges) |
//! | `circuit_breaker.enabled` | bool | [`without_circuit_breaker`](PolicyBuilder::without_circuit_breaker) when `false` |
//! | `circuit_breaker.window` | `{ count = N }` or `{ time = duration, buckets = N }` (buckets default 10) | [`count_window`](crate::circuit_breaker::Builder::count_window), [`time_window`](crate::circuit_breaker::Builder::time_window) |
//! | `circuit_breaker.failure_rate` | number or `"off"` | [`failure_rate`](crate::circuit_breaker::Builder::failure_rate), [`without_failure_rate`](crate::circuit_breaker::Builder::without_failure_rate) |
//! | `circuit_breaker.minimum_calls` | integer | [`minimum_calls`](crate::circuit_breaker::Builder::minimum_calls) |
//! | `circuit_breaker.slow_call_rate` | number or `"off"` | [`slow_calls`](crate::circuit_breaker::Builder::slow_calls) (the rate) |
//! | `circuit_breaker.slow_call_duration` | duration | [`slow_calls`](crate::circuit_breaker::Builder::slow_calls) (the threshold) |
//! | `circuit_breaker.consecutive_failures` | integer or `"off"` | [`consecutive_failures`](crate::circuit_breaker::Builder::consecutive_failures) |
//! | `circuit_breaker.open_duration`, `.max_open_duration` | duration | [`open_duration`](crate::circuit_breaker::Builder::open_duration), [`max_open_duration`](crate::circuit_breaker::Builder::max_open_duration) |
//! | `circuit_breaker.open_duration_multiplier` | number | [`open_duration_multiplier`](crate::circuit_breaker::Builder::open_duration_multiplier) |
//! | `circuit_breaker.jitter` | number | [`jitter`](crate::circuit_breaker::Builder::jitter) |
//! | `circuit_breaker.reset_backoff_after` | duration | [`reset_backoff_after`](crate::circuit_breaker::Builder::reset_backoff_after) |
//! | `circuit_breaker.half_open_probes` | integer | [`half_open_probes`](crate::circuit_breaker::Builder::half_open_probes) |
//! | `circuit_breaker.max_half_open_duration` | duration | [`max_half_open_duration`](crate::circuit_breaker::Builder::max_half_open_duration) |
//! | `circuit_breaker.readiness` | `"fail-fast"`, `"backpressure"` | [`readiness`](crate::circuit_breaker::Builder::readiness) |
//! | `bulkhead.enabled` | bool | [`without_bulkhead`](PolicyBuilder::without_bulkhead) when `false` |
//! | `bulkhead.max_concurrent`, `.max_waiting` | integer | [`max_concurrent`](crate::bulkhead::Builder::max_concurrent), [`max_waiting`](crate::bulkhead::Builder::max_waiting) |
//! | `bulkhead.max_wait` | duration | [`max_wait`](crate::bulkhead::Builder::max_wait) |
//!
//! `slow_call_rate` and `slow_call_duration` go together: one without the other is an
//! error (`slow_call_rate = "off"` switches the rule off whatever the duration).
//! What a policy sets once for every stage (its classifier, its replay, when the
//! bulkhead releases a permit) is code, not configuration: add it to the
//! [builder](PolicyConfig::builder). Adaptive bulkhead limits, bulkhead partitions and
//! the seeds of the random generators are not in the file.
//!
//! ## Switching stages on and off
//!
//! Each stage table but `budget` has an `enabled` key. A stage is on when its `enabled`
//! (after merging, below) is `true`, or when it is not set and the stage's table is
//! written (in the defaults or in the policy). A stage whose table is written nowhere
//! keeps the policy's default: hedging off, every other stage on. So
//! `hedge = { delay = "50ms" }` switches hedging on, and `bulkhead = { enabled = false }`
//! switches the bulkhead off. The values of a stage that is off are read (their types,
//! units and keys are checked) but not range-checked, as its builder would not be
//! called.
//!
//! ## Merging a policy over the defaults
//!
//! A policy's settings are its own, over the defaults, key by key: each key the policy
//! sets wins, each key it leaves out is the defaults' (and, if neither sets it, the
//! builder's default). Nested tables merge the same way, key by key, at every depth:
//! `retry = { max_attempts = 2 }` in a policy keeps the defaults' `retry.backoff` and
//! `retry.enabled`. A value is never merged into: a duration, a number, `"off"` and
//! `circuit_breaker.window` (a count window or a time window, as a whole) are replaced.
//! The two triggers of a hedge exclude each other: a policy whose `hedge` sets `delay`
//! drops the defaults' `percentile`, `window` and `min_samples`; one that sets
//! `percentile` drops the defaults' `delay`. [`PolicyConfig::settings`] returns the
//! merged settings of a policy.
//!
//! ## Durations
//!
//! A duration is a string: an integer or decimal number, then a unit, with nothing
//! between them: `ns`, `us` (or `µs`), `ms`, `s`, `m` (minutes), `h`. For example
//! `"250ms"`, `"1.5s"`, `"2m"`, `"0s"`. A number without a unit, a negative number,
//! `NaN`, a compound (`"1m30s"`) or a duration too long to hold is an error naming its
//! key. Digits past the nanosecond are dropped.
//!
//! ## Names of policies and endpoints
//!
//! [`PolicyConfig::policy`] of a name the file does not have returns the policy of the
//! defaults alone, named as asked: any downstream gets a policy, which is what a
//! [`Registry`](super::Registry) needs (see
//! [`Registry::from_config`](super::Registry::from_config)). Ask
//! [`contains`](PolicyConfig::contains) to tell the two apart.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{Policy, PolicyBuilder};
use crate::circuit_breaker::Readiness;
use crate::error::ConfigError;
use crate::retry::backoff::{ExponentialBackoff, Jitter};
use crate::retry::budget::RetryBudget;

/// The buckets of a time window written without `buckets`.
const DEFAULT_TIME_WINDOW_BUCKETS: u32 = 10;

/// Policies loaded from a configuration file: defaults, and settings per downstream;
/// see the [module docs](self) for the schema and the merge rule.
///
/// Every `PolicyConfig` has been checked: each of its policies, and the policy of its
/// defaults alone, builds.
///
/// ```
/// use seawall::classify::{classify_fn, Classification};
/// use seawall::policy::PolicyConfig;
///
/// let config = PolicyConfig::from_toml_str(r#"
///     [policies.users]
///     retry = { max_attempts = 2 }
/// "#)?;
/// // Add what a file cannot say (for HTTP: `seawall::http::StatusClassifier`), then build.
/// let users = config
///     .builder("users")?
///     .classifier(classify_fn(|result: &Result<Option<String>, seawall::BoxError>| match result {
///         Ok(_) => Classification::success(),
///         Err(_) => Classification::failure(),
///     }))
///     .build()?;
/// assert_eq!(users.name(), "users");
/// # Ok::<(), seawall::BoxError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyConfig {
    defaults: StageSettings,
    policies: BTreeMap<String, StageSettings>,
}

/// The file as written, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    defaults: StageSettings,
    #[serde(default, deserialize_with = "unique_policies")]
    policies: BTreeMap<String, StageSettings>,
}

/// The `policies` table, refusing a name given twice. TOML's parser refuses duplicate
/// keys itself; YAML's keeps the last, so a policy written twice would lose its first
/// settings silently.
fn unique_policies<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, StageSettings>, D::Error> {
    struct Policies;

    impl<'de> Visitor<'de> for Policies {
        type Value = BTreeMap<String, StageSettings>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of policies by name")
        }

        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut policies = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                if policies.contains_key(&name) {
                    // Fail as the value is read, so that the error's path names the key.
                    return map.next_value_seed(Duplicate(name));
                }
                let settings = map.next_value()?;
                policies.insert(name, settings);
            }
            Ok(policies)
        }
    }

    /// Refuses the value of a key already given.
    struct Duplicate(String);

    impl<'de> de::DeserializeSeed<'de> for Duplicate {
        type Value = BTreeMap<String, StageSettings>;

        fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<Self::Value, D::Error> {
            Err(de::Error::custom(format_args!(
                "duplicate key `{}`: the policy is already defined above",
                self.0
            )))
        }
    }

    deserializer.deserialize_map(Policies)
}

impl PolicyConfig {
    /// Load and check a TOML document; see the [module docs](self).
    ///
    /// ```
    /// use seawall::policy::PolicyConfig;
    ///
    /// let config = PolicyConfig::from_toml_str("[policies.payments]\ndeadline = \"1s\"\n")?;
    /// assert!(config.contains("payments"));
    ///
    /// let err = PolicyConfig::from_toml_str("[policies.payments]\ndeadline = \"1 second\"\n")
    ///     .unwrap_err();
    /// assert_eq!(err.path(), "policies.payments.deadline");
    /// assert_eq!((err.line(), err.column()), (Some(2), Some(12)));
    /// # Ok::<(), seawall::policy::ConfigFileError>(())
    /// ```
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigFileError> {
        let deserializer = toml::Deserializer::new(toml);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = format_path(err.path());
            let inner = err.into_inner();
            let location = inner.span().map(|span| line_column(toml, span.start));
            let mut message = inner.message().trim().replace('\n', ": ");
            if message.is_empty() {
                // toml says nothing of some syntax errors (`deadline =` at the end).
                message = "invalid TOML: a value is missing or malformed".to_owned();
            }
            ConfigFileError::parse(path, message, location)
        })?;
        // serde reads a TOML array where a table belongs as the table's keys in order
        // (`window = [5]` as `{ count = 5 }`, `retry = [false]` as retries off); no key
        // takes an array, and one anywhere else has already failed above.
        if let Some(path) = toml
            .parse::<toml::Table>()
            .ok()
            .as_ref()
            .and_then(first_array)
        {
            let reason = "invalid type: array, expected a table".to_owned();
            return Err(ConfigFileError::parse(path, reason, None));
        }
        Self::checked(raw)
    }

    /// Load and check a YAML document; see the [module docs](self).
    ///
    /// ```
    /// use seawall::policy::PolicyConfig;
    ///
    /// let config = PolicyConfig::from_yaml_str("policies:\n  payments:\n    deadline: 1s\n")?;
    /// assert!(config.contains("payments"));
    ///
    /// let err = PolicyConfig::from_yaml_str("policies:\n  payments:\n    deadline: 1\n")
    ///     .unwrap_err();
    /// assert_eq!(err.path(), "policies.payments.deadline");
    /// # Ok::<(), seawall::policy::ConfigFileError>(())
    /// ```
    pub fn from_yaml_str(yaml: &str) -> Result<Self, ConfigFileError> {
        let deserializer = serde_yaml::Deserializer::from_str(yaml);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = format_path(err.path());
            let inner = err.into_inner();
            let location = inner
                .location()
                .map(|location| (location.line(), location.column()));
            ConfigFileError::parse(path.clone(), yaml_message(&inner, &path), location)
        })?;
        Self::checked(raw)
    }

    /// Read and check the file at `path`: TOML if its name ends in `.toml`, YAML if in
    /// `.yaml` or `.yml`. The error names the file ([`ConfigFileError::file`]).
    ///
    /// ```
    /// use seawall::policy::PolicyConfig;
    ///
    /// let file = std::env::temp_dir().join(format!("seawall-doc-{}.toml", std::process::id()));
    /// std::fs::write(&file, "[policies.payments]\nretry = { max_attempts = 2 }\n").unwrap();
    /// let config = PolicyConfig::from_path(&file);
    /// std::fs::remove_file(&file).unwrap();
    /// assert!(config?.contains("payments"));
    ///
    /// let err = PolicyConfig::from_path("policies.json").unwrap_err();
    /// assert_eq!(err.file(), Some(std::path::Path::new("policies.json")));
    /// # Ok::<(), seawall::policy::ConfigFileError>(())
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigFileError> {
        let path = path.as_ref();
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        let load: fn(&str) -> Result<Self, ConfigFileError> = match extension.as_deref() {
            Some("toml") => Self::from_toml_str,
            Some("yaml" | "yml") => Self::from_yaml_str,
            _ => {
                return Err(ConfigFileError::parse(
                    String::new(),
                    "the file name must end in .toml, .yaml or .yml".to_owned(),
                    None,
                )
                .in_file(path))
            }
        };
        let text = std::fs::read_to_string(path).map_err(|err| ConfigFileError::io(err, path))?;
        load(&text).map_err(|err| err.in_file(path))
    }

    /// Check every policy, and the defaults alone, by building them.
    fn checked(raw: RawConfig) -> Result<Self, ConfigFileError> {
        let config = Self {
            defaults: raw.defaults,
            policies: raw.policies,
        };
        config.policy_of(None, "defaults".to_owned())?;
        for name in config.policies.keys() {
            config.policy_of(Some(name), name.clone())?;
        }
        Ok(config)
    }

    /// The defaults, as written.
    ///
    /// ```
    /// use seawall::policy::config::Switch;
    /// use seawall::policy::PolicyConfig;
    /// use std::time::Duration;
    ///
    /// let config = PolicyConfig::from_toml_str("[defaults]\ndeadline = \"3s\"\n")?;
    /// assert_eq!(config.defaults().deadline, Some(Switch::On(Duration::from_secs(3))));
    /// # Ok::<(), seawall::policy::ConfigFileError>(())
    /// ```
    pub fn defaults(&self) -> &StageSettings {
        &self.defaults
    }

    /// The names of the policies in the file, in order.
    ///
    /// ```
    /// use seawall::policy::PolicyConfig;
    ///
    /// let config = PolicyConfig::from_toml_str("[policies.search]\n[policies.payments]\n")?;
    /// assert_eq!(config.names().collect::<Vec<_>>(), ["payments", "search"]);
    /// # Ok::<(), seawall::policy::ConfigFileError>(())
    /// ```
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.policies.keys().map(String::as_str)
    }

    /// Whether the file has a policy named `name` (a name it does not have gets the
    /// defaults from [`policy`](Self::policy)).
    ///
    /// ```
    /// use seawall::policy::PolicyConfig;
    ///
    /// let config = PolicyConfig::from_toml_str("[policies.payments]\n")?;
    /// assert!(config.contains("payments"));
    /// assert!(!config.contains("nope"));
    /// # Ok::<(), seawall::policy::ConfigFileError>(())
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.policies.contains_key(name)
    }

    /// The settings of the policy `name`, merged over the defaults (see
    /// [Merging](self#merging-a-policy-over-the-defaults)); the defaults alone for a name
    /// the file does not have. Plain data: what the builder will be given.
    ///
    /// ```
    /// use seawall::policy::PolicyConfig;
    /// use std::time::Duration;
    ///
    /// let config = PolicyConfig::from_toml_str(r#"
    ///     [defaults]
    ///     retry = { max_attempts = 3, backoff = { base = "10ms" } }
    ///     [policies.payments]
    ///     retry = { max_attempts = 2 }
    /// "#)?;
    /// let retry = config.settings("payments").retry.unwrap();
    /// assert_eq!(retry.max_attempts, Some(2));
    /// assert_eq!(retry.backoff.unwrap().base, Some(Duration::from_millis(10)));
    /// # Ok::<(), seawall::policy::ConfigFileError>(())
    /// ```
    pub fn settings(&self, name: &str) -> StageSettings {
        match self.policies.get(name) {
            Some(policy) => self.defaults.merge(policy),
            None => self.defaults.clone(),
        }
    }

    /// The builder of the policy `name`, configured from the file and named `name`, to
    /// add a classifier, a replay or a release before [`build`](PolicyBuilder::build).
    /// A name the file does not have gets the defaults.
    ///
    /// It fails only where a value could not be given to the builder (a retry budget or
    /// a backoff that does not build), which a loaded config has ruled out.
    ///
    /// ```
    /// use seawall::policy::PolicyConfig;
    /// use seawall::retry::replay::CloneRequest;
    ///
    /// let config = PolicyConfig::from_toml_str("[policies.payments]\nbulkhead = { max_concurrent = 5 }\n")?;
    /// let policy = config.builder("payments")?.replay(CloneRequest).build()?;
    /// assert_eq!(policy.handle().bulkhead().unwrap().limit(), 5);
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn builder(&self, name: &str) -> Result<PolicyBuilder, ConfigFileError> {
        self.builder_named(name, name)
    }

    /// Like [`builder`](Self::builder), with the settings of the policy `name` and the
    /// policy named `policy_name` (the name of its stages and the `policy` label of
    /// their metrics): e.g. one policy per endpoint of a downstream, each with its own
    /// name.
    ///
    /// ```
    /// use seawall::policy::PolicyConfig;
    ///
    /// let config = PolicyConfig::from_toml_str("[policies.payments]\nbulkhead = { max_concurrent = 5 }\n")?;
    /// let policy = config.builder_named("payments", "payments/10.0.0.7:443")?.build()?;
    /// assert_eq!(policy.name(), "payments/10.0.0.7:443");
    /// assert_eq!(policy.handle().bulkhead().unwrap().limit(), 5);
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn builder_named(
        &self,
        name: &str,
        policy_name: impl Into<String>,
    ) -> Result<PolicyBuilder, ConfigFileError> {
        let key = self
            .policies
            .get_key_value(name)
            .map(|(key, _)| key.as_str());
        let settings = self.settings(name);
        settings
            .assemble(policy_name.into())
            .map_err(|err| self.locate(key, &settings, err))
    }

    /// The policy `name`, built from the file with the default classifier and replay
    /// ([`ErrorsAsFailures`](crate::classify::ErrorsAsFailures),
    /// [`CloneRequest`](crate::retry::replay::CloneRequest)). A name the file does not
    /// have gets the policy of the defaults, named `name`.
    ///
    /// Each call builds a new policy: a new breaker, bulkhead and budget. Build one per
    /// downstream and keep it (or use a [`Registry`](super::Registry)).
    ///
    /// ```
    /// use seawall::policy::PolicyConfig;
    /// use std::time::Duration;
    ///
    /// let config = PolicyConfig::from_toml_str("[defaults]\ndeadline = \"off\"\n")?;
    /// let ledger = config.policy("ledger")?;
    /// assert_eq!((ledger.name(), ledger.handle().deadline()), ("ledger", None));
    /// # Ok::<(), seawall::policy::ConfigFileError>(())
    /// ```
    pub fn policy(&self, name: &str) -> Result<Policy, ConfigFileError> {
        let key = self
            .policies
            .get_key_value(name)
            .map(|(key, _)| key.as_str());
        self.policy_of(key, name.to_owned())
    }

    /// Build the policy of `key` (`None`: the defaults alone), named `name`.
    fn policy_of(&self, key: Option<&str>, name: String) -> Result<Policy, ConfigFileError> {
        let settings = match key {
            Some(key) => self.settings(key),
            None => self.defaults.clone(),
        };
        settings
            .assemble(name)
            .and_then(PolicyBuilder::build)
            .map_err(|err| self.locate(key, &settings, err))
    }

    /// The error of a builder, at the key of the file that holds the bad value.
    fn locate(
        &self,
        key: Option<&str>,
        settings: &StageSettings,
        err: ConfigError,
    ) -> ConfigFileError {
        let (prefix, own) = match key {
            Some(key) => (format!("policies.{key}"), self.policies.get(key)),
            None => ("defaults".to_owned(), Some(&self.defaults)),
        };
        let Some(relative) = relative_path(&err, settings) else {
            // The policy's own name: the key of its table.
            let reason = format!("a policy's name {}", err.reason());
            return ConfigFileError::build("policies".to_owned(), reason, err);
        };
        let mut reason = err.reason().to_owned();
        if key.is_some()
            && !own.is_some_and(|own| own.sets(&relative))
            && self.defaults.sets(&relative)
        {
            reason.push_str(&format!(" (the value is from `defaults.{relative}`)"));
        }
        ConfigFileError::build(format!("{prefix}.{relative}"), reason, err)
    }
}

/// Where a builder's error points in a policy's settings (`None`: at the policy's name).
fn relative_path(err: &ConfigError, settings: &StageSettings) -> Option<String> {
    let field = err.field();
    let path = match (err.component(), field) {
        ("policy", _) => return None,
        ("deadline", _) => "deadline".to_owned(),
        ("timeout", _) => "attempt_timeout".to_owned(),
        ("backoff", _) => format!("retry.backoff.{field}"),
        ("retry_budget", _) => format!("budget.{field}"),
        ("circuit_breaker", "count_window") => "circuit_breaker.window.count".to_owned(),
        ("circuit_breaker", "time_window") => "circuit_breaker.window".to_owned(),
        ("circuit_breaker", "slow_calls") => {
            let zero = settings
                .circuit_breaker
                .as_ref()
                .and_then(|breaker| breaker.slow_call_duration)
                .is_some_and(|duration| duration.is_zero());
            if zero {
                "circuit_breaker.slow_call_duration".to_owned()
            } else {
                "circuit_breaker.slow_call_rate".to_owned()
            }
        }
        (component, _) => format!("{component}.{field}"),
    };
    Some(path)
}

// ===== settings =====

/// A setting that may be switched off: `"off"` in the file, or a value.
///
/// ```
/// use seawall::policy::config::Switch;
/// use seawall::policy::PolicyConfig;
///
/// let config = PolicyConfig::from_toml_str("[defaults]\ndeadline = \"off\"\n")?;
/// assert_eq!(config.defaults().deadline, Some(Switch::Off));
/// # Ok::<(), seawall::policy::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch<T> {
    /// `"off"`: the stage or rule is switched off.
    Off,
    /// The value.
    On(T),
}

/// The settings of one policy, or the defaults: every key optional (see the
/// [schema](self#the-schema)).
///
/// It is plain data: [`PolicyConfig::settings`] gives a policy's, merged over the
/// defaults, as the builder will be given them.
///
/// ```
/// use seawall::policy::config::Switch;
/// use seawall::policy::PolicyConfig;
/// use std::time::Duration;
///
/// let config = PolicyConfig::from_toml_str(r#"
///     [policies.payments]
///     deadline = "2s"
///     attempt_timeout = "off"
/// "#)?;
/// let settings = config.settings("payments");
/// assert_eq!(settings.deadline, Some(Switch::On(Duration::from_secs(2))));
/// assert_eq!(settings.attempt_timeout, Some(Switch::Off));
/// assert!(settings.retry.is_none(), "not written: the builder's defaults");
/// # Ok::<(), seawall::policy::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StageSettings {
    /// `deadline`: the overall deadline of each call, or `"off"`.
    #[serde(default)]
    pub deadline: Option<Switch<Duration>>,
    /// `attempt_timeout`: the timeout of each attempt, or `"off"`.
    #[serde(default)]
    pub attempt_timeout: Option<Switch<Duration>>,
    /// `retry`: the retry stage.
    #[serde(default)]
    pub retry: Option<RetrySettings>,
    /// `budget`: the budget that retries and hedges share.
    #[serde(default)]
    pub budget: Option<BudgetSettings>,
    /// `hedge`: the hedge stage (off unless written).
    #[serde(default)]
    pub hedge: Option<HedgeSettings>,
    /// `circuit_breaker`: the circuit breaker.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerSettings>,
    /// `bulkhead`: the bulkhead.
    #[serde(default)]
    pub bulkhead: Option<BulkheadSettings>,
}

/// The `retry` table; see [`retry::Builder`](crate::retry::Builder).
///
/// ```
/// use seawall::policy::PolicyConfig;
///
/// let config = PolicyConfig::from_toml_str("[defaults]\nretry = { max_attempts = 4 }\n")?;
/// assert_eq!(config.defaults().retry.as_ref().unwrap().max_attempts, Some(4));
/// # Ok::<(), seawall::policy::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetrySettings {
    /// `enabled`: `false` switches retries off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `max_attempts`: attempts in all, the first included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// `max_pushback`: the longest a server's pushback may delay a retry.
    #[serde(default, deserialize_with = "duration")]
    pub max_pushback: Option<Duration>,
    /// `backoff`: the exponential backoff between attempts.
    #[serde(default)]
    pub backoff: Option<BackoffSettings>,
}

/// The `retry.backoff` table; see
/// [`ExponentialBackoffBuilder`](crate::retry::backoff::ExponentialBackoffBuilder).
///
/// ```
/// use seawall::policy::PolicyConfig;
/// use seawall::retry::backoff::Jitter;
///
/// let config = PolicyConfig::from_toml_str(
///     "[defaults]\nretry.backoff = { base = \"50ms\", max = \"1s\", jitter = \"equal\" }\n",
/// )?;
/// let backoff = config.defaults().retry.as_ref().unwrap().backoff.unwrap();
/// assert_eq!(backoff.jitter, Some(Jitter::Equal));
/// # Ok::<(), seawall::policy::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackoffSettings {
    /// `base`: the delay before the first retry, before jitter.
    #[serde(default, deserialize_with = "duration")]
    pub base: Option<Duration>,
    /// `max`: the longest delay.
    #[serde(default, deserialize_with = "duration")]
    pub max: Option<Duration>,
    /// `multiplier`: how much each delay grows over the last.
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// `jitter`: `"none"`, `"full"`, `"equal"` or `"decorrelated"`.
    #[serde(default, deserialize_with = "jitter")]
    pub jitter: Option<Jitter>,
}

/// The `budget` table; see [`RetryBudgetBuilder`](crate::retry::budget::RetryBudgetBuilder).
///
/// ```
/// use seawall::policy::PolicyConfig;
///
/// let config = PolicyConfig::from_toml_str("[defaults]\nbudget = { ratio = 0.1, min_per_sec = 1 }\n")?;
/// let budget = config.defaults().budget.unwrap();
/// assert_eq!((budget.ratio, budget.min_per_sec), (Some(0.1), Some(1.0)));
/// # Ok::<(), seawall::policy::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BudgetSettings {
    /// `ratio`: retries per request.
    #[serde(default)]
    pub ratio: Option<f64>,
    /// `min_per_sec`: retries per second allowed whatever the traffic.
    #[serde(default)]
    pub min_per_sec: Option<f64>,
    /// `window`: how long deposits and withdrawals count.
    #[serde(default, deserialize_with = "duration")]
    pub window: Option<Duration>,
    /// `buckets`: how many time slots the window is kept in.
    #[serde(default)]
    pub buckets: Option<u32>,
}

/// The `hedge` table; see [`hedge::Builder`](crate::hedge::Builder). Writing it switches
/// hedging on (unless `enabled = false`).
///
/// ```
/// use seawall::policy::PolicyConfig;
/// use std::time::Duration;
///
/// let config = PolicyConfig::from_toml_str("[policies.search]\nhedge = { delay = \"30ms\" }\n")?;
/// let hedge = config.policy("search")?.handle().hedge().unwrap().clone();
/// assert_eq!(hedge.delay(), Some(Duration::from_millis(30)));
/// # Ok::<(), seawall::policy::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HedgeSettings {
    /// `enabled`: `false` switches hedging off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `delay`: a fixed hedge delay (instead of a percentile).
    #[serde(default, deserialize_with = "duration")]
    pub delay: Option<Duration>,
    /// `percentile`: hedge after this percentile of the recent latencies.
    #[serde(default)]
    pub percentile: Option<f64>,
    /// `window`: how long a latency counts toward the percentile.
    #[serde(default, deserialize_with = "duration")]
    pub window: Option<Duration>,
    /// `min_samples`: latencies needed before any call is hedged.
    #[serde(default)]
    pub min_samples: Option<u32>,
    /// `max_hedges`: the most hedges one call may send.
    #[serde(default)]
    pub max_hedges: Option<u32>,
}

/// The `circuit_breaker` table; see
/// [`circuit_breaker::Builder`](crate::circuit_breaker::Builder).
///
/// ```
/// use seawall::circuit_breaker::Readiness;
/// use seawall::policy::config::{BreakerWindow, Switch};
/// use seawall::policy::PolicyConfig;
/// use std::time::Duration;
///
/// let config = PolicyConfig::from_toml_str(r#"
///     [defaults.circuit_breaker]
///     window = { time = "30s", buckets = 10 }
///     failure_rate = "off"
///     consecutive_failures = 5
///     readiness = "backpressure"
/// "#)?;
/// let breaker = config.defaults().circuit_breaker.unwrap();
/// assert_eq!(
///     breaker.window,
///     Some(BreakerWindow::Time { length: Duration::from_secs(30), buckets: 10 })
/// );
/// assert_eq!(breaker.failure_rate, Some(Switch::Off));
/// assert_eq!(breaker.readiness, Some(Readiness::Backpressure));
/// # Ok::<(), seawall::policy::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitBreakerSettings {
    /// `enabled`: `false` switches the breaker off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `window`: `{ count = N }` or `{ time = "60s", buckets = N }`.
    #[serde(default)]
    pub window: Option<BreakerWindow>,
    /// `failure_rate`: trip at this share of failures, or `"off"`.
    #[serde(default)]
    pub failure_rate: Option<Switch<f64>>,
    /// `minimum_calls`: calls the window must hold before the rate rules judge it.
    #[serde(default)]
    pub minimum_calls: Option<u64>,
    /// `slow_call_rate`: trip at this share of slow calls, or `"off"`.
    #[serde(default)]
    pub slow_call_rate: Option<Switch<f64>>,
    /// `slow_call_duration`: calls that take at least this long are slow.
    #[serde(default, deserialize_with = "duration")]
    pub slow_call_duration: Option<Duration>,
    /// `consecutive_failures`: trip after this many failures in a row, or `"off"`.
    #[serde(default)]
    pub consecutive_failures: Option<Switch<u32>>,
    /// `open_duration`: how long the breaker stays open after its first trip.
    #[serde(default, deserialize_with = "duration")]
    pub open_duration: Option<Duration>,
    /// `max_open_duration`: the longest the open duration may grow to.
    #[serde(default, deserialize_with = "duration")]
    pub max_open_duration: Option<Duration>,
    /// `open_duration_multiplier`: the growth of the open duration per repeated trip.
    #[serde(default)]
    pub open_duration_multiplier: Option<f64>,
    /// `jitter`: the largest share by which an open duration is shortened at random.
    #[serde(default)]
    pub jitter: Option<f64>,
    /// `reset_backoff_after`: a healthy period after which the open duration starts over.
    #[serde(default, deserialize_with = "duration")]
    pub reset_backoff_after: Option<Duration>,
    /// `half_open_probes`: the probes the half-open state admits.
    #[serde(default)]
    pub half_open_probes: Option<u32>,
    /// `max_half_open_duration`: the longest the breaker waits for its probes.
    #[serde(default, deserialize_with = "duration")]
    pub max_half_open_duration: Option<Duration>,
    /// `readiness`: `"fail-fast"` or `"backpressure"`.
    #[serde(default, deserialize_with = "readiness")]
    pub readiness: Option<Readiness>,
}

/// A breaker's window: `{ count = N }` (the last N calls) or
/// `{ time = "60s", buckets = N }` (the calls of the last minute, in N buckets; 10 when
/// `buckets` is left out).
///
/// ```
/// use seawall::policy::config::BreakerWindow;
/// use seawall::policy::PolicyConfig;
///
/// let config = PolicyConfig::from_toml_str("[defaults]\ncircuit_breaker.window = { count = 50 }\n")?;
/// let window = config.defaults().circuit_breaker.unwrap().window;
/// assert_eq!(window, Some(BreakerWindow::Count(50)));
///
/// let err = PolicyConfig::from_toml_str(
///     "[defaults]\ncircuit_breaker.window = { count = 50, time = \"10s\" }\n",
/// )
/// .unwrap_err();
/// assert_eq!(err.path(), "defaults.circuit_breaker.window");
/// # Ok::<(), seawall::policy::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawWindow")]
pub enum BreakerWindow {
    /// `{ count = N }`: the last `N` calls.
    Count(u32),
    /// `{ time = "60s", buckets = N }`: the calls of the last `length`, in `buckets`.
    Time {
        /// `time`: the window's length.
        length: Duration,
        /// `buckets`: how many buckets it is kept in.
        buckets: u32,
    },
}

/// A breaker's window as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(default)]
    count: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    time: Option<Duration>,
    #[serde(default)]
    buckets: Option<u32>,
}

impl TryFrom<RawWindow> for BreakerWindow {
    type Error = String;

    fn try_from(raw: RawWindow) -> Result<Self, String> {
        match (raw.count, raw.time, raw.buckets) {
            (Some(count), None, None) => Ok(Self::Count(count)),
            (None, Some(length), buckets) => Ok(Self::Time {
                length,
                buckets: buckets.unwrap_or(DEFAULT_TIME_WINDOW_BUCKETS),
            }),
            (Some(_), Some(_), _) => Err("set either `count` or `time`, not both".to_owned()),
            (Some(_), None, Some(_)) => {
                Err("`buckets` applies only to a time window (`time`)".to_owned())
            }
            (None, None, _) => {
                Err("expected `{ count = N }` or `{ time = \"60s\", buckets = N }`".to_owned())
            }
        }
    }
}

/// The `bulkhead` table; see [`bulkhead::Builder`](crate::bulkhead::Builder).
///
/// ```
/// use seawall::policy::PolicyConfig;
///
/// let config = PolicyConfig::from_toml_str(
///     "[policies.payments]\nbulkhead = { max_concurrent = 10, max_wait = \"50ms\", max_waiting = 20 }\n",
/// )?;
/// assert_eq!(config.policy("payments")?.handle().bulkhead().unwrap().limit(), 10);
/// # Ok::<(), seawall::policy::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BulkheadSettings {
    /// `enabled`: `false` switches the bulkhead off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `max_concurrent`: the most calls in flight at once.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// `max_wait`: how long a caller may wait for a permit.
    #[serde(default, deserialize_with = "duration")]
    pub max_wait: Option<Duration>,
    /// `max_waiting`: the most callers that may wait at once.
    #[serde(default)]
    pub max_waiting: Option<u32>,
}

// ===== merge =====

impl StageSettings {
    /// `over`'s settings over `self`'s, key by key.
    fn merge(&self, over: &Self) -> Self {
        Self {
            deadline: over.deadline.or(self.deadline),
            attempt_timeout: over.attempt_timeout.or(self.attempt_timeout),
            retry: merge_with(&self.retry, &over.retry, RetrySettings::merge),
            budget: merge_with(&self.budget, &over.budget, BudgetSettings::merge),
            hedge: merge_with(&self.hedge, &over.hedge, HedgeSettings::merge),
            circuit_breaker: merge_with(
                &self.circuit_breaker,
                &over.circuit_breaker,
                CircuitBreakerSettings::merge,
            ),
            bulkhead: merge_with(&self.bulkhead, &over.bulkhead, BulkheadSettings::merge),
        }
    }

    /// Whether these settings write the key at `path` (relative, dotted).
    fn sets(&self, path: &str) -> bool {
        let (table, key) = path.split_once('.').unwrap_or((path, ""));
        match table {
            "deadline" => self.deadline.is_some(),
            "attempt_timeout" => self.attempt_timeout.is_some(),
            "retry" => self.retry.as_ref().is_some_and(|retry| retry.sets(key)),
            "budget" => self.budget.is_some_and(|budget| budget.sets(key)),
            "hedge" => self.hedge.is_some_and(|hedge| hedge.sets(key)),
            "circuit_breaker" => self
                .circuit_breaker
                .is_some_and(|breaker| breaker.sets(key)),
            "bulkhead" => self.bulkhead.is_some_and(|bulkhead| bulkhead.sets(key)),
            _ => false,
        }
    }
}

/// Both merged when both are written, else whichever is.
fn merge_with<T: Clone>(base: &Option<T>, over: &Option<T>, merge: fn(&T, &T) -> T) -> Option<T> {
    match (base, over) {
        (Some(base), Some(over)) => Some(merge(base, over)),
        (base, over) => over.as_ref().or(base.as_ref()).cloned(),
    }
}

impl RetrySettings {
    fn merge(&self, over: &Self) -> Self {
        Self {
            enabled: over.enabled.or(self.enabled),
            max_attempts: over.max_attempts.or(self.max_attempts),
            max_pushback: over.max_pushback.or(self.max_pushback),
            backoff: merge_with(&self.backoff, &over.backoff, BackoffSettings::merge),
        }
    }

    fn sets(&self, key: &str) -> bool {
        match key.split_once('.') {
            Some(("backoff", key)) => self.backoff.is_some_and(|backoff| backoff.sets(key)),
            _ => match key {
                "enabled" => self.enabled.is_some(),
                "max_attempts" => self.max_attempts.is_some(),
                "max_pushback" => self.max_pushback.is_some(),
                _ => false,
            },
        }
    }
}

impl BackoffSettings {
    fn merge(&self, over: &Self) -> Self {
        Self {
            base: over.base.or(self.base),
            max: over.max.or(self.max),
            multiplier: over.multiplier.or(self.multiplier),
            jitter: over.jitter.or(self.jitter),
        }
    }

    fn sets(&self, key: &str) -> bool {
        match key {
            "base" => self.base.is_some(),
            "max" => self.max.is_some(),
            "multiplier" => self.multiplier.is_some(),
            "jitter" => self.jitter.is_some(),
            _ => false,
        }
    }
}

impl BudgetSettings {
    fn merge(&self, over: &Self) -> Self {
        Self {
            ratio: over.ratio.or(self.ratio),
            min_per_sec: over.min_per_sec.or(self.min_per_sec),
            window: over.window.or(self.window),
            buckets: over.buckets.or(self.buckets),
        }
    }

    fn sets(&self, key: &str) -> bool {
        match key {
            "ratio" => self.ratio.is_some(),
            "min_per_sec" => self.min_per_sec.is_some(),
            "window" => self.window.is_some(),
            "buckets" => self.buckets.is_some(),
            _ => false,
        }
    }
}

impl HedgeSettings {
    fn merge(&self, over: &Self) -> Self {
        // The two triggers exclude each other: the policy's choice drops the other's keys.
        let base = if over.delay.is_some() {
            Self {
                percentile: None,
                window: None,
                min_samples: None,
                ..*self
            }
        } else if over.percentile.is_some() {
            Self {
                delay: None,
                ..*self
            }
        } else {
            *self
        };
        Self {
            enabled: over.enabled.or(base.enabled),
            delay: over.delay.or(base.delay),
            percentile: over.percentile.or(base.percentile),
            window: over.window.or(base.window),
            min_samples: over.min_samples.or(base.min_samples),
            max_hedges: over.max_hedges.or(base.max_hedges),
        }
    }

    fn sets(&self, key: &str) -> bool {
        match key {
            "enabled" => self.enabled.is_some(),
            "delay" => self.delay.is_some(),
            "percentile" => self.percentile.is_some(),
            "window" => self.window.is_some(),
            "min_samples" => self.min_samples.is_some(),
            "max_hedges" => self.max_hedges.is_some(),
            _ => false,
        }
    }
}

impl CircuitBreakerSettings {
    fn merge(&self, over: &Self) -> Self {
        Self {
            enabled: over.enabled.or(self.enabled),
            window: over.window.or(self.window),
            failure_rate: over.failure_rate.or(self.failure_rate),
            minimum_calls: over.minimum_calls.or(self.minimum_calls),
            slow_call_rate: over.slow_call_rate.or(self.slow_call_rate),
            slow_call_duration: over.slow_call_duration.or(self.slow_call_duration),
            consecutive_failures: over.consecutive_failures.or(self.consecutive_failures),
            open_duration: over.open_duration.or(self.open_duration),
            max_open_duration: over.max_open_duration.or(self.max_open_duration),
            open_duration_multiplier: over
                .open_duration_multiplier
                .or(self.open_duration_multiplier),
            jitter: over.jitter.or(self.jitter),
            reset_backoff_after: over.reset_backoff_after.or(self.reset_backoff_after),
            half_open_probes: over.half_open_probes.or(self.half_open_probes),
            max_half_open_duration: over.max_half_open_duration.or(self.max_half_open_duration),
            readiness: over.readiness.or(self.readiness),
        }
    }

    fn sets(&self, key: &str) -> bool {
        match key {
            "enabled" => self.enabled.is_some(),
            "window" | "window.count" => self.window.is_some(),
            "failure_rate" => self.failure_rate.is_some(),
            "minimum_calls" => self.minimum_calls.is_some(),
            "slow_call_rate" => self.slow_call_rate.is_some(),
            "slow_call_duration" => self.slow_call_duration.is_some(),
            "consecutive_failures" => self.consecutive_failures.is_some(),
            "open_duration" => self.open_duration.is_some(),
            "max_open_duration" => self.max_open_duration.is_some(),
            "open_duration_multiplier" => self.open_duration_multiplier.is_some(),
            "jitter" => self.jitter.is_some(),
            "reset_backoff_after" => self.reset_backoff_after.is_some(),
            "half_open_probes" => self.half_open_probes.is_some(),
            "max_half_open_duration" => self.max_half_open_duration.is_some(),
            "readiness" => self.readiness.is_some(),
            _ => false,
        }
    }
}

impl BulkheadSettings {
    fn merge(&self, over: &Self) -> Self {
        Self {
            enabled: over.enabled.or(self.enabled),
            max_concurrent: over.max_concurrent.or(self.max_concurrent),
            max_wait: over.max_wait.or(self.max_wait),
            max_waiting: over.max_waiting.or(self.max_waiting),
        }
    }

    fn sets(&self, key: &str) -> bool {
        match key {
            "enabled" => self.enabled.is_some(),
            "max_concurrent" => self.max_concurrent.is_some(),
            "max_wait" => self.max_wait.is_some(),
            "max_waiting" => self.max_waiting.is_some(),
            _ => false,
        }
    }
}

// ===== settings to builder =====

impl StageSettings {
    /// A policy builder named `name`, given these settings.
    fn assemble(&self, name: String) -> Result<PolicyBuilder, ConfigError> {
        let mut policy = Policy::builder(name);
        policy = match self.deadline {
            Some(Switch::On(deadline)) => policy.deadline(deadline),
            Some(Switch::Off) => policy.without_deadline(),
            None => policy,
        };
        policy = match self.attempt_timeout {
            Some(Switch::On(timeout)) => policy.attempt_timeout(timeout),
            Some(Switch::Off) => policy.without_attempt_timeout(),
            None => policy,
        };

        let retry_on = self
            .retry
            .as_ref()
            .is_none_or(|retry| retry.enabled.unwrap_or(true));
        let hedge_on = self
            .hedge
            .is_some_and(|hedge| hedge.enabled.unwrap_or(true));
        if let Some(budget) = self.budget.filter(|_| retry_on || hedge_on) {
            policy = policy.budget(budget.build()?);
        }

        policy = match &self.retry {
            _ if !retry_on => policy.without_retry(),
            None => policy,
            Some(retry) => {
                let backoff = retry.backoff.map(BackoffSettings::build).transpose()?;
                policy.retry(|mut builder| {
                    if let Some(attempts) = retry.max_attempts {
                        builder = builder.max_attempts(attempts);
                    }
                    if let Some(max) = retry.max_pushback {
                        builder = builder.max_pushback(max);
                    }
                    match backoff {
                        Some(backoff) => builder.backoff(backoff),
                        None => builder,
                    }
                })
            }
        };

        policy = match self.hedge.filter(|_| hedge_on) {
            None => policy.without_hedge(),
            Some(hedge) => policy.hedge(|mut builder| {
                if let Some(delay) = hedge.delay {
                    builder = builder.delay(delay);
                }
                if let Some(percentile) = hedge.percentile {
                    builder = builder.percentile(percentile);
                }
                if let Some(window) = hedge.window {
                    builder = builder.window(window);
                }
                if let Some(samples) = hedge.min_samples {
                    builder = builder.min_samples(samples);
                }
                if let Some(hedges) = hedge.max_hedges {
                    builder = builder.max_hedges(hedges);
                }
                builder
            }),
        };

        policy = match self.circuit_breaker {
            Some(breaker) if !breaker.enabled.unwrap_or(true) => policy.without_circuit_breaker(),
            None => policy,
            Some(breaker) => {
                let slow_calls = breaker.slow_calls()?;
                policy.circuit_breaker(|mut builder| {
                    builder = match breaker.window {
                        Some(BreakerWindow::Count(calls)) => builder.count_window(calls),
                        Some(BreakerWindow::Time { length, buckets }) => {
                            builder.time_window(length, buckets)
                        }
                        None => builder,
                    };
                    builder = match breaker.failure_rate {
                        Some(Switch::On(rate)) => builder.failure_rate(rate),
                        Some(Switch::Off) => builder.without_failure_rate(),
                        None => builder,
                    };
                    if let Some(calls) = breaker.minimum_calls {
                        builder = builder.minimum_calls(calls);
                    }
                    if let Some((threshold, rate)) = slow_calls {
                        builder = builder.slow_calls(threshold, rate);
                    }
                    if let Some(Switch::On(failures)) = breaker.consecutive_failures {
                        builder = builder.consecutive_failures(failures);
                    }
                    if let Some(duration) = breaker.open_duration {
                        builder = builder.open_duration(duration);
                    }
                    if let Some(duration) = breaker.max_open_duration {
                        builder = builder.max_open_duration(duration);
                    }
                    if let Some(multiplier) = breaker.open_duration_multiplier {
                        builder = builder.open_duration_multiplier(multiplier);
                    }
                    if let Some(jitter) = breaker.jitter {
                        builder = builder.jitter(jitter);
                    }
                    if let Some(healthy) = breaker.reset_backoff_after {
                        builder = builder.reset_backoff_after(healthy);
                    }
                    if let Some(probes) = breaker.half_open_probes {
                        builder = builder.half_open_probes(probes);
                    }
                    if let Some(duration) = breaker.max_half_open_duration {
                        builder = builder.max_half_open_duration(duration);
                    }
                    if let Some(readiness) = breaker.readiness {
                        builder = builder.readiness(readiness);
                    }
                    builder
                })
            }
        };

        policy = match self.bulkhead {
            Some(bulkhead) if !bulkhead.enabled.unwrap_or(true) => policy.without_bulkhead(),
            None => policy,
            Some(bulkhead) => policy.bulkhead(|mut builder| {
                if let Some(calls) = bulkhead.max_concurrent {
                    builder = builder.max_concurrent(calls);
                }
                if let Some(wait) = bulkhead.max_wait {
                    builder = builder.max_wait(wait);
                }
                if let Some(callers) = bulkhead.max_waiting {
                    builder = builder.max_waiting(callers);
                }
                builder
            }),
        };
        Ok(policy)
    }
}

impl BudgetSettings {
    fn build(self) -> Result<RetryBudget, ConfigError> {
        let mut builder = RetryBudget::builder();
        if let Some(ratio) = self.ratio {
            builder = builder.ratio(ratio);
        }
        if let Some(retries) = self.min_per_sec {
            builder = builder.min_per_sec(retries);
        }
        if let Some(window) = self.window {
            builder = builder.window(window);
        }
        if let Some(buckets) = self.buckets {
            builder = builder.buckets(buckets);
        }
        builder.build()
    }
}

impl BackoffSettings {
    fn build(self) -> Result<ExponentialBackoff, ConfigError> {
        let mut builder = ExponentialBackoff::builder();
        if let Some(base) = self.base {
            builder = builder.base(base);
        }
        if let Some(max) = self.max {
            builder = builder.max(max);
        }
        if let Some(multiplier) = self.multiplier {
            builder = builder.multiplier(multiplier);
        }
        if let Some(jitter) = self.jitter {
            builder = builder.jitter(jitter);
        }
        builder.build()
    }
}

impl CircuitBreakerSettings {
    /// The slow-call rule's threshold and rate, if it is on: both keys, or neither.
    fn slow_calls(&self) -> Result<Option<(Duration, f64)>, ConfigError> {
        let missing = |field, other| {
            ConfigError::new(
                "circuit_breaker",
                field,
                format!("is missing: the slow-call rule needs `{other}` too"),
            )
        };
        match (self.slow_call_rate, self.slow_call_duration) {
            (Some(Switch::Off), _) | (None, None) => Ok(None),
            (Some(Switch::On(rate)), Some(threshold)) => Ok(Some((threshold, rate))),
            (Some(Switch::On(_)), None) => Err(missing("slow_call_duration", "slow_call_rate")),
            (None, Some(_)) => Err(missing("slow_call_rate", "slow_call_duration")),
        }
    }
}

// ===== values =====

/// Parse a duration: a number (integer or decimal) and a unit (`ns`, `us`, `µs`, `ms`,
/// `s`, `m`, `h`); the reason when it is not one.
fn parse_duration(text: &str) -> Result<Duration, String> {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!("`{text}` is negative: a duration is zero or more"));
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        let lower = trimmed.to_ascii_lowercase();
        let not_a_number = ["nan", "inf", "+inf", "+nan"]
            .iter()
            .any(|word| lower.starts_with(word));
        return Err(if not_a_number {
            format!("`{text}` is not a number: expected a duration such as \"250ms\"")
        } else {
            format!("`{text}` is not a duration: expected a number and a unit, such as \"250ms\"")
        });
    }
    let unit_nanos: u128 = match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        "" => {
            return Err(format!(
                "`{text}` has no unit: write it as \"{number}ms\", \"{number}s\", ... (units: ns, us, ms, s, m, h)"
            ))
        }
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}` (units: ns, us, ms, s, m, h)"
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || (number.ends_with('.')) {
        return Err(format!(
            "`{text}` is not a number and a unit, such as \"1.5s\""
        ));
    }
    let too_long = || format!("`{text}` is too long for a duration");
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
    // The fraction's nanoseconds, rounded down, exact for any number of digits (a long
    // tail of them can add up to a nanosecond): the digits times the unit, from the
    // last digit up; what carries out of the first is the whole part. The carry stays
    // below the unit, so nothing overflows.
    let carry = fraction.bytes().rev().fold(0u128, |carry, digit| {
        (u128::from(digit - b'0') * unit_nanos + carry) / 10
    });
    nanos = nanos.checked_add(carry).ok_or_else(too_long)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_long())?;
    // Less than a billion: fits in a u32.
    let subsec = (nanos % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, subsec))
}

/// A duration written as a string.
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expect;
        impl Visitor<'_> for Expect {
            type Value = DurationValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"250ms\", \"1.5s\" or \"2m\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationValue, E> {
                parse_duration(text).map(DurationValue).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Expect)
    }
}

/// An optional duration (`deserialize_with`).
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    Ok(Option::<DurationValue>::deserialize(deserializer)?.map(|value| value.0))
}

impl<'de> Deserialize<'de> for Switch<Duration> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expect;
        impl Visitor<'_> for Expect {
            type Value = Switch<Duration>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"250ms\", or \"off\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Switch<Duration>, E> {
                if text == "off" {
                    return Ok(Switch::Off);
                }
                parse_duration(text).map(Switch::On).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Expect)
    }
}

impl<'de> Deserialize<'de> for Switch<f64> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expect;
        impl Visitor<'_> for Expect {
            type Value = Switch<f64>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or \"off\"")
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Switch<f64>, E> {
                Ok(Switch::On(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Switch<f64>, E> {
                Ok(Switch::On(value as f64))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Switch<f64>, E> {
                Ok(Switch::On(value as f64))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Switch<f64>, E> {
                if text == "off" {
                    Ok(Switch::Off)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(text), &self))
                }
            }
        }
        deserializer.deserialize_any(Expect)
    }
}

impl<'de> Deserialize<'de> for Switch<u32> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expect;
        impl Visitor<'_> for Expect {
            type Value = Switch<u32>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer from 0 to 4294967295, or \"off\"")
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Switch<u32>, E> {
                u32::try_from(value)
                    .map(Switch::On)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Switch<u32>, E> {
                u32::try_from(value)
                    .map(Switch::On)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Switch<u32>, E> {
                if text == "off" {
                    Ok(Switch::Off)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(text), &self))
                }
            }
        }
        deserializer.deserialize_any(Expect)
    }
}

/// [`Jitter`] as written.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum JitterName {
    None,
    Full,
    Equal,
    Decorrelated,
}

/// An optional [`Jitter`] (`deserialize_with`).
fn jitter<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Jitter>, D::Error> {
    Ok(
        Option::<JitterName>::deserialize(deserializer)?.map(|name| match name {
            JitterName::None => Jitter::None,
            JitterName::Full => Jitter::Full,
            JitterName::Equal => Jitter::Equal,
            JitterName::Decorrelated => Jitter::Decorrelated,
        }),
    )
}

/// [`Readiness`] as written.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ReadinessName {
    FailFast,
    Backpressure,
}

/// An optional [`Readiness`] (`deserialize_with`).
fn readiness<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Readiness>, D::Error> {
    Ok(
        Option::<ReadinessName>::deserialize(deserializer)?.map(|name| match name {
            ReadinessName::FailFast => Readiness::FailFast,
            ReadinessName::Backpressure => Readiness::Backpressure,
        }),
    )
}

// ===== errors =====

/// A configuration file that did not load: where (the dotted path of the key, the line
/// and column where the format gives them, the file) and why.
///
/// The path is that of the key in the file, e.g. `policies.payments.retry.max_attempts`,
/// or empty for the document as a whole (a syntax error, a file that cannot be read).
/// A value that a builder refused has the builder's [`ConfigError`] as its
/// [`source`](Error::source) and [`config_error`](Self::config_error).
///
/// ```
/// use seawall::policy::PolicyConfig;
///
/// let err = PolicyConfig::from_toml_str(r#"
/// [policies.payments]
/// retry = { max_attempts = 0 }
/// "#).unwrap_err();
/// assert_eq!(err.path(), "policies.payments.retry.max_attempts");
/// assert_eq!(err.config_error().unwrap().field(), "max_attempts");
/// assert!(err.to_string().starts_with("policies.payments.retry.max_attempts: must be at least 1"));
/// ```
#[derive(Debug)]
pub struct ConfigFileError(Box<Inner>);

/// A [`ConfigFileError`]'s parts (boxed: an error is cheap to return).
#[derive(Debug)]
struct Inner {
    file: Option<PathBuf>,
    path: String,
    reason: String,
    location: Option<(usize, usize)>,
    source: Option<Cause>,
}

#[derive(Debug)]
enum Cause {
    Io(std::io::Error),
    Build(ConfigError),
    Full(super::RegistryFull),
}

impl ConfigFileError {
    fn parse(path: String, reason: String, location: Option<(usize, usize)>) -> Self {
        Self(Box::new(Inner {
            file: None,
            path,
            reason,
            location,
            source: None,
        }))
    }

    fn build(path: String, reason: String, err: ConfigError) -> Self {
        Self(Box::new(Inner {
            file: None,
            path,
            reason,
            location: None,
            source: Some(Cause::Build(err)),
        }))
    }

    fn io(err: std::io::Error, file: &Path) -> Self {
        Self(Box::new(Inner {
            file: Some(file.to_path_buf()),
            path: String::new(),
            reason: err.to_string(),
            location: None,
            source: Some(Cause::Io(err)),
        }))
    }

    fn in_file(mut self, file: &Path) -> Self {
        self.0.file = Some(file.to_path_buf());
        self
    }

    /// The dotted path of the offending key, e.g. `policies.payments.retry.max_attempts`
    /// (empty for the document as a whole).
    ///
    /// ```
    /// let err = seawall::policy::PolicyConfig::from_toml_str("[default]\n").unwrap_err();
    /// assert_eq!(err.path(), "default");
    /// ```
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// What is wrong, in words.
    ///
    /// ```
    /// let err = seawall::policy::PolicyConfig::from_toml_str("[defaults]\ndeadline = \"5\"\n")
    ///     .unwrap_err();
    /// assert!(err.reason().contains("has no unit"));
    /// ```
    pub fn reason(&self) -> &str {
        &self.0.reason
    }

    /// The line of the offending key or value (from 1), where the format gives it: for
    /// errors of syntax, keys, types and values, not for a value a builder refused.
    ///
    /// ```
    /// let err = seawall::policy::PolicyConfig::from_toml_str("[defaults]\n\nbogus = 1\n")
    ///     .unwrap_err();
    /// assert_eq!(err.line(), Some(3));
    /// ```
    pub fn line(&self) -> Option<usize> {
        self.0.location.map(|(line, _)| line)
    }

    /// The column (from 1) that goes with [`line`](Self::line).
    ///
    /// ```
    /// let err = seawall::policy::PolicyConfig::from_toml_str("[defaults]\n\nbogus = 1\n")
    ///     .unwrap_err();
    /// assert_eq!(err.column(), Some(1));
    /// ```
    pub fn column(&self) -> Option<usize> {
        self.0.location.map(|(_, column)| column)
    }

    /// The file, when the config was read by [`PolicyConfig::from_path`].
    ///
    /// ```
    /// let err = seawall::policy::PolicyConfig::from_path("/nonexistent/seawall.toml").unwrap_err();
    /// assert_eq!(err.file(), Some(std::path::Path::new("/nonexistent/seawall.toml")));
    /// assert_eq!(err.path(), "");
    /// ```
    pub fn file(&self) -> Option<&Path> {
        self.0.file.as_deref()
    }

    /// The builder's error, when a builder refused the value.
    ///
    /// ```
    /// let err = seawall::policy::PolicyConfig::from_toml_str(
    ///     "[defaults]\ncircuit_breaker = { failure_rate = 1.5 }\n",
    /// )
    /// .unwrap_err();
    /// let cause = err.config_error().unwrap();
    /// assert_eq!((cause.component(), cause.field()), ("circuit_breaker", "failure_rate"));
    /// ```
    pub fn config_error(&self) -> Option<&ConfigError> {
        match &self.0.source {
            Some(Cause::Build(err)) => Some(err),
            _ => None,
        }
    }
}

impl From<ConfigError> for ConfigFileError {
    /// A builder's error outside any file: its path is `component.field`.
    fn from(err: ConfigError) -> Self {
        Self::build(
            format!("{}.{}", err.component(), err.field()),
            err.reason().to_owned(),
            err,
        )
    }
}

impl From<super::RegistryFull> for ConfigFileError {
    /// The error of a [`Registry::from_config`](super::Registry::from_config)'s `get`
    /// when the registry is full: no path, the [`RegistryFull`](super::RegistryFull) as
    /// its source.
    fn from(err: super::RegistryFull) -> Self {
        Self(Box::new(Inner {
            file: None,
            path: String::new(),
            reason: err.to_string(),
            location: None,
            source: Some(Cause::Full(err)),
        }))
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.0.file {
            write!(f, "{}: ", file.display())?;
        }
        if !self.0.path.is_empty() {
            write!(f, "{}: ", self.0.path)?;
        }
        f.write_str(&self.0.reason)?;
        if let Some((line, column)) = self.0.location {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

impl Error for ConfigFileError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.0.source {
            Some(Cause::Io(err)) => Some(err),
            Some(Cause::Build(err)) => Some(err),
            Some(Cause::Full(err)) => Some(err),
            None => None,
        }
    }
}

/// A path as `a.b.c` (empty for the root), up to its first unknown segment.
fn format_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            _ => break,
        }
    }
    out
}

/// The dotted path of the first array in a TOML document, if it has one.
fn first_array(table: &toml::Table) -> Option<String> {
    table.iter().find_map(|(key, value)| match value {
        toml::Value::Array(_) => Some(key.clone()),
        toml::Value::Table(inner) => first_array(inner).map(|path| format!("{key}.{path}")),
        _ => None,
    })
}

/// The line and column (from 1, in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// serde_yaml's message without the path and the position it adds itself.
fn yaml_message(err: &serde_yaml::Error, path: &str) -> String {
    let mut message = err.to_string();
    if let Some(location) = err.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message.truncate(stripped.len());
        }
    }
    // serde_yaml names the path of the map it was in: ours, or a prefix of ours.
    if let Some((prefix, rest)) = message.split_once(": ") {
        let within = |sep: char| {
            path.strip_prefix(prefix)
                .is_some_and(|tail| tail.is_empty() || tail.starts_with(sep))
        };
        if !prefix.is_empty() && (within('.') || within('[')) {
            message = rest.to_owned();
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        let ok = |text: &str| parse_duration(text).unwrap();
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("3us"), Duration::from_micros(3));
        assert_eq!(ok("3\u{b5}s"), Duration::from_micros(3));
        assert_eq!(ok("0.1ms"), Duration::from_micros(100));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("0.0000000019s"), Duration::from_nanos(1));
        assert_eq!(ok("18446744073709551615s"), Duration::from_secs(u64::MAX));
        for bad in [
            "",
            "5",
            "-5s",
            "NaN",
            "nans",
            "inf",
            "s",
            "1.s",
            ".5s",
            "1.2.3s",
            "1 s",
            "1m30s",
            "5d",
            "1e3ms",
            "18446744073709551616s",
            "99999999999999999999999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
