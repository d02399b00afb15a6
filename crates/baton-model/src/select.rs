//! From a model name like `anthropic/claude-sonnet-4-5` to a client: which protocol, which endpoint,
//! which key. Endpoints and keys come from the configuration first, then from the variables each
//! provider's own tools use.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::ModelError;
use crate::protocol::{AnthropicMessages, ChatCompletions, OpenAiResponses, Protocol};
use crate::retry::RetryPolicy;
use crate::transport::{HttpClient, Timeouts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI itself, over the Responses API.
    OpenAi,
    /// Any server that speaks Chat Completions: Ollama, vLLM, llama.cpp, LM Studio, OpenRouter.
    OpenAiCompatible,
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

/// `provider/model`; the model part may itself contain slashes (`openai-compatible/qwen/qwen3`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelName {
    pub provider: ProviderKind,
    pub model: String,
}

impl FromStr for ModelName {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<ModelName, ModelError> {
        let (provider, model) = text.split_once('/').ok_or_else(|| ModelError::BadModelName(text.to_owned()))?;
        if model.trim().is_empty() {
            return Err(ModelError::BadModelName(text.to_owned()));
        }
        let provider = match provider {
            "openai" => ProviderKind::OpenAi,
            "openai-compatible" => ProviderKind::OpenAiCompatible,
            "anthropic" => ProviderKind::Anthropic,
            other => return Err(ModelError::UnknownProvider(other.to_owned())),
        };
        Ok(ModelName { provider, model: model.to_owned() })
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider.as_str(), self.model)
    }
}

/// `[providers.<name>]` in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub base_url: Option<String>,
    /// The variable that holds the key, when it is not the provider's usual one.
    pub api_key_env: Option<String>,
}

/// The `[providers]` section of the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersSection {
    #[serde(default)]
    openai: ProviderConfig,
    #[serde(default, rename = "openai-compatible")]
    openai_compatible: ProviderConfig,
    #[serde(default)]
    anthropic: ProviderConfig,
}

/// The parts of the configuration file this crate reads; other sections belong to other crates.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    providers: ProvidersSection,
}

/// A configuration file this crate cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where each provider lives, and how calls to them are retried and timed out.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    pub openai: ProviderConfig,
    pub openai_compatible: ProviderConfig,
    pub anthropic: ProviderConfig,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
}

/// The usual variables and defaults of each provider.
struct Defaults {
    base_url_env: &'static str,
    base_url: Option<&'static str>,
    key_env: &'static str,
    key_required: bool,
}

fn defaults(kind: ProviderKind) -> Defaults {
    match kind {
        ProviderKind::OpenAi => Defaults {
            base_url_env: "OPENAI_BASE_URL",
            base_url: Some("https://api.openai.com/v1"),
            key_env: "OPENAI_API_KEY",
            key_required: true,
        },
        ProviderKind::OpenAiCompatible => Defaults {
            base_url_env: "OPENAI_COMPATIBLE_BASE_URL",
            base_url: None,
            key_env: "OPENAI_COMPATIBLE_API_KEY",
            key_required: false,
        },
        ProviderKind::Anthropic => Defaults {
            base_url_env: "ANTHROPIC_BASE_URL",
            base_url: Some("https://api.anthropic.com"),
            key_env: "ANTHROPIC_API_KEY",
            key_required: true,
        },
    }
}

impl Providers {
    /// The variables providers' keys are in, where the configuration names them (`api_key_env`).
    pub fn key_variables(&self) -> impl Iterator<Item = &str> {
        [&self.openai, &self.openai_compatible, &self.anthropic].into_iter().filter_map(|p| p.api_key_env.as_deref())
    }

    /// Providers as the `[providers.<name>]` tables of a configuration file set them.
    pub fn from_config(toml_text: &str) -> Result<Providers, ConfigError> {
        let file: ConfigFile = toml::from_str(toml_text).map_err(|e| ConfigError(e.to_string()))?;
        let ProvidersSection { openai, openai_compatible, anthropic } = file.providers;
        Ok(Providers { openai, openai_compatible, anthropic, ..Providers::default() })
    }

