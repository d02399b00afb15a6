//! What the `baton` binary's tests share: a scripted tool call and the calc repository.

#![allow(dead_code)] // not every test file uses every helper

pub mod served;

use std::process::Output;

use baton_testkit::FixtureRepo;
use baton_testkit::model::{Expect, Reply, Rule, Script, ToolCall, Turn};
use serde_json::{Value, json};

/// A turn whose answer is one call of `name` with `arguments`.
pub fn call(id: &str, name: &str, arguments: Value) -> Turn {
    Turn {
        reply: Reply {
            tool_calls: vec![ToolCall { id: id.into(), name: name.into(), arguments: arguments.to_string() }],
            ..Reply::default()
        },
        ..Turn::default()
    }
}

/// A script for `tasks` tasks, whichever process asks for which: task n (whose request contains
/// `request(n)`) runs the shell commands `command(n, 1..=steps)`, each of which must print
/// `ran-n-k`, and then finishes. An interrupted step shows its command, not its output: the script
/// goes on either way.
pub fn stepping(
    tasks: usize,
    steps: usize,
    request: impl Fn(usize) -> String,
    command: impl Fn(usize, usize) -> String,
) -> Script {
    let shell = |n: usize, k: usize| {
        let arguments = json!({"command": command(n, k)}).to_string();
        Reply {
            tool_calls: vec![ToolCall { id: format!("s{n}-{k}"), name: "shell".into(), arguments }],
            ..Reply::default()
        }
    };
    let finish =
        ToolCall { id: "f".into(), name: "finish".into(), arguments: json!({"summary": "stepped"}).to_string() };
    let when = |text: String| Expect { body_contains: Some(text), ..Expect::default() };
    let mut rules = Vec::new();
    for n in 0..tasks {
        rules.push(Rule {
            when: when(format!("ran-{n}-{steps}")),
            reply: Reply { tool_calls: vec![finish.clone()], ..Reply::default() },
        });
        for k in (1..steps).rev() {
            rules.push(Rule { when: when(format!("ran-{n}-{k}")), reply: shell(n, k + 1) });
        }
        rules.push(Rule { when: when(request(n)), reply: shell(n, 1) });
    }
    Script { rules, ..Script::default() }
}

/// A Python module whose `add` subtracts, and the test that says so.
pub fn calc_repo() -> FixtureRepo {
    FixtureRepo::with_files(&[
        ("calc.py", "def add(a, b):\n    return a - b\n"),
        ("test_calc.py", "from calc import add\nassert add(2, 3) == 5\nprint('ok')\n"),
    ])
}

/// A package index on the host's loopback, serving one wheel, `calcextra` (`double(x)`), as a
/// `--find-links` page. Returns its port.
pub fn package_index() -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("calcextra-1.0-py3-none-any.whl");
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w') as w:\n\
             \x20   w.writestr('calcextra/__init__.py', 'def double(x):\\n    return 2 * x\\n')\n\
             \x20   w.writestr('calcextra-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: calcextra\\nVersion: 1.0\\n')\n\
             \x20   w.writestr('calcextra-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
             \x20   w.writestr('calcextra-1.0.dist-info/RECORD', 'calcextra/__init__.py,,\\ncalcextra-1.0.dist-info/METADATA,,\\ncalcextra-1.0.dist-info/WHEEL,,\\ncalcextra-1.0.dist-info/RECORD,,\\n')\n",
        )
        .arg(&wheel)
        .status()
        .unwrap();
    assert!(made.success());
    let wheel = std::fs::read(&wheel).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(mut connection) = connection else { continue };
            let mut head = [0u8; 4096];
            let read = std::io::Read::read(&mut connection, &mut head).unwrap_or(0);
            let request = String::from_utf8_lossy(&head[..read]).into_owned();
            let (kind, body) = if request.starts_with("GET /calcextra-1.0-py3-none-any.whl") {
                ("application/octet-stream", wheel.clone())
            } else {
                let page = "<html><body><a href=\"calcextra-1.0-py3-none-any.whl\">calcextra-1.0-py3-none-any.whl</a></body></html>";
                ("text/html", page.as_bytes().to_vec())
            };
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut connection, header.as_bytes());
            let _ = std::io::Write::write_all(&mut connection, &body);
        }
    });
    port
}

/// A finished process, for a failure message.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// An answer that calls `finish` with `summary`.
pub fn finish(summary: &str) -> Reply {
    let call = ToolCall { id: "f".into(), name: "finish".into(), arguments: json!({"summary": summary}).to_string() };
    Reply { tool_calls: vec![call], ..Reply::default() }
}

/// The script of a best-of-N task's attempts, told apart by the line each one's request ends with:
/// attempt k writes `contents[k - 1]` to `ok` and finishes, or, given none, only ever finishes.
pub fn attempts(contents: &[Option<&str>]) -> Script {
    let count = contents.len();
    let mut rules = Vec::new();
    for (index, content) in contents.iter().enumerate() {
        let marker = format!("Attempt {} of {count}:", index + 1);
        let Some(content) = content else {
            let when = Expect { body_contains: Some(marker), ..Expect::default() };
            rules.push(Rule { when, reply: finish("nothing") });
            continue;
        };
        let written = Expect {
            body_contains: Some(marker.clone()),
            last_tool_result_contains: Some("wrote `ok`".into()),
            ..Expect::default()
        };
        rules.push(Rule { when: written, reply: finish(&format!("{} lines", content.lines().count())) });
        let write = ToolCall {
            id: "w".into(),
            name: "write_file".into(),
            arguments: json!({"path": "ok", "content": content}).to_string(),
        };
        let when = Expect { body_contains: Some(marker), ..Expect::default() };
        rules.push(Rule { when, reply: Reply { tool_calls: vec![write], ..Reply::default() } });
    }
    Script { rules, ..Script::default() }
}
