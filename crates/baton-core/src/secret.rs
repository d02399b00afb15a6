//! Secrets: values given to the commands that need them and kept out of everything baton records or
//! shows. A value is found as written, base64-encoded (standard or URL-safe alphabet, at any
//! alignment inside a longer encoding) and percent-encoded.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for Secret {
    /// Never the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret").field("name", &self.name).finish_non_exhaustive()
    }
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 without padding.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The part of `value`'s base64 encoding that is the same wherever `value` starts inside a longer
/// encoded text: characters that also carry bits of the bytes around it are left out.
fn base64_cores(value: &[u8], alphabet: &[u8; 64]) -> Vec<String> {
    (0..3)
        .filter_map(|offset| {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(value);
            let encoded = base64(&padded, alphabet);
            let skip = (offset * 8).div_ceil(6);
            let keep = if padded.len() % 3 == 0 { encoded.len() } else { encoded.len() - 1 };
            let core = encoded.get(skip..keep)?;
            (core.len() >= 4).then(|| core.to_owned())
        })
        .collect()
}

fn percent_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Every form of every secret, longest first, so a long form is never cut by a shorter one.
fn forms(secrets: &[Secret]) -> Vec<(String, &str)> {
    let mut forms = Vec::new();
    for secret in secrets.iter().filter(|s| !s.value.is_empty()) {
        let name = secret.name.as_str();
        forms.push((secret.value.clone(), name));
        let encoded = percent_encoded(&secret.value);
        if encoded != secret.value {
            forms.push((encoded.clone(), name));
            forms.push((encoded.replace("%2F", "%2f").to_lowercase(), name));
        }
        for alphabet in [STANDARD, URL_SAFE] {
            forms.extend(base64_cores(secret.value.as_bytes(), alphabet).into_iter().map(|core| (core, name)));
        }
    }
    forms.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    forms.dedup_by(|a, b| a.0 == b.0);
    forms
}

/// `text` with every form of every secret replaced by `[secret NAME]`.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut out = text.to_owned();
    for (form, name) in forms(secrets) {
        if out.contains(&form) {
            out = out.replace(&form, &format!("[secret {name}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn secret(value: &str) -> Secret {
        Secret { name: "TOKEN".into(), value: value.into() }
    }

    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(base64(b"Man", STANDARD), "TWFu");
        assert_eq!(base64(b"Ma", STANDARD), "TWE");
        assert_eq!(base64(b"\xfb\xff", URL_SAFE), "-_8");
    }

    #[test]
    fn every_form_is_hidden() {
        let token = secret("s3cr3t/value+with=chars");
        let secrets = [token];
        for shown in [
            "token=s3cr3t/value+with=chars end".to_owned(),
            format!("url: https://x/?t={}", percent_encoded("s3cr3t/value+with=chars")),
            format!("basic {}", base64(b"user:s3cr3t/value+with=chars", STANDARD)),
            format!("b64url {}", base64(b"xxs3cr3t/value+with=chars", URL_SAFE)),
        ] {
            let redacted = redact(&shown, &secrets);
            assert!(redacted.contains("[secret TOKEN]"), "{shown} -> {redacted}");
            assert!(!redacted.contains("s3cr3t"), "{redacted}");
        }
        assert_eq!(redact("nothing here", &secrets), "nothing here");
        assert_eq!(format!("{:?}", secret("hunter2")), "Secret { name: \"TOKEN\", .. }");
    }

    proptest! {
        #[test]
        fn a_secret_never_survives_inside_any_base64_text(
            value in "[ -~]{6,40}", before in proptest::collection::vec(any::<u8>(), 0..8), after in proptest::collection::vec(any::<u8>(), 0..8)
        ) {
            let secrets = [secret(&value)];
            let mut bytes = before.clone();
            bytes.extend_from_slice(value.as_bytes());
            bytes.extend_from_slice(&after);
            let encoded = base64(&bytes, STANDARD);
            let redacted = redact(&encoded, &secrets);
            prop_assert!(redacted.contains("[secret TOKEN]"), "{} -> {}", encoded, redacted);
            let plain = redact(&format!("x{}y", value), &secrets);
            prop_assert!(!plain.contains(&value), "{}", plain);
        }
    }
}
