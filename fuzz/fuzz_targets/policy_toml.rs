//! Policy files in TOML: `seawall::policy::PolicyConfig::from_toml_str` on any text.
//!
//! No panic, no unbounded allocation or time (the run's `-rss_limit_mb`,
//! `-malloc_limit_mb` and `-timeout`); a file that loads builds every policy it names
//! and the defaults; a refusal has a reason and a line inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seawall::policy::PolicyConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        seawall_fuzz::check_loaded(text, PolicyConfig::from_toml_str(text));
    }
});
