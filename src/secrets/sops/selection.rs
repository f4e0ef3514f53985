//! Which values SOPS encrypted (`shouldBeEncrypted` in `sops.go`), from the file's
//! metadata: the (un)encrypted suffix and regex rules, and whether the MAC covers only the
//! encrypted values.

use std::collections::BTreeMap;

/// Which values SOPS encrypted (`shouldBeEncrypted` in `sops.go`), from the file's metadata.
pub(super) struct Selection {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    pub(super) mac_only_encrypted: bool,
}

impl Selection {
    pub(super) fn of(metadata: &BTreeMap<&str, String>) -> Result<Selection, String> {
        let text = |key: &str| metadata.get(key).filter(|v| !v.is_empty()).cloned();
        let regex = |key: &str| {
            text(key)
                .map(|pattern| {
                    regex::Regex::new(&pattern)
                        .map_err(|e| format!("`sops_{key}` is not a regex moat can read: {e}"))
                })
                .transpose()
        };
        Ok(Selection {
            unencrypted_suffix: text("unencrypted_suffix"),
            encrypted_suffix: text("encrypted_suffix"),
            unencrypted_regex: regex("unencrypted_regex")?,
            encrypted_regex: regex("encrypted_regex")?,
            mac_only_encrypted: text("mac_only_encrypted")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    pub(super) fn encrypts(&self, name: &str) -> bool {
        let mut encrypted = true;
        if let Some(suffix) = &self.unencrypted_suffix
            && name.ends_with(suffix.as_str())
        {
            encrypted = false;
        }
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = name.ends_with(suffix.as_str());
        }
        if let Some(regex) = &self.unencrypted_regex
            && regex.is_match(name)
        {
            encrypted = false;
        }
        if let Some(regex) = &self.encrypted_regex {
            encrypted = regex.is_match(name);
        }
        encrypted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_follows_sops_rules() {
        let metadata: BTreeMap<&str, String> =
            [("unencrypted_suffix", "_unencrypted".to_owned())].into();
        let selection = Selection::of(&metadata).unwrap();
        assert!(selection.encrypts("TOKEN"));
        assert!(!selection.encrypts("PORT_unencrypted"));
        let metadata: BTreeMap<&str, String> =
            [("encrypted_regex", "^(SECRET|TOKEN)".to_owned())].into();
        let selection = Selection::of(&metadata).unwrap();
        assert!(selection.encrypts("TOKEN_A") && !selection.encrypts("PORT"));
    }
}
