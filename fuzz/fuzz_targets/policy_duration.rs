//! Durations in policy files (`deadline = "1.5s"`), the one value syntax of seawall's
//! own in `PolicyConfig`.
//!
//! The whole input, as the text of a `deadline` in a TOML and in a YAML file: both load
//! alike (the same value, or a refusal at `defaults.deadline`); a value is exactly the
//! documented reading (a decimal number and a unit, rounded down to the nanosecond, as
//! the reference in `src/lib.rs` computes it for any number of digits); text that is not
//! a duration is refused as such, and a duration is refused only by the builder. Then a
//! duration derived from the input, written in each unit it is a whole number of (and
//! as decimal seconds), must load back exactly.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use seawall::policy::config::Switch;
use seawall::policy::PolicyConfig;
use seawall_fuzz::{reference_duration, Input};

/// The deadline `text` gives in both formats.
fn load(text: &str) -> Result<Option<Switch<Duration>>, seawall::policy::ConfigFileError> {
    let toml = PolicyConfig::from_toml_str(&format!("[defaults]\ndeadline = \"{text}\"\n"));
    let yaml = PolicyConfig::from_yaml_str(&format!("defaults:\n  deadline: \"{text}\"\n"));
    match (toml, yaml) {
        (Ok(toml), Ok(yaml)) => {
            assert_eq!(
                toml.defaults().deadline,
                yaml.defaults().deadline,
                "{text:?}"
            );
            Ok(toml.defaults().deadline)
        }
        (Err(toml), Err(yaml)) => {
            assert_eq!(toml.path(), "defaults.deadline", "{text:?}: {toml}");
            assert_eq!(yaml.path(), "defaults.deadline", "{text:?}: {yaml}");
            assert_eq!(toml.config_error().is_some(), yaml.config_error().is_some());
            Err(toml)
        }
        (toml, yaml) => panic!("{text:?}: TOML {toml:?}, YAML {yaml:?}"),
    }
}

/// A string both formats hold as written between double quotes.
fn quotable(text: &str) -> bool {
    text.chars().all(|c| {
        !(c.is_control() || matches!(c, '"' | '\\' | '\u{2028}' | '\u{2029}' | '\u{feff}'))
            && !matches!(c, '\u{fffe}' | '\u{ffff}')
    })
}

fuzz_target!(|data: &[u8]| {
    if let Some(text) = std::str::from_utf8(data).ok().filter(|text| quotable(text)) {
        let expected = if text == "off" {
            Some(Switch::Off)
        } else {
            reference_duration(text).map(Switch::On)
        };
        match (load(text), expected) {
            (Ok(read), expected) => assert_eq!(read, expected, "{text:?}"),
            (Err(error), None) => assert!(error.config_error().is_none(), "{text:?}: {error}"),
            (Err(error), Some(_)) => {
                assert!(error.config_error().is_some(), "{text:?} refused: {error}")
            }
        }
    }

    let duration = Input::new(data).duration();
    let nanos = duration.as_nanos();
    let mut written = vec![
        format!("{nanos}ns"),
        format!("{}.{:09}s", duration.as_secs(), duration.subsec_nanos()),
    ];
    for (unit, per) in [("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000u128)] {
        if nanos % per == 0 {
            written.push(format!("{}{unit}", nanos / per));
        }
    }
    for (unit, per) in [("m", 60), ("h", 3_600)] {
        if duration.subsec_nanos() == 0 && duration.as_secs() % per == 0 {
            written.push(format!("{}{unit}", duration.as_secs() / per));
        }
    }
    for text in written {
        match load(&text) {
            Ok(read) => assert_eq!(read, Some(Switch::On(duration)), "{text:?}"),
            Err(error) => assert!(error.config_error().is_some(), "{text:?}: {error}"),
        }
    }
});
