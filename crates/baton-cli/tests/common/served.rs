//! A `baton serve` process for tests, on a fresh port, with an admin token, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::model::ScriptedServer;
use serde_json::Value;

/// The server process, killed when dropped.
pub struct Served {
    pub child: Child,
    pub url: String,
    /// An admin token's secret.
    pub token: String,
    pub home: std::path::PathBuf,
}

impl Served {
    /// A client that sends the admin token with every request.
    pub fn http(&self) -> reqwest::Client {
        client_with(&self.token)
    }

    /// Stops the server with SIGTERM and waits for it to exit, which it must do cleanly.
    pub fn terminate(&mut self) {
        let stopped = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(stopped.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(exit.success(), "{exit:?}");
    }

    /// Creates the task `body` describes; its id.
    pub async fn create(&self, body: &Value) -> String {
        let response = self.http().post(format!("{}/api/v1/tasks", self.url)).json(body).send().await.unwrap();
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }
}

pub fn client_with(secret: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {secret}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

impl Served {
    /// Kills the server at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a test's server has to stop its runs before it is killed: a run killed mid-step
/// leaves its task's disk mounted on the machine.
const STOPPING: Duration = Duration::from_secs(10);

impl Drop for Served {
    fn drop(&mut self) {
        // A server that exited (or was killed) has been reaped: its pid may name another process.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + STOPPING;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.home.join("server.log")).unwrap_or_default();
            eprintln!("the server's output:\n{log}");
        }
    }
}

/// `baton` on `home`, with the environment a server's tests give it.
pub fn baton(home: &std::path::Path) -> Command {
    let mut command = Command::cargo_bin("baton").unwrap();
    command.env("BATON_HOME", home).env("BATON_CONFIG", home.join("config.toml"));
    command
}

/// Makes a token named `name` with `scope` on `home` and returns its secret.
pub fn token(home: &std::path::Path, name: &str, scope: &str) -> String {
    let made = baton(home).args(["token", "create", "--name", name, "--scope", scope]).output().unwrap();
    assert!(made.status.success(), "{}", super::describe(&made));
    String::from_utf8(made.stdout).unwrap().trim().to_owned()
}

pub fn serve(home: &std::path::Path, model: &ScriptedServer, slots: &str) -> Served {
    serve_with(home, model, &["--slots", slots])
}

/// A server on a fresh port with `flags`, and an admin token (made on its first start on `home`).
pub fn serve_with(home: &std::path::Path, model: &ScriptedServer, flags: &[&str]) -> Served {
    serve_with_env(home, model, flags, &[])
}

/// [`serve_with`], the server's environment given `env` too.
pub fn serve_with_env(home: &std::path::Path, model: &ScriptedServer, flags: &[&str], env: &[(&str, &str)]) -> Served {
    std::fs::create_dir_all(home).unwrap();
    // A configuration the test wrote stays.
    if !home.join("config.toml").exists() {
        std::fs::write(home.join("config.toml"), "").unwrap();
    }
    let secret_file = home.join("test-admin-secret");
    let token = match std::fs::read_to_string(&secret_file) {
        Ok(secret) => secret,
        Err(_) => {
            let secret = token(home, "test-admin", "admin");
            std::fs::write(&secret_file, &secret).unwrap();
            secret
        }
    };
    let mut child = baton(home)
        .args(["serve", "--addr", "127.0.0.1:0", "--model", "openai-compatible/scripted"])
        .args(flags)
        .env("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.url()))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::options().create(true).append(true).open(home.join("server.log")).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first.split_whitespace().nth(2).expect("baton serves URL …").to_owned();
    Served { child, url, token, home: home.to_owned() }
}

/// The task at `url` once its status is `wanted` (within two minutes).
pub async fn reaching(http: &reqwest::Client, url: String, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let task: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        if task["status"] == wanted {
            return task;
        }
        assert!(Instant::now() < deadline, "never {wanted}: {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves template `name` on `repo` in `home` (ready for a server): `request`, then `flags` (the
/// options of `baton run`); what the command printed, which must be a success.
pub fn save_template(home: &Path, repo: &Path, name: &str, request: &str, flags: &[&str]) -> String {
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(home.join("config.toml"), "").unwrap();
    let repo = repo.display().to_string();
    let saved = baton(home)
        .args(["template", "create", "--name", name, "--request", request, "--repo", &repo])
        .args(flags)
        .output()
        .unwrap();
    assert!(saved.status.success(), "{}", super::describe(&saved));
    String::from_utf8(saved.stdout).unwrap()
}
