//! `baton token`: the API's bearer tokens. A secret is printed once, on stdout alone, and kept
//! nowhere but in the hands of whoever ran the command; the store keeps its hash.

use std::path::Path;

use anyhow::Context as _;
use baton_core::{Token, TokenHash, check_token_name, token_secret};
use baton_store::Store;

use crate::cli::TokenCommand;
use crate::show;
use crate::task::now;

pub async fn run(home: &Path, command: TokenCommand, json: bool) -> anyhow::Result<()> {
    let store = crate::store::open(home).await?;
    match command {
        TokenCommand::Create { name, scope } => {
            check_token_name(&name).map_err(anyhow::Error::msg)?;
            let mut entropy = [0u8; 32];
            getrandom::fill(&mut entropy).map_err(|e| anyhow::anyhow!("cannot draw a token's secret: {e}"))?;
            let secret = token_secret(entropy);
            let token = Token { name, scope, created_at: now(), revoked_at: None };
            store.add_token(&token, &TokenHash::of(&secret)).await?;
            if json {
                show::json(&serde_json::json!({ "token": token, "secret": secret }))?;
            } else {
                println!("{secret}");
                eprintln!(
                    "token {} ({}) made: the line above is its secret, shown this once; send it as \
                     `Authorization: Bearer <secret>` or set BATON_TOKEN",
                    token.name, token.scope
                );
            }
        }
        TokenCommand::List => {
            let tokens = store.tokens().await.context("cannot list tokens")?;
            if json {
                show::json(&tokens)?;
            } else {
                show::tokens(&tokens)?;
            }
        }
        TokenCommand::Revoke { name } => {
            let token = store.revoke_token(&name, now()).await?;
            if json {
                show::json(&token)?;
            } else {
                println!("token {} revoked", token.name);
            }
        }
    }
    Ok(())
}
