//! The web UI in real browsers: headless Chromium and Firefox driven over WebDriver (Debian's
//! chromium with chromium-driver, and firefox-esr with geckodriver, which `scripts/test` installs)
//! against `baton serve`, the scripted model and a real sandbox. A user signs in, tops up, creates a
//! task from the form, answers its question, watches it end verified without reloading, reads the
//! diff, resolves a finding, sends a follow-up and reads the budget; each step asserts on what the
//! page shows. The same pages are read with JavaScript off, and axe-core checks them for serious
//! accessibility faults. Chromium's screenshots of the main pages go to docs/screenshots.
//!
//! Needs `BATON_TEST_CHROMEDRIVER`, `BATON_TEST_GECKODRIVER` and `BATON_TEST_AXE` (axe.min.js), set
//! by `scripts/test`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_testkit::model::{Expect, Script, ScriptedServer};
use common::served::{client_with, serve_with, token};
use serde_json::{Value, json};

/// A minimal W3C WebDriver client: what the test needs and nothing else.
mod webdriver {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    /// A chromedriver process and one browser session in it; both go when dropped.
    pub struct Browser {
        driver: Child,
        base: String,
        http: reqwest::Client,
        /// Keeps the profile directory until the browser is gone.
        _profile: tempfile::TempDir,
    }