    /// A client for `name`, reading variables through `env` (the process environment in the binary,
    /// a map in tests).
    pub fn client(&self, name: &ModelName, env: &dyn Fn(&str) -> Option<String>) -> Result<HttpClient, ModelError> {
        let (config, protocol): (&ProviderConfig, Box<dyn Protocol>) = match name.provider {
            ProviderKind::OpenAi => (&self.openai, Box::new(OpenAiResponses)),
            ProviderKind::OpenAiCompatible => (&self.openai_compatible, Box::new(ChatCompletions)),
            ProviderKind::Anthropic => (&self.anthropic, Box::new(AnthropicMessages)),
        };
        let usual = defaults(name.provider);
        let provider = name.provider.as_str();
        let set = |var: &str| env(var).filter(|v| !v.trim().is_empty());
        let base_url = config
            .base_url
            .clone()
            .or_else(|| set(usual.base_url_env))
            .or(usual.base_url.map(str::to_owned))
            .ok_or_else(|| ModelError::MissingSetting {
                provider,
                what: format!("a base URL: set {} or providers.{provider}.base_url", usual.base_url_env),
            })?;
        let key_env = config.api_key_env.as_deref().unwrap_or(usual.key_env);
        let api_key = set(key_env);
        if api_key.is_none() && (usual.key_required || config.api_key_env.is_some()) {
            return Err(ModelError::MissingSetting { provider, what: format!("an API key: set {key_env}") });
        }
        HttpClient::new(protocol, provider, &base_url, api_key, self.retry, self.timeouts)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_configuration_file_sets_providers_and_refuses_unknown_ones() {
        let providers = Providers::from_config(
            "[providers.openai-compatible]\nbase_url = \"http://127.0.0.1:8080/v1\"\n[models.\"x/y\"]\ncontext_window = 1\n",
        )
        .unwrap();
        assert_eq!(providers.openai_compatible.base_url.as_deref(), Some("http://127.0.0.1:8080/v1"));
        let err = Providers::from_config("[providers.gemini]\nbase_url = \"x\"").unwrap_err();
        assert!(err.0.contains("unknown field `gemini`"), "{err}");
        let err = Providers::from_config("[providers.openai]\nkey = \"sk-in-a-file\"").unwrap_err();
        assert!(err.0.contains("unknown field `key`"), "{err}");
    }

    #[test]
    fn names_parse_or_say_what_is_wrong() {
        let name: ModelName = "openai-compatible/qwen/qwen3-coder".parse().unwrap();
        assert_eq!((name.provider, name.model.as_str()), (ProviderKind::OpenAiCompatible, "qwen/qwen3-coder"));
        assert_eq!(name.to_string(), "openai-compatible/qwen/qwen3-coder");
        assert_eq!("gpt-5".parse::<ModelName>(), Err(ModelError::BadModelName("gpt-5".into())));
        assert_eq!("openai/".parse::<ModelName>(), Err(ModelError::BadModelName("openai/".into())));
        assert_eq!("google/gemini".parse::<ModelName>(), Err(ModelError::UnknownProvider("google".into())));
    }

    #[test]
    fn endpoints_and_keys_come_from_config_then_the_usual_variables() {
        let providers = Providers::default();
        let client = |name: &str, vars: &[(&str, &str)]| providers.client(&name.parse().unwrap(), &env(vars));

        let err = client("anthropic/claude-sonnet-4-5", &[]).unwrap_err();
        assert_eq!(err.to_string(), "anthropic needs an API key: set ANTHROPIC_API_KEY");
        let err = client("openai/gpt-5", &[("OPENAI_API_KEY", "  ")]).unwrap_err();
        assert_eq!(err.to_string(), "openai needs an API key: set OPENAI_API_KEY");
        let err = client("openai-compatible/llama", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "openai-compatible needs a base URL: set OPENAI_COMPATIBLE_BASE_URL or providers.openai-compatible.base_url"
        );

        assert_eq!(
            client("openai/gpt-5", &[("OPENAI_API_KEY", "k")]).unwrap().url(),
            "https://api.openai.com/v1/responses"
        );
        let anthropic =
            client("anthropic/x", &[("ANTHROPIC_API_KEY", "k"), ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/")]);
        assert_eq!(anthropic.unwrap().url(), "http://127.0.0.1:9/v1/messages");
        // A local server needs no key.
        let local = client("openai-compatible/llama", &[("OPENAI_COMPATIBLE_BASE_URL", "http://127.0.0.1:11434/v1")]);
        assert_eq!(local.unwrap().url(), "http://127.0.0.1:11434/v1/chat/completions");

        let configured = Providers {
            openai_compatible: ProviderConfig { base_url: Some("ftp://x".into()), api_key_env: None },
            anthropic: ProviderConfig { base_url: None, api_key_env: Some("WORK_KEY".into()) },
            ..Providers::default()
        };
        let err = configured.client(&"openai-compatible/m".parse().unwrap(), &env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid base URL `ftp://x` for openai-compatible: only http and https are supported"
        );
        let err = configured.client(&"anthropic/m".parse().unwrap(), &env(&[("ANTHROPIC_API_KEY", "k")])).unwrap_err();
        assert_eq!(err.to_string(), "anthropic needs an API key: set WORK_KEY");
    }
}
