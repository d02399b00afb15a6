//! What baton knows about each model: context window, output limit, and price. Built in from
//! `prices.toml`; any entry can be overridden, or a new model added, from the user's configuration.

use std::collections::BTreeMap;

use baton_core::{Charge, ChargeKind, Credits, Rates, Usage, total};
use serde::Deserialize;

const BUILTIN: &str = include_str!("../prices.toml");

/// Prices per million tokens, in credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: Credits,
    pub cache_read: Credits,
    pub cache_write: Credits,
    pub output: Credits,
}

impl Price {
    /// What `usage` costs, one charge per kind of token, each rounded up to the next micro-credit
    /// (never down: an estimate of spend must not fall short of the bill). Kinds that cost nothing
    /// are left out.
    pub fn charges(&self, usage: &Usage) -> Vec<Charge> {
        [
            (ChargeKind::Input, usage.input, self.input),
            (ChargeKind::CachedInput, usage.cache_read, self.cache_read),
            (ChargeKind::CacheWrite, usage.cache_write, self.cache_write),
            (ChargeKind::Output, usage.output, self.output),
        ]
        .into_iter()
        .map(|(kind, tokens, price)| Charge { kind, amount: per_million(tokens, price) })
        .filter(|charge| charge.amount > Credits::ZERO)
        .collect()
    }

    /// What `usage` costs: the sum of its charges.
    pub fn cost(&self, usage: &Usage) -> Credits {
        total(&self.charges(usage))
    }

    /// The most a call with a prompt of `input` tokens and room for `output` tokens can cost: every
    /// input token at the dearer of the plain and the cache-write price, every output token used.
    pub fn worst_case(&self, input: u64, output: u64) -> Vec<Charge> {
        let dearest = Price { input: self.input.max(self.cache_write), ..*self };
        dearest.charges(&Usage { input, output, ..Usage::default() })
    }
}

fn per_million(tokens: u64, price: Credits) -> Credits {
    let micros = (i128::from(tokens) * i128::from(price.micros()) + 999_999).div_euclid(1_000_000);
    Credits::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    pub context_window: u64,
    pub max_output_tokens: u64,
    /// `None` for a model whose price nobody told baton: its calls cannot be charged.
    pub price: Option<Price>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("model table: {0}")]
    Syntax(String),
    #[error("model `{model}`: {field} `{value}` is not an amount of credits per million tokens")]
    BadAmount { model: String, field: &'static str, value: String },
    #[error("[rates] {field} `{value}` is not an amount of credits")]
    BadRate { field: &'static str, value: String },
    #[error("model `{model}` is new to baton, so it needs context_window and max_output_tokens")]
    Incomplete { model: String },
    #[error("model `{model}`: a price needs all of input, cache_read, cache_write and output")]
    PartialPrice { model: String },
}

/// One `[models."provider/model"]` table, every field optional so an override can change just one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    context_window: Option<u64>,
    max_output_tokens: Option<u64>,
    input: Option<String>,
    cache_read: Option<String>,
    cache_write: Option<String>,
    output: Option<String>,
}

/// The `[rates]` table: what work other than model calls costs, as decimal strings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatesEntry {
    sandbox_second: Option<String>,
    check: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Table {
    #[serde(default)]
    models: BTreeMap<String, Entry>,
    rates: Option<RatesEntry>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    models: BTreeMap<String, ModelInfo>,
    rates: Rates,
}