    /// Which browser, driven by which WebDriver server.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Engine {
        /// Debian's chromium, through chromium-driver.
        Chromium,
        /// Debian's firefox-esr, through geckodriver.
        Firefox,
    }

    impl Engine {
        fn driver(self) -> String {
            let (variable, what) = match self {
                Engine::Chromium => ("BATON_TEST_CHROMEDRIVER", "chromedriver (Debian's chromium-driver)"),
                Engine::Firefox => ("BATON_TEST_GECKODRIVER", "geckodriver (built from crates.io)"),
            };
            std::env::var(variable).unwrap_or_else(|_| panic!("{variable} must name {what}; scripts/test installs it"))
        }
    }

    /// An element, by its WebDriver reference.
    #[derive(Debug, Clone)]
    pub struct Element(String);

    const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

    impl Browser {
        /// A headless browser in a fresh profile, through its WebDriver server; `javascript` off
        /// shows what a reader without scripts gets. Whatever the browser would send beyond
        /// loopback goes to a proxy on 127.0.0.1 port 9, where nothing listens: this machine has
        /// no network, and a test sends nothing off it.
        pub async fn start(engine: Engine, javascript: bool) -> Browser {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let driver = Command::new(engine.driver())
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the WebDriver server starts");
            let base = format!("http://127.0.0.1:{port}");
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while http.get(format!("{base}/status")).send().await.is_err() {
                assert!(Instant::now() < deadline, "the WebDriver server did not answer");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let profile = tempfile::tempdir().unwrap();
            let capabilities = match engine {
                Engine::Chromium => {
                    let mut args = vec![
                        "--headless=new".to_owned(),
                        "--no-sandbox".to_owned(),
                        "--disable-gpu".to_owned(),
                        "--disable-dev-shm-usage".to_owned(),
                        "--disable-background-networking".to_owned(),
                        "--disable-component-update".to_owned(),
                        "--disable-sync".to_owned(),
                        "--disable-quic".to_owned(),
                        "--no-first-run".to_owned(),
                        "--proxy-server=http://127.0.0.1:9".to_owned(),
                        "--window-size=1280,900".to_owned(),
                        format!("--user-data-dir={}", profile.path().display()),
                    ];
                    if !javascript {
                        args.push("--blink-settings=scriptEnabled=false".to_owned());
                    }
                    json!({"browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}})
                }
                Engine::Firefox => json!({"browserName": "firefox", "moz:firefoxOptions": {
                    "binary": "/usr/bin/firefox-esr",
                    "args": ["-headless", "-width", "1280", "-height", "900", "-profile", profile.path()],
                    "prefs": {
                        "javascript.enabled": javascript,
                        "network.proxy.type": 1,
                        "network.proxy.http": "127.0.0.1",
                        "network.proxy.http_port": 9,
                        "network.proxy.ssl": "127.0.0.1",
                        "network.proxy.ssl_port": 9,
                        "network.trr.mode": 5,
                        "network.captive-portal-service.enabled": false,
                        "network.connectivity-service.enabled": false,
                        "app.update.disabledForTesting": true,
                        "toolkit.telemetry.reportingpolicy.firstRun": false,
                        "datareporting.policy.dataSubmissionEnabled": false,
                        "browser.safebrowsing.malware.enabled": false,
                        "browser.safebrowsing.phishing.enabled": false,
                        "extensions.update.enabled": false,
                    },
                }}),
            };
            let mut browser = Browser { driver, base, http, _profile: profile };
            let session =
                browser.call("POST", "/session", json!({"capabilities": {"alwaysMatch": capabilities}})).await;
            browser.base = format!("{}/session/{}", browser.base, session["sessionId"].as_str().unwrap());
            browser
        }

        /// A WebDriver command's value, or its error.
        async fn request(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
            let url = format!("{}{path}", self.base);
            let request = match method {
                "GET" => self.http.get(url),
                _ => self.http.post(url).json(&body),
            };
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            match answer["value"]["error"].as_str() {
                Some(error) => Err(format!("WebDriver {method} {path}: {error}: {}", answer["value"]["message"])),
                None => Ok(answer["value"].clone()),
            }
        }

        async fn call(&self, method: &str, path: &str, body: Value) -> Value {
            self.request(method, path, body).await.unwrap_or_else(|error| panic!("{error}"))
        }

        pub async fn go(&self, url: &str) {
            self.call("POST", "/url", json!({"url": url})).await;
        }

        pub async fn url(&self) -> String {
            self.call("GET", "/url", Value::Null).await.as_str().unwrap().to_owned()
        }

        /// The first element `css` selects, once there is one (within `patience`).
        pub async fn find(&self, css: &str) -> Element {
            self.wait_for(css, |_| true).await
        }

        /// The first element `css` selects whose text `holds`, waiting for it up to a minute.
        pub async fn wait_for(&self, css: &str, holds: impl Fn(&str) -> bool) -> Element {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let found = self.call("POST", "/elements", json!({"using": "css selector", "value": css})).await;
                for element in found.as_array().unwrap() {
                    let element = Element(element[ELEMENT].as_str().unwrap().to_owned());
                    // A live page may replace the element between the search and the read.
                    let text = self.request("GET", &format!("/element/{}/text", element.0), Value::Null).await;
                    if text.is_ok_and(|text| holds(text.as_str().unwrap_or_default())) {
                        return element;
                    }
                }
                if Instant::now() > deadline {
                    let body = self.script("return document.body.innerText", json!([])).await;
                    panic!("nothing matching `{css}` showed what was wanted; the page says:\n{body}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }

        pub async fn text(&self, element: &Element) -> String {
            let text = self.call("GET", &format!("/element/{}/text", element.0), Value::Null).await;
            text.as_str().unwrap_or_default().to_owned()
        }

        pub async fn click(&self, element: &Element) {
            self.call("POST", &format!("/element/{}/click", element.0), json!({})).await;
        }

        pub async fn type_in(&self, element: &Element, text: &str) {
            self.call("POST", &format!("/element/{}/value", element.0), json!({"text": text})).await;
        }

        /// Presses and releases `key` (a WebDriver key code) where the focus is.
        pub async fn press(&self, key: char) {
            let key = key.to_string();
            let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key},
            ]}]});
            self.call("POST", "/actions", actions).await;
        }

        /// Runs `body` as a function of `args` in the page; what it returns.
        pub async fn script(&self, body: &str, args: Value) -> Value {
            self.call("POST", "/execute/sync", json!({"script": body, "args": args})).await
        }

        /// Runs `body`, which calls its last argument with the answer.
        pub async fn script_async(&self, body: &str, args: Value) -> Value {
            self.call("POST", "/execute/async", json!({"script": body, "args": args})).await
        }

        /// A PNG of the viewport.
        pub async fn screenshot(&self) -> Vec<u8> {
            use base64::Engine as _;
            let encoded = self.call("GET", "/screenshot", Value::Null).await;
            base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap()
        }

        /// The body text of the page.
        pub async fn page_text(&self) -> String {
            self.script("return document.body.innerText", json!([])).await.as_str().unwrap().to_owned()
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.driver.kill();
            let _ = self.driver.wait();
        }
    }
}

