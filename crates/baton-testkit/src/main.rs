//! `baton-testkit serve --script FILE [--addr 127.0.0.1:0]`: the scripted model server on its own,
//! for trying a client against it by hand. It prints the address it is listening on, then serves
//! until interrupted.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use baton_testkit::model::{Script, ScriptedServer};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "baton-testkit", version, about = "Test tools for baton")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a scripted model over OpenAI Responses, Chat Completions and Anthropic Messages.
    Serve {
        /// The script: JSON, see docs/testkit.md.
        #[arg(long, value_name = "FILE")]
        script: PathBuf,
        /// Where to listen; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
}

fn main() -> ExitCode {
    let Command::Serve { script, addr } = Cli::parse().command;
    match serve(&script, addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &PathBuf, addr: SocketAddr) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let script: Script =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a valid script: {e}", path.display()))?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let server = ScriptedServer::bind(script, addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        println!("listening on {}", server.url());
        let _ = std::io::stdout().flush();
        tokio::signal::ctrl_c().await.map_err(|e| format!("cannot wait for a signal: {e}"))?;
        let served = server.requests().len();
        let failures = server.failures();
        eprintln!("served {served} requests; {} turns left; {} failures", server.remaining_turns(), failures.len());
        for failure in failures {
            eprintln!("  {failure}");
        }
        Ok(())
    })
}
