//! The data key: who holds a copy of it (the `sops_<kind>__list_<n>__map_<field>` lines),
//! and the first age copy one of moat's identities unwraps.

use zeroize::Zeroizing;

use super::{File, Recipient};
use crate::secrets::age_file::{self, IdentitySource};

impl File<'_> {
    /// Every copy of the data key, age or not, in file order.
    pub fn recipients(&self) -> Vec<Recipient> {
        let mut found = Vec::new();
        for (key, value) in &self.metadata {
            let Some((kind, index, field)) = list_entry(key) else {
                continue;
            };
            match (kind, field) {
                ("age", "recipient") => found.push(Recipient::Age {
                    recipient: value.clone(),
                    enc: self
                        .metadata
                        .get(format!("age__list_{index}__map_enc").as_str())
                        .cloned()
                        .unwrap_or_default(),
                }),
                ("kms", "arn")
                | ("gcp_kms", "resource_id")
                | ("azure_kv", "vault_url")
                | ("hc_vault", "vault_address")
                | ("pgp", "fp")
                | ("hckms", "key_id") => found.push(Recipient::Other(format!("{kind} {value}"))),
                _ => {}
            }
        }
        found
    }

    /// The data key, unwrapped with one of `identities`; the error says who holds copies.
    pub(super) fn data_key(
        &self,
        identities: &[IdentitySource],
    ) -> Result<Zeroizing<Vec<u8>>, String> {
        let recipients = self.recipients();
        let (age, others) = by_kind(&recipients);
        if age.is_empty() {
            return Err(no_age_recipient(&others));
        }
        if identities.is_empty() {
            return Err(format!(
                "no age identity to unwrap its data key (recipients {}): set SOPS_AGE_KEY_FILE or \
                 SOPS_AGE_KEY (or MOAT_AGE_IDENTITY_FILE / MOAT_AGE_IDENTITY)",
                list(age.iter().map(|(r, _)| *r))
            ));
        }
        if let Some(key) = unwrap_data_key(identities, &age) {
            return Ok(key);
        }
        Err(format!(
            "none of the age identities from {} is one of its recipients ({})",
            list(identities.iter().map(|i| i.origin.as_str())),
            list(age.iter().map(|(r, _)| *r))
        ))
    }
}

/// The data key from the first age copy one of `identities` unwraps.
fn unwrap_data_key(
    identities: &[IdentitySource],
    age: &[(&str, &str)],
) -> Option<Zeroizing<Vec<u8>>> {
    age.iter().find_map(|(_, enc)| {
        age_file::decrypt_with(identities, enc.as_bytes())
            .ok()
            .filter(|key| key.len() == 32)
    })
}

/// `kind__list_<index>__map_<field>`, SOPS's flattening of its recipient lists.
fn list_entry(key: &str) -> Option<(&str, &str, &str)> {
    let (kind, rest) = key.split_once("__list_")?;
    let (index, field) = rest.split_once("__map_")?;
    Some((kind, index, field))
}

/// The age copies of the data key as (recipient, wrapped key), and the others by name.
fn by_kind(recipients: &[Recipient]) -> (Vec<(&str, &str)>, Vec<&str>) {
    let mut age = Vec::new();
    let mut others = Vec::new();
    for recipient in recipients {
        match recipient {
            Recipient::Age { recipient, enc } => age.push((recipient.as_str(), enc.as_str())),
            Recipient::Other(other) => others.push(other.as_str()),
        }
    }
    (age, others)
}

fn no_age_recipient(others: &[&str]) -> String {
    format!(
        "its data key is wrapped only for recipients moat can't use ({}); moat reads age \
         recipients: add one (`sops updatekeys` with an age key in .sops.yaml), or run moat \
         under `sops exec-env FILE 'moat serve'`, or have a secrets operator mount the \
         variables as files and use `VAR_FILE`",
        if others.is_empty() {
            "none listed".to_owned()
        } else {
            others.join(", ")
        }
    )
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}
