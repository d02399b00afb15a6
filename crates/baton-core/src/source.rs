//! Where a task's repository comes from: a path on this machine, or a remote's URL (which baton
//! mirrors in its data directory, so that any machine with the URL can continue the task).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A task's repository, written in the journal as one string: an absolute path, or a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RepoSource {
    /// The user's repository on this machine; its checkout is never written.
    Local(PathBuf),
    /// A remote, mirrored under baton's data directory.
    Remote(RemoteUrl),
}

/// A remote's URL: `https://`, `ssh://` or `file://`, with no credentials in it (they come from
/// the environment or the credential store, so that they never reach the journal).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteUrl(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` is not a URL baton fetches from: give https://, ssh:// or file://")]
    Scheme(String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error(
        "`{0}` carries credentials: leave them out of the URL and set BATON_GIT_TOKEN (and BATON_GIT_USERNAME) or add them to the credential store, so that they never reach the journal"
    )]
    Credentials(String),
    #[error("a file:// URL needs an absolute path after `file://`: `{0}`")]
    FilePath(String),
    #[error("the URL {0:?} contains a space or a control character")]
    Character(String),
}

impl RemoteUrl {
    pub fn parse(text: &str) -> Result<RemoteUrl, UrlError> {
        let error = |make: fn(String) -> UrlError| Err(make(text.to_owned()));
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return error(UrlError::Character);
        }
        let Some((scheme, rest)) = text.split_once("://") else { return error(UrlError::Scheme) };
        match scheme {
            "file" if rest.starts_with('/') => Ok(RemoteUrl(text.to_owned())),
            "file" => error(UrlError::FilePath),
            "https" | "ssh" => {
                let authority = rest.split('/').next().unwrap_or_default();
                let (user, host) = authority.rsplit_once('@').unwrap_or(("", authority));
                // Over https a user name is a token as often as not; over ssh it is the account.
                if !user.is_empty() && (scheme == "https" || user.contains(':')) {
                    // Not echoed: an error message is printed and logged.
                    return Err(UrlError::Credentials(text.replacen(user, "***", 1)));
                }
                if host.is_empty() || host.starts_with(':') || host.starts_with('-') {
                    return error(UrlError::NoHost);
                }
                Ok(RemoteUrl(text.to_owned()))
            }
            _ => error(UrlError::Scheme),
        }
    }

    /// The URL of a remote as a repository's configuration gives it (`remote.NAME.url`), for a
    /// repository at `root`: a URL as it is, `[user@]host:path` as `ssh://`, a path as `file://`.
    pub fn from_remote_setting(setting: &str, root: &std::path::Path) -> Result<RemoteUrl, UrlError> {
        if setting.contains("://") {
            return RemoteUrl::parse(setting);
        }
        let scp_like = setting.split_once(':').filter(|(host, _)| !host.is_empty() && !host.contains('/'));
        match scp_like {
            Some((host, path)) => {
                // git reads a relative path of this form from the account's home directory.
                let path = if path.starts_with('/') { path.to_owned() } else { format!("/~/{path}") };
                RemoteUrl::parse(&format!("ssh://{host}{path}"))
            }
            None => RemoteUrl::parse(&format!("file://{}", root.join(setting).display())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name for things kept per remote (its mirror): the same for the same URL everywhere.
    pub fn key(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest[..10].iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl RepoSource {
    /// A URL when the text starts with a scheme (`name://`), a path otherwise.
    pub fn parse(text: &str) -> Result<RepoSource, UrlError> {
        let is_url = text.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if is_url { RemoteUrl::parse(text).map(RepoSource::Remote) } else { Ok(RepoSource::Local(PathBuf::from(text))) }
    }

    pub fn remote(&self) -> Option<&RemoteUrl> {
        match self {
            RepoSource::Remote(url) => Some(url),
            RepoSource::Local(_) => None,
        }
    }
}

impl From<PathBuf> for RepoSource {
    fn from(path: PathBuf) -> RepoSource {
        RepoSource::Local(path)
    }
}

impl From<&std::path::Path> for RepoSource {
    fn from(path: &std::path::Path) -> RepoSource {
        RepoSource::Local(path.to_owned())
    }
}

impl From<RemoteUrl> for RepoSource {
    fn from(url: RemoteUrl) -> RepoSource {
        RepoSource::Remote(url)
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RepoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoSource::Local(path) => write!(f, "{}", path.display()),
            RepoSource::Remote(url) => url.fmt(f),
        }
    }
}

impl Serialize for RepoSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RepoSource::Local(path) => path.serialize(serializer),
            RepoSource::Remote(url) => url.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for RepoSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RepoSource, D::Error> {
        let text = String::deserialize(deserializer)?;
        RepoSource::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for RemoteUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RemoteUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RemoteUrl, D::Error> {
        RemoteUrl::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_the_three_schemes_are_remotes_and_paths_are_local() {
        for url in ["https://github.com/o/r.git", "ssh://git@host:2222/o/r", "file:///srv/git/r.git"] {
            assert_eq!(RepoSource::parse(url), Ok(RepoSource::Remote(RemoteUrl(url.into()))));
        }
        for path in ["/home/me/repo", "/tmp/odd://name", "relative"] {
            assert_eq!(RepoSource::parse(path), Ok(RepoSource::Local(path.into())));
        }
    }

    #[test]
    fn credentials_other_schemes_and_odd_characters_are_refused() {
        let refused = [
            ("https://x-access-token:ghp_secret@github.com/o/r", "credentials"),
            ("https://ghp_secret@github.com/o/r", "credentials"),
            ("ssh://git:hunter2@host/r", "credentials"),
            ("ext::sh%20-c%20touch%20/tmp/pwned", "not a URL"),
            ("http://example.com/r", "not a URL"),
            ("git://example.com/r", "not a URL"),
            ("file://relative/r", "absolute path"),
            ("https:///r", "no host"),
            ("ssh://-oProxyCommand=x/r", "no host"),
            ("https://host/r\n", "control character"),
        ];
        for (url, why) in refused {
            let error = RemoteUrl::parse(url).expect_err(url).to_string();
            assert!(error.contains(why), "{url}: {error}");
            assert!(!error.contains("secret") && !error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn a_source_is_one_string_in_the_journal_and_old_paths_still_read() {
        let remote = RepoSource::parse("file:///srv/r.git").unwrap();
        assert_eq!(serde_json::to_string(&remote).unwrap(), r#""file:///srv/r.git""#);
        let local: RepoSource = serde_json::from_str(r#""/home/me/repo""#).unwrap();
        assert_eq!(local, RepoSource::Local("/home/me/repo".into()));
        let error = serde_json::from_str::<RepoSource>(r#""https://tok@h/r""#).unwrap_err();
        assert!(error.to_string().contains("credentials"), "{error}");
    }

    #[test]
    fn a_repositorys_remote_setting_becomes_a_url() {
        let root = std::path::Path::new("/home/me/repo");
        for (setting, url) in [
            ("https://github.com/o/r.git", "https://github.com/o/r.git"),
            ("git@github.com:o/r.git", "ssh://git@github.com/~/o/r.git"),
            ("host:/srv/r.git", "ssh://host/srv/r.git"),
            ("../upstream.git", "file:///home/me/repo/../upstream.git"),
            ("/srv/git/r.git", "file:///srv/git/r.git"),
        ] {
            assert_eq!(RemoteUrl::from_remote_setting(setting, root).unwrap().as_str(), url, "{setting}");
        }
        assert!(RemoteUrl::from_remote_setting("https://tok@github.com/o/r", root).is_err());
    }

    #[test]
    fn a_remotes_key_is_stable_and_differs_between_urls() {
        let a = RemoteUrl::parse("file:///a").unwrap();
        assert_eq!(a.key(), RemoteUrl::parse("file:///a").unwrap().key());
        assert_ne!(a.key(), RemoteUrl::parse("file:///b").unwrap().key());
        assert_eq!(a.key().len(), 20);
    }
}
