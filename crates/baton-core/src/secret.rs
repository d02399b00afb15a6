//! Secrets: values given to the commands that need them and kept out of everything baton records or
//! shows. A value is found as written; base64-encoded (standard or URL-safe alphabet, at any
//! alignment inside a longer encoding, and wrapped across lines as `base64` and PEM wrap it);
//! percent-encoded (escapes in either case, letters as written); hex-encoded (either case); and as
//! the inside of a JSON string.

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

/// The same escapes with lower-case hex digits; the letters that were not escaped keep their case.
fn lower_case_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut escape = 0;
    for c in encoded.chars() {
        if c == '%' {
            escape = 2;
            out.push(c);
        } else if escape > 0 {
            escape -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn hex(value: &str) -> String {
    value.bytes().map(|b| format!("{b:02x}")).collect()
}

/// `value` as it appears inside a JSON string (`serde_json`'s escapes; `\/` as some encoders write
/// it is covered by the second form).
fn json_escaped(value: &str) -> Vec<String> {
    let mut escaped = String::new();
    for c in value.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if u32::from(c) < 0x20 => escaped.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    vec![escaped.replace('/', "\\/"), escaped]
}

/// How a form may appear in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Exactly as written.
    Contiguous,
    /// With line breaks anywhere inside, as encoders wrap long lines.
    Wrapped,
}

/// Every form of every secret, longest first, so a long form is never cut by a shorter one.
fn forms(secrets: &[Secret]) -> Vec<(String, &str, Layout)> {
    let mut forms = Vec::new();
    for secret in secrets.iter().filter(|s| !s.value.is_empty()) {
        let (value, name) = (secret.value.as_str(), secret.name.as_str());
        forms.push((value.to_owned(), name, Layout::Contiguous));
        let encoded = percent_encoded(value);
        if encoded != value {
            forms.push((lower_case_escapes(&encoded), name, Layout::Contiguous));
            forms.push((encoded, name, Layout::Contiguous));
        }
        let hex = hex(value);
        forms.push((hex.to_ascii_uppercase(), name, Layout::Contiguous));
        forms.push((hex, name, Layout::Contiguous));
        forms.extend(json_escaped(value).into_iter().map(|form| (form, name, Layout::Contiguous)));
        for alphabet in [STANDARD, URL_SAFE] {
            forms
                .extend(base64_cores(value.as_bytes(), alphabet).into_iter().map(|core| (core, name, Layout::Wrapped)));
        }
    }
    forms.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    forms.dedup_by(|a, b| a.0 == b.0);
    forms
}

/// Where `form` occurs in `text` with line breaks allowed between its characters: the byte range
/// of the first occurrence at or after `from`.
fn find_wrapped(text: &str, form: &str, from: usize) -> Option<(usize, usize)> {
    let (bytes, wanted) = (text.as_bytes(), form.as_bytes());
    let first = *wanted.first()?;
    let mut start = from;
    while let Some(offset) = bytes.get(start..)?.iter().position(|b| *b == first) {
        let begin = start + offset;
        let (mut at, mut matched) = (begin, 0);
        while matched < wanted.len() && at < bytes.len() {
            if bytes[at] == wanted[matched] {
                matched += 1;
            } else if !(matched > 0 && matches!(bytes[at], b'\n' | b'\r')) {
                break;
            }
            at += 1;
        }
        if matched == wanted.len() {
            return Some((begin, at));
        }
        start = begin + 1;
    }
    None
}

/// `text` with every form of every secret replaced by `[secret NAME]`.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut out = text.to_owned();
    for (form, name, layout) in forms(secrets) {
        let marker = format!("[secret {name}]");
        match layout {
            Layout::Contiguous => {
                if out.contains(&form) {
                    out = out.replace(&form, &marker);
                }
            }
            Layout::Wrapped => {
                let mut from = 0;
                while let Some((begin, end)) = find_wrapped(&out, &form, from) {
                    out.replace_range(begin..end, &marker);
                    from = begin + marker.len();
                }
            }
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
            format!("url: https://x/?t={}", lower_case_escapes(&percent_encoded("s3cr3t/value+with=chars"))),
            format!("hex {}", hex("s3cr3t/value+with=chars")),
            format!("HEX {}", hex("s3cr3t/value+with=chars").to_uppercase()),
            format!("json {}", serde_json_like("s3cr3t/value+with=chars")),
        ] {
            let redacted = redact(&shown, &secrets);
            assert!(redacted.contains("[secret TOKEN]"), "{shown} -> {redacted}");
            assert!(!redacted.contains("s3cr3t"), "{redacted}");
        }
        assert_eq!(redact("nothing here", &secrets), "nothing here");
        assert_eq!(format!("{:?}", secret("hunter2")), "Secret { name: \"TOKEN\", .. }");
    }

    /// How JSON encoders that escape `/` write the value.
    fn serde_json_like(value: &str) -> String {
        format!("{{\"token\": \"{}\"}}", value.replace('/', "\\/"))
    }

    #[test]
    fn percent_escapes_in_either_case_keep_the_letters_as_written() {
        let secrets = [secret("Hunter2/Pass")];
        for shown in ["Hunter2%2FPass", "Hunter2%2fPass"] {
            assert_eq!(redact(shown, &secrets), "[secret TOKEN]", "{shown}");
        }
    }

    #[test]
    fn json_escapes_are_seen_through() {
        let secrets = [secret("quote\"back\\slash")];
        assert_eq!(redact("{\"t\": \"quote\\\"back\\\\slash\"}", &secrets), "{\"t\": \"[secret TOKEN]\"}");
    }

    proptest! {
        /// A long secret encoded by `base64`, which wraps at 76 columns (PEM at 64): no line of the
        /// output keeps a recoverable piece of it.
        #[test]
        fn a_secret_never_survives_wrapped_base64(
            value in "[ -~]{58,120}", before in proptest::collection::vec(any::<u8>(), 0..8), width in prop_oneof![Just(64usize), Just(76usize)]
        ) {
            let secrets = [secret(&value)];
            let mut bytes = before.clone();
            bytes.extend_from_slice(value.as_bytes());
            let encoded = base64(&bytes, STANDARD);
            let wrapped: Vec<String> = encoded.as_bytes().chunks(width).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            let redacted = redact(&wrapped.join("\n"), &secrets);
            prop_assert!(redacted.contains("[secret TOKEN]"), "{}", redacted);
            // What is left is at most the edges the neighbouring bytes share: two characters a side.
            let left: usize = redacted.replace("[secret TOKEN]", "").chars().filter(|c| !c.is_whitespace()).count();
            prop_assert!(left <= 2 + before.len().div_ceil(3) * 4 + 4, "{}", redacted);
        }

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
