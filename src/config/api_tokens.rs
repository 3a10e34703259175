//! `api_tokens.*` (SPEC §9, §11): what validating API tokens may cost.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiTokenSettings {
    /// Cache misses (each one database read) one client address may cause
    /// per minute; beyond, its unknown tokens are refused without a read.
    /// 0 = no limit.
    pub misses_per_address: u32,
}

impl Default for ApiTokenSettings {
    fn default() -> Self {
        Self {
            misses_per_address: 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    #[test]
    fn misses_per_address_defaults_to_60_and_0_lifts_it() {
        assert_eq!(load("", &[]).unwrap().api_tokens.misses_per_address, 60);
        let yaml = "api_tokens:\n  misses_per_address: 0\n";
        assert_eq!(load(yaml, &[]).unwrap().api_tokens.misses_per_address, 0);
        let env = [("TOKENGATE__API_TOKENS__MISSES_PER_ADDRESS", "5")];
        assert_eq!(load("", &env).unwrap().api_tokens.misses_per_address, 5);
        let bad = load("api_tokens:\n  misses_per_address: -1\n", &[]).unwrap_err();
        assert!(bad.key.starts_with("api_tokens"), "{}", bad.key);
    }
}
