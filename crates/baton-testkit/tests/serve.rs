//! `baton-testkit serve` as a user runs it: a script file in, an address out, real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn the_standalone_server_prints_its_address_and_answers_from_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.json");
    std::fs::write(&script, r#"{"turns": [{"reply": {"text": "hello from the script"}}]}"#).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_baton-testkit"))
        .args(["serve", "--script"])
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
    let address =
        first_line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{first_line:?}")).to_owned();

    let body = r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#;
    let mut connection = TcpStream::connect(&address).unwrap();
    write!(
        connection,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    connection.read_to_string(&mut response).unwrap();
    server.kill().unwrap();
    server.wait().unwrap();

    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(parsed["choices"][0]["message"]["content"], "hello from the script");
}

#[test]
fn a_bad_script_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.json");
    std::fs::write(&script, r#"{"turns": [{"reply": {"txt": "typo"}}]}"#).unwrap();
    let output =
        Command::new(env!("CARGO_BIN_EXE_baton-testkit")).args(["serve", "--script"]).arg(&script).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("is not a valid script") && stderr.contains("unknown field `txt`"), "{stderr}");
}
