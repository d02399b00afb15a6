//! A model server that follows a script, speaking OpenAI Responses, OpenAI Chat Completions and
//! Anthropic Messages over real HTTP, streaming or not, with faults on demand. It records every
//! request so tests can assert what a client sent, and refuses a conversation its provider would
//! refuse, with the provider's words.

mod check;
mod script;
mod server;
mod wire;

pub use script::{Expect, Fault, Reply, Rule, Script, ToolCall, Turn, Usage};
pub use server::{RecordedRequest, ScriptedServer};
pub use server::{count_tokens, text_of};