impl Catalog {
    /// The built-in table.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::default().with_overrides(BUILTIN)
    }

    /// Applies `[models."provider/model"]` tables from TOML text on top of this catalog.
    pub fn with_overrides(mut self, toml_text: &str) -> Result<Catalog, CatalogError> {
        let table: Table = toml::from_str(toml_text).map_err(|e| CatalogError::Syntax(e.to_string()))?;
        let rates = table.rates.unwrap_or_default();
        let rate = |field: &'static str, value: Option<String>, old: Credits| match value {
            Some(text) => text
                .parse::<Credits>()
                .ok()
                .filter(|c| c.micros() >= 0)
                .ok_or(CatalogError::BadRate { field, value: text }),
            None => Ok(old),
        };
        self.rates = Rates {
            sandbox_second: rate("sandbox_second", rates.sandbox_second, self.rates.sandbox_second)?,
            check: rate("check", rates.check, self.rates.check)?,
        };
        for (name, entry) in table.models {
            let known = self.models.get(&name).copied();
            let (Some(context_window), Some(max_output_tokens)) = (
                entry.context_window.or(known.map(|k| k.context_window)),
                entry.max_output_tokens.or(known.map(|k| k.max_output_tokens)),
            ) else {
                return Err(CatalogError::Incomplete { model: name });
            };
            let amount = |field: &'static str, value: &Option<String>, old: Option<Credits>| match value {
                Some(text) => text
                    .parse::<Credits>()
                    .ok()
                    .filter(|c| c.micros() >= 0)
                    .map(Some)
                    .ok_or_else(|| CatalogError::BadAmount { model: name.clone(), field, value: text.clone() }),
                None => Ok(old),
            };
            let old = known.and_then(|k| k.price);
            let fields = [
                amount("input", &entry.input, old.map(|p| p.input))?,
                amount("cache_read", &entry.cache_read, old.map(|p| p.cache_read))?,
                amount("cache_write", &entry.cache_write, old.map(|p| p.cache_write))?,
                amount("output", &entry.output, old.map(|p| p.output))?,
            ];
            let price = match fields {
                [Some(input), Some(cache_read), Some(cache_write), Some(output)] => {
                    Some(Price { input, cache_read, cache_write, output })
                }
                [None, None, None, None] => None,
                _ => return Err(CatalogError::PartialPrice { model: name }),
            };
            self.models.insert(name, ModelInfo { context_window, max_output_tokens, price });
        }
        Ok(self)
    }

    /// Every known model name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// The entry for `provider/model`.
    /// What sandbox seconds and check runs cost (`[rates]`; nothing unless configured).
    pub fn rates(&self) -> Rates {
        self.rates
    }

    pub fn get(&self, name: &str) -> Option<&ModelInfo> {
        self.models.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credits(text: &str) -> Credits {
        text.parse().unwrap()
    }

    #[test]
    fn the_builtin_table_loads_and_prices_to_the_micro_credit() {
        let catalog = Catalog::builtin().unwrap();
        let sonnet = catalog.get("anthropic/claude-sonnet-4-5").unwrap();
        assert_eq!(sonnet.context_window, 200_000);
        let usage = Usage { input: 12_345, cache_read: 100_000, cache_write: 2_000, output: 3_456, reasoning: 1_000 };
        // 12345 × 3 + 100000 × 0.3 + 2000 × 3.75 + 3456 × 15 = 37035 + 30000 + 7500 + 51840 micro-credits.
        assert_eq!(sonnet.price.unwrap().cost(&usage), Credits::from_micros(126_375));

        let gpt5 = catalog.get("openai/gpt-5").unwrap().price.unwrap();
        // 1 × 1.25 and 1 × 0.125 micro-credits, each kind rounded up on its own, as the ledger
        // records it: 2 + 1.
        let tiny = Usage { input: 1, cache_read: 1, ..Usage::default() };
        assert_eq!(gpt5.cost(&tiny), Credits::from_micros(3));
        let kinds: Vec<ChargeKind> = gpt5.charges(&tiny).iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [ChargeKind::Input, ChargeKind::CachedInput]);
        // Sonnet writes the cache at 3.75 per million, dearer than plain input (3): the worst case uses it.
        let worst = sonnet.price.unwrap().worst_case(1_000_000, 1_000);
        assert_eq!(total(&worst), Credits::from_micros(3_750_000 + 15_000));
        assert_eq!(gpt5.cost(&Usage::default()), Credits::ZERO);
        let million = Usage { output: 1_000_000, ..Usage::default() };
        assert_eq!(gpt5.cost(&million), credits("10"));
    }

    #[test]
    fn rates_are_read_from_their_table() {
        let catalog = Catalog::builtin().unwrap();
        assert_eq!(catalog.rates(), Rates::default());
        let catalog = catalog.with_overrides("[rates]\nsandbox_second = \"0.0001\"\ncheck = \"0.01\"\n").unwrap();
        assert_eq!(catalog.rates(), Rates { sandbox_second: credits("0.0001"), check: credits("0.01") });
        let err = Catalog::builtin().unwrap().with_overrides("[rates]\ncheck = \"-1\"\n").unwrap_err();
        assert_eq!(err.to_string(), "[rates] check `-1` is not an amount of credits");
    }

    #[test]
    fn overrides_change_one_field_or_add_a_model() {
        let catalog = Catalog::builtin()
            .unwrap()
            .with_overrides(
                r#"
                [models."openai/gpt-5"]
                output = "12.5"
                [models."openai-compatible/qwen3-coder"]
                context_window = 32768
                max_output_tokens = 8192
                "#,
            )
            .unwrap();
        let gpt5 = catalog.get("openai/gpt-5").unwrap();
        assert_eq!(gpt5.price.unwrap().output, credits("12.5"));
        assert_eq!(gpt5.price.unwrap().input, credits("1.25"));
        let local = catalog.get("openai-compatible/qwen3-coder").unwrap();
        assert_eq!((local.context_window, local.price), (32_768, None));
    }

    #[test]
    fn bad_tables_are_named() {
        let base = Catalog::builtin().unwrap();
        let err = |text: &str| base.clone().with_overrides(text).unwrap_err().to_string();
        assert_eq!(
            err("[models.\"openai/gpt-5\"]\ninput = \"1.5e2\""),
            "model `openai/gpt-5`: input `1.5e2` is not an amount of credits per million tokens"
        );
        assert_eq!(
            err("[models.\"openai/gpt-5\"]\ninput = \"-1\""),
            "model `openai/gpt-5`: input `-1` is not an amount of credits per million tokens"
        );
        assert_eq!(
            err("[models.\"x/new\"]\ncontext_window = 10"),
            "model `x/new` is new to baton, so it needs context_window and max_output_tokens"
        );
        assert_eq!(
            err("[models.\"x/new\"]\ncontext_window = 10\nmax_output_tokens = 5\ninput = \"1\""),
            "model `x/new`: a price needs all of input, cache_read, cache_write and output"
        );
        assert!(err("[models.\"openai/gpt-5\"]\ncontext = 10").starts_with("model table:"));
    }
}