use webdriver::{Browser, Engine};

/// Where the committed screenshots live.
fn screenshots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
}

async fn shoot(browser: &Browser, name: &str) {
    std::fs::create_dir_all(screenshots()).unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), browser.screenshot().await).unwrap();
}

/// axe-core's serious and critical findings on the page the browser shows.
async fn accessibility_faults(browser: &Browser, axe: &str) -> Vec<String> {
    browser.script(axe, json!([])).await;
    let found = browser
        .script_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']}).then(result => done(result.violations
               .filter(v => v.impact === 'serious' || v.impact === 'critical')
               .map(v => v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))));",
            json!([]),
        )
        .await;
    found.as_array().unwrap().iter().map(|fault| fault.as_str().unwrap().to_owned()).collect()
}

/// What a hostile task would like a page to run: it sets `window.pwned` if it ever does.
const PAYLOAD: &str = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">";

/// The agent asks whether to add or subtract, fixes `add` as told and finishes; the reviewer
/// leaves a nit; the follow-up's task writes a page full of markup and finishes, and its review is
/// clean.
fn script() -> Script {
    let call = common::call;
    let ask = call(
        "q",
        "ask_human",
        json!({"question": "Add or subtract?", "options": ["add", "subtract"], "why": "the name says add"}),
    );
    let mut fix = call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}));
    fix.expect = Expect { last_tool_result_contains: Some("The human answered: add".into()), ..Expect::default() };
    let nit = json!({"findings": [{"title": "name the parameters x and y", "body": "a style nit", "severity": "P3",
        "confidence": 40, "file": "calc.py", "start_line": 1, "end_line": 1}]});
    let mut again = call("w", "write_file", json!({"path": "notes.html", "content": PAYLOAD}));
    again.expect = Expect { body_contains: Some("Also check floats".into()), ..Expect::default() };
    Script {
        turns: vec![
            ask,
            fix,
            call("f", "finish", json!({"summary": "add() adds"})),
            call("r", "report_findings", nit),
            again,
            call("g", "finish", json!({"summary": format!("floats already work {PAYLOAD}")})),
            call("c", "report_findings", json!({"findings": []})),
        ],
        ..Script::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_runs_a_task_in_chromium_and_every_page_shows_what_happened() {
    story(Engine::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_runs_a_task_in_firefox_and_every_page_shows_what_happened() {
    story(Engine::Firefox).await;
}

/// The whole story in one browser; the screenshots are Chromium's.
async fn story(engine: Engine) {
    let axe =
        std::fs::read_to_string(std::env::var("BATON_TEST_AXE").expect("BATON_TEST_AXE must name axe.min.js")).unwrap();
    let model = ScriptedServer::start(script()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir_all(home.path()).unwrap();
    // Priced, so that the budget page has spending to show: a check costs a hundredth.
    let prices = "[models.\"openai-compatible/scripted\"]\ncontext_window = 32768\nmax_output_tokens = 4096\n\
                  input = \"0.1\"\ncache_read = \"0.01\"\ncache_write = \"0.1\"\noutput = \"10\"\n\
                  [rates]\ncheck = \"0.01\"\n";
    std::fs::write(home.path().join("config.toml"), prices).unwrap();
    let writer = token(home.path(), "alice", "admin");
    let served = serve_with(home.path(), &model, &["--slots", "1"]);
    let url = |path: &str| format!("{}{path}", served.url);
    let browser = Browser::start(engine, true).await;
    let shoot = |name: &'static str| {
        let browser = &browser;
        async move {
            if engine == Engine::Chromium {
                shoot(browser, name).await;
            }
        }
    };

    // Signed out, every page leads to the login; a wrong token is refused there.
    browser.go(&url("/")).await;
    assert!(browser.url().await.ends_with("/login"), "{}", browser.url().await);
    assert!(accessibility_faults(&browser, &axe).await.is_empty());
    browser.type_in(&browser.find("#token").await, "baton_wrong").await;
    browser.click(&browser.find("form button").await).await;
    browser.wait_for(".error", |text| text.contains("unknown or revoked")).await;
    browser.type_in(&browser.find("#token").await, &writer).await;
    browser.click(&browser.find("form button").await).await;
    browser.wait_for("h1", |text| text == "Tasks").await;

    // Credits first, from the budget page's form.
    browser.go(&url("/budget")).await;
    browser.type_in(&browser.find("#credits").await, "20").await;
    browser.click(&browser.find("form[action='/budget/topup'] button").await).await;
    browser.wait_for(".notice", |text| text.contains("the balance is 20.00 credits")).await;

    // A task from the form.
    browser.go(&url("/tasks/new")).await;
    assert_eq!(accessibility_faults(&browser, &axe).await, Vec::<String>::new(), "the new-task form");
    browser.type_in(&browser.find("#request").await, "Make add() add").await;
    browser.type_in(&browser.find("#repo").await, &repo.path().display().to_string()).await;
    // The check takes two seconds, so that the page is open while the rest of the run comes in.
    browser.type_in(&browser.find("#checks").await, "sleep 2 && python3 test_calc.py").await;
    browser.click(&browser.find("form.task-form > button").await).await;
    browser.wait_for(".notice", |text| text.contains("Created and queued")).await;
    let page = browser.url().await;
    let id = page.split("/tasks/").nth(1).unwrap().split(['?', '#']).next().unwrap().to_owned();

    // Its question appears on the page as it comes, and from here on the page is never reloaded.
    browser.script("window.notReloaded = true", json!([])).await;
    let question = browser.wait_for(".decision .question", |text| text.contains("Add or subtract?")).await;
    assert!(browser.text(&question).await.contains("Add or subtract?"));
    shoot("task-waiting").await;
    assert_eq!(accessibility_faults(&browser, &axe).await, Vec::<String>::new(), "the task page, waiting");
    browser.type_in(&browser.find("#answer").await, "add").await;
    browser.click(&browser.find(".decision button[value='approve']").await).await;
    browser.wait_for(".notice", |text| text.contains("d1 answered")).await;

    // The timeline grows without a reload until the task is verified.
    browser.script("window.notReloaded = true", json!([])).await;
    let before = browser.script("return document.querySelectorAll('#timeline li').length", json!([])).await;
    browser.wait_for("#header .status", |text| text == "done").await;
    browser.wait_for("#timeline li", |text| text.contains("finished: verified")).await;
    let after = browser.script("return document.querySelectorAll('#timeline li').length", json!([])).await;
    assert!(after.as_u64().unwrap() > before.as_u64().unwrap() + 5, "{before} entries, then {after}");
    browser.wait_for("#timeline li", |text| text.contains("check `sleep 2 && python3 test_calc.py` passed")).await;
    assert_eq!(browser.script("return window.notReloaded === true", json!([])).await, true, "grown live");
    browser.go(&url(&format!("/tasks/{id}"))).await;
    shoot("task-verified").await;

    // The diff, coloured.
    browser.click(&browser.wait_for("#changes a", |text| text == "The whole diff").await).await;
    browser.wait_for("pre.diff .add", |text| text.contains("+    return a + b")).await;
    browser.wait_for("pre.diff .del", |text| text.contains("-    return a - b")).await;
    shoot("diff").await;
    assert_eq!(accessibility_faults(&browser, &axe).await, Vec::<String>::new(), "the diff");
    // Up to a checkpoint: one the task made, and no other revision.
    browser.go(&url(&format!("/tasks/{id}#changes"))).await;
    browser.click(&browser.wait_for("#changes a", |text| text.starts_with("up to checkpoint")).await).await;
    browser.wait_for("main p", |text| text.starts_with("From the base commit to checkpoint")).await;
    browser.go(&url(&format!("/tasks/{id}/diff?commit=HEAD"))).await;
    browser.wait_for(".error", |text| text.contains("has no checkpoint \"HEAD\"")).await;

    // The reviewer's nit, resolved with a note.
    browser.go(&url(&format!("/tasks/{id}#findings"))).await;
    browser.wait_for("#finding-f1 h3", |text| text.contains("name the parameters x and y")).await;
    browser.type_in(&browser.find("#note-f1").await, "fine as it is").await;
    browser.click(&browser.find("#finding-f1 button[value='resolved']").await).await;
    browser.wait_for(".notice", |text| text.contains("f1 resolved")).await;
    browser.wait_for("#finding-f1 h3", |text| text.contains("(resolved)")).await;

    // A follow-up to the finished task continues its branch in a new task, which ends verified.
    let follow_up = format!("Also check floats {PAYLOAD}");
    browser.type_in(&browser.find("#follow-up").await, &follow_up).await;
    browser.click(&browser.find(".steer form[action$='/message'] button").await).await;
    browser.wait_for(".notice", |text| text.contains("continues its branch")).await;
    let continuing = browser.url().await;
    assert!(!continuing.split('?').next().unwrap().ends_with(&id), "the new task's page: {continuing}");
    browser.wait_for("#header h1", |text| text.contains("Also check floats <script>")).await;
    browser.wait_for("#header .status", |text| text == "done").await;
    // Markup from the user, the model and the agent's files shows as text and never runs: in the
    // request, the summary, the tool call's arguments (live and loaded) and the diff.
    browser.wait_for("#timeline li", |text| text.contains("write_file: notes.html")).await;
    // Neither run nor even made into elements (the page's policy would stop them running anyway).
    let script =
        "return window.pwned === undefined && document.querySelectorAll('img, script:not([src])').length === 0";
    let pwned = || browser.script(script, json!([]));
    assert_eq!(pwned().await, true, "the live page ran the task's markup");
    browser.go(&browser.url().await).await;
    browser.wait_for("#facts", |text| text.contains("floats already work <script>")).await;
    assert_eq!(pwned().await, true, "the loaded page ran the task's markup");
    browser.go(&format!("{}/diff", browser.url().await.split(['?', '#']).next().unwrap())).await;
    browser.wait_for("pre.diff .add", |text| text.contains("<script>window.pwned = 1</script>")).await;
    assert_eq!(pwned().await, true, "the diff ran the file's markup");

    // The task list shows both; the budget shows what they spent.
    browser.go(&url("/")).await;
    browser.wait_for("#task-rows tr", |text| text.contains("Make add() add") && text.contains("done")).await;
    shoot("tasks").await;
    // By keyboard: the first Tab reaches the link past the navigation, Enter follows it, and the
    // next Tabs walk the filters.
    const TAB: char = '\u{E004}';
    const ENTER: char = '\u{E007}';
    let focused = || browser.script("const e = document.activeElement; return e.id || e.textContent", json!([]));
    browser.press(TAB).await;
    assert_eq!(focused().await, "Skip to content");
    browser.press(ENTER).await;
    assert!(browser.url().await.ends_with("#main"), "{}", browser.url().await);
    browser.press(TAB).await;
    assert_eq!(focused().await, "status", "the status filter comes first in the content");
    assert_eq!(accessibility_faults(&browser, &axe).await, Vec::<String>::new(), "the task list");
    browser.go(&url("/budget")).await;
    let spent = browser.wait_for("dl.facts", |text| text.contains("Spent in")).await;
    let spent = browser.text(&spent).await;
    let lines: Vec<&str> = spent.lines().collect();
    let month = lines.iter().position(|line| line.starts_with("Spent in")).unwrap();
    assert!(!lines[month + 1].starts_with("0.00") && spent.contains("Balance\n19."), "{spent}");
    browser.find(".bars td.bar progress").await;
    shoot("budget").await;
    assert_eq!(accessibility_faults(&browser, &axe).await, Vec::<String>::new(), "the budget page");
    for page in ["/schedules", "/hooks"] {
        browser.go(&url(page)).await;
        browser.find("main h1").await;
        assert_eq!(accessibility_faults(&browser, &axe).await, Vec::<String>::new(), "{page}");
    }

    // Without JavaScript the list and the task page show their content all the same.
    let cookie_less = Browser::start(engine, false).await;
    cookie_less.go(&url("/login")).await;
    cookie_less.type_in(&cookie_less.find("#token").await, &writer).await;
    cookie_less.click(&cookie_less.find("form button").await).await;
    let listed = cookie_less.wait_for("#task-rows", |text| text.contains("Make add() add")).await;
    assert!(cookie_less.text(&listed).await.contains("Also check floats"));
    cookie_less.go(&url(&format!("/tasks/{id}"))).await;
    let text = cookie_less.page_text().await;
    assert!(text.contains("finished: verified") && text.contains("name the parameters x and y"), "{text}");
    assert!(model.failures().is_empty(), "{:?}", model.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_need_the_sessions_csrf_value_and_a_page_of_this_server() {
    let model = ScriptedServer::start(Script::default()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path()).unwrap();
    let reader = token(home.path(), "reader", "read");
    let served = serve_with(home.path(), &model, &["--slots", "1"]);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = |path: &str| format!("{}{path}", served.url);

    // Signed out: pages send the browser to the login, forms are refused.
    let page = http.get(url("/budget")).send().await.unwrap();
    assert_eq!((page.status().as_u16(), page.headers()["location"].to_str().unwrap()), (303, "/login"));
    let form = http.post(url("/budget/topup")).form(&[("credits", "5")]).send().await.unwrap();
    assert_eq!(form.status(), 401);

    // Signed in: the cookie is HttpOnly and SameSite=Strict.
    let signed = http.post(url("/login")).form(&[("token", served.token.as_str())]).send().await.unwrap();
    assert_eq!(signed.status(), 303);
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let budget = http.get(url("/budget")).header("cookie", &session).send().await.unwrap().text().await.unwrap();
    let csrf = budget.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    // Without the CSRF value, with another session's, or from another site's page: refused, and
    // nothing changes.
    let top_up = |fields: Vec<(&'static str, String)>, origin: Option<&'static str>| {
        let mut request = http.post(url("/budget/topup")).header("cookie", &session).form(&fields);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let none = top_up(vec![("credits", "5".into())], None).await.unwrap();
    assert_eq!(none.status(), 403);
    let forged = top_up(vec![("credits", "5".into()), ("csrf", "0".repeat(32))], None).await.unwrap();
    assert_eq!(forged.status(), 403);
    let elsewhere =
        top_up(vec![("credits", "5".into()), ("csrf", csrf.clone())], Some("http://evil.example")).await.unwrap();
    assert_eq!(elsewhere.status(), 403);
    let account: Value =
        client_with(&served.token).get(url("/api/v1/account")).send().await.unwrap().json().await.unwrap();
    assert_eq!(account["balance"], "0.00", "{account}");
    let done = top_up(vec![("credits", "5".into()), ("csrf", csrf.clone())], Some("http://127.0.0.1")).await;
    assert_eq!(done.unwrap().status(), 403, "another port is another origin");
    let done = top_up(vec![("credits", "5".into()), ("csrf", csrf)], None).await.unwrap();
    assert_eq!(done.status(), 303);

    // A read token signs in and reads, but its forms that change things are refused; the cookie
    // never serves an API call that changes something.
    let signed = http.post(url("/login")).form(&[("token", reader.as_str())]).send().await.unwrap();
    let reading = signed.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(url("/tasks/new")).header("cookie", &reading).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let refused = http
        .post(url("/budget/topup"))
        .header("cookie", &reading)
        .form(&[("credits", "5"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let api_read = http.get(url("/api/v1/account")).header("cookie", &session).send().await.unwrap();
    assert_eq!(api_read.status(), 200);
    let api_write = http
        .post(url("/api/v1/account/topup"))
        .header("cookie", &session)
        .json(&json!({"credits": "5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(api_write.status(), 401);

    // Signing out clears the cookie; a revoked token's cookie signs nobody in.
    let revoked = common::served::baton(home.path()).args(["token", "revoke", "reader"]).output().unwrap();
    assert!(revoked.status.success());
    let page = http.get(url("/")).header("cookie", &reading).send().await.unwrap();
    assert_eq!(page.status(), 303);
    let signed_out = http.post(url("/logout")).header("cookie", &session).form(&[("csrf", "x")]).send().await.unwrap();
    assert_eq!(signed_out.status(), 403, "signing out is a form like the others");
}

/// A signed-in caller's forms, as a browser without JavaScript sends them.
struct Forms {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Forms {
    async fn sign_in(base: &str, secret: &str) -> Forms {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let signed = http.post(format!("{base}/login")).form(&[("token", secret)]).send().await.unwrap();
        let cookie = signed.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut forms = Forms { http, base: base.to_owned(), cookie, csrf: String::new() };
        let page = forms.page("/tasks/new").await;
        forms.csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        forms
    }

    async fn page(&self, path: &str) -> String {
        let response =
            self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// Sends a form; the answer's status and where it leads (or its page).
    async fn send(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut fields = fields.to_vec();
        fields.push(("csrf", &self.csrf));
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&fields)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        match response.headers().get("location") {
            Some(location) => (status, location.to_str().unwrap().to_owned()),
            None => (status, response.text().await.unwrap()),
        }
    }

    /// The task, once its status is `wanted`, over the API with the same cookie.
    async fn reaching(&self, id: &str, wanted: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let task: Value = self
                .http
                .get(format!("{}/api/v1/tasks/{id}", self.base))
                .header("cookie", &self.cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if task["status"] == wanted {
                return task;
            }
            assert!(std::time::Instant::now() < deadline, "never {wanted}: {task}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forms_pick_an_attempt_resume_and_cancel_and_a_refused_task_keeps_what_was_typed() {
    let model = ScriptedServer::start(common::attempts(&[Some("fine\n"), Some("a\nb\nc\nd\n")])).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve_with(home.path(), &model, &["--slots", "2"]);
    let forms = Forms::sign_in(&served.url, &served.token).await;
    let repo_path = repo.path().display().to_string();

    // A task the server refuses: the form comes back with why and with what was typed.
    let fields =
        [("request", "Two tries"), ("repo", repo_path.as_str()), ("checks", "test -f ok"), ("attempts", "lots")];
    let (status, page) = forms.send("/tasks", &fields).await;
    assert_eq!(status, 422);
    assert!(page.contains("attempts: `lots` is not a number") && page.contains(">Two tries</textarea>"), "{page}");

    // Best of two, picked by a human on the page.
    let fields = [
        ("request", "Two tries"),
        ("repo", repo_path.as_str()),
        ("checks", "test -f ok"),
        ("attempts", "2"),
        ("pick", "human"),
        ("no_review", "on"),
    ];
    let (status, location) = forms.send("/tasks", &fields).await;
    assert_eq!(status, 303, "{location}");
    let id = location.trim_start_matches("/tasks/").split('?').next().unwrap().to_owned();
    forms.reaching(&id, "waiting").await;
    let page = forms.page(&format!("/tasks/{id}")).await;
    assert!(page.contains("Pick attempt-1") && page.contains("Pick attempt-2"), "{page}");
    assert!(page.contains("1 files, +4 −0"), "each attempt's change is shown: {page}");
    let (status, location) = forms.send(&format!("/tasks/{id}/pick"), &[("attempt", "attempt-2")]).await;
    assert_eq!((status, location.contains("attempt-2+picked")), (303, true), "{location}");
    forms.reaching(&id, "done").await;
    let page = forms.page(&format!("/tasks/{id}")).await;
    assert!(page.contains("attempt-2 (picked)"), "{page}");
    let (status, page) = forms.send(&format!("/tasks/{id}/pick"), &[("attempt", "attempt-1")]).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("already picked"), "{page}");

    // A task paused by its step limit resumes from its page (and pauses again), then is cancelled.
    let fields = [("request", "One step"), ("repo", repo_path.as_str()), ("checks", "true"), ("max_steps", "1")];
    let (_, location) = forms.send("/tasks", &fields).await;
    let paused = location.trim_start_matches("/tasks/").split('?').next().unwrap().to_owned();
    let before = forms.reaching(&paused, "paused").await;
    let (status, _) = forms.send(&format!("/tasks/{paused}/resume"), &[]).await;
    assert_eq!(status, 303);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let after: Value = serde_json::from_str(&forms.page(&format!("/api/v1/tasks/{paused}")).await).unwrap();
        if after["status"] == "paused" && after["next_seq"].as_u64() > before["next_seq"].as_u64() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the resumed task did not run: {after}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, _) = forms.send(&format!("/tasks/{paused}/cancel"), &[]).await;
    assert_eq!(status, 303);
    let page = forms.page(&format!("/tasks/{paused}")).await;
    assert!(page.contains("cancelled in the web UI") && !page.contains("Cancel the task"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_is_saved_from_the_form_and_starts_tasks_from_its_page() {
    let rule = baton_testkit::model::Rule { when: Expect::default(), reply: common::finish("done") };
    let model = ScriptedServer::start(Script { rules: vec![rule], ..Script::default() }).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve_with(home.path(), &model, &["--slots", "1"]);
    let forms = Forms::sign_in(&served.url, &served.token).await;
    let repo_path = repo.path().display().to_string();
    let mut fields = vec![
        ("request", "Weekly tidy"),
        ("repo", repo_path.as_str()),
        ("checks", "true"),
        ("no_review", "on"),
        ("max_steps", "5"),
        ("template_name", "weekly"),
    ];
    let (status, location) = forms.send("/tasks", &fields).await;
    assert_eq!((status, location.as_str()), (303, "/templates?notice=Template+weekly+saved."));
    let page = forms.page("/templates").await;
    assert!(page.contains("<code>weekly</code>") && page.contains("Weekly tidy") && page.contains("5 steps"), "{page}");
    let (status, page) = forms.send("/tasks", &fields).await;
    assert_eq!(status, 422, "a name is taken once");
    assert!(page.contains("exists already"), "{page}");
    fields.retain(|(name, _)| *name != "template_name");
    fields.push(("template_name", "two words"));
    assert_eq!(forms.send("/tasks", &fields).await.0, 422);

    let (status, location) = forms.send("/templates/weekly/start", &[]).await;
    assert_eq!(status, 303, "{location}");
    let id = location.trim_start_matches("/tasks/").split('?').next().unwrap().to_owned();
    let task = forms.reaching(&id, "done").await;
    assert_eq!(task["request"], "Weekly tidy", "{task}");
    let (status, _) = forms.send("/templates/weekly/delete", &[]).await;
    assert_eq!(status, 303);
    assert!(forms.page("/templates").await.contains("No templates yet."));
    assert_eq!(forms.send("/templates/weekly/start", &[]).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_too_large_to_show_is_listed_by_file_and_shown_in_part() {
    let big: String = (0..25_000).map(|n| format!("line {n}\n")).collect();
    let script = Script {
        turns: vec![
            common::call("w", "write_file", json!({"path": "big.txt", "content": big})),
            common::call("f", "finish", json!({"summary": "a big file"})),
        ],
        ..Script::default()
    };
    let model = ScriptedServer::start(script).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve_with(home.path(), &model, &["--slots", "1"]);
    let forms = Forms::sign_in(&served.url, &served.token).await;
    let repo_path = repo.path().display().to_string();
    // A window the big write fits in, so that no handoff asks the script for a summary.
    let fields = [
        ("request", "Big"),
        ("repo", repo_path.as_str()),
        ("checks", "true"),
        ("no_review", "on"),
        ("context_window", "2000000"),
    ];
    let (_, location) = forms.send("/tasks", &fields).await;
    let id = location.trim_start_matches("/tasks/").split('?').next().unwrap().to_owned();
    forms.reaching(&id, "done").await;

    // The task page lists the file from git's per-file counts, not from the diff itself.
    let page = forms.page(&format!("/tasks/{id}")).await;
    assert!(page.contains("<code>big.txt</code></td><td class=\"add\">+25000</td>"), "{page}");
    // The diff page shows its first 20,000 lines and says where the rest is.
    let page = forms.page(&format!("/tasks/{id}/diff")).await;
    assert!(page.contains("Its first 20000 of 25006 lines"), "{}", &page[..page.len().min(3000)]);
    assert!(page.contains("+line 19993\n") && !page.contains("+line 19994\n"), "cut after 20,000 lines");
}
