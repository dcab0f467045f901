//! A small W3C WebDriver client (also used by `benches/webui.rs`) over reqwest for the browser tests: Debian's `chromedriver`
//! driving Debian's `chromium` headless, with a fresh profile; no browser is downloaded.
//!
//! Waiting is done inside the page: [`Browser::wait_text`] runs an asynchronous script that
//! resolves from a `MutationObserver` when the text appears (the DOM's own change events),
//! bounded by the session's script timeout, so no test polls or sleeps.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the Debian packages put them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromium-driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a wait inside the page may take.
pub const WAIT: Duration = Duration::from_secs(90);

/// A browser session.
pub struct Browser {
    http: reqwest::Client,
    url: String,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width`×`height`; panics if the
    /// Debian packages are missing (the caller checks [`available`] first).
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            l.local_addr().expect("addr").port()
        };
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver");
        let mut out = BufReader::new(driver.stdout.take().expect("stdout")).lines();
        tokio::time::timeout(WAIT, async {
            while let Some(line) = out.next_line().await.expect("chromedriver output") {
                if line.contains("started successfully") {
                    return;
                }
            }
            panic!("chromedriver exited before it was ready");
        })
        .await
        .expect("chromedriver ready");
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        let profile = tempfile::tempdir().expect("profile");
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ]);
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let created: Value = http
            .post(format!("{base}/session"))
            .body(
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
                }}})
                .to_string(),
            )
            .send()
            .await
            .expect("new session")
            .text()
            .await
            .map(|t| serde_json::from_str(&t).expect("session json"))
            .expect("session body");
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        let b = Browser {
            http,
            url: format!("{base}/session/{id}"),
            _driver: driver,
            _profile: profile,
        };
        b.cmd(
            "POST",
            "/timeouts",
            json!({"script": WAIT.as_millis() as u64, "pageLoad": 60000, "implicit": 0}),
        )
        .await;
        b
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_cmd(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("webdriver {method} {path}: {e}"),
        }
    }

    async fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.url);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).body(body.to_string()),
        };
        let v: Value = req
            .send()
            .await
            .expect("webdriver request")
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap_or(Value::Null))
            .expect("webdriver body");
        if v["value"].get("error").is_some() {
            let mut e = v["value"].clone();
            if let Some(o) = e.as_object_mut() {
                o.remove("stacktrace");
            }
            return Err(e);
        }
        Ok(v["value"].clone())
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    /// The page's URL.
    pub async fn current_url(&self) -> String {
        self.cmd("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Resizes the window (phone and desktop screenshots).
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Runs `script` with `args` and returns its value.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        let args = if args.is_null() { json!([]) } else { args };
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// Clicks the element `css`.
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    /// Types `text` into the element `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.cmd("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Sets a form field's value as a paste would, and tells the page (`input` event).
    pub async fn paste(&self, css: &str, text: &str) {
        self.exec(
            "const el = document.querySelector(arguments[0]); el.value = arguments[1];
             el.dispatchEvent(new Event('input', {bubbles: true}));",
            json!([css, text]),
        )
        .await;
    }

    /// The text of the element `css` (empty if absent).
    pub async fn text(&self, css: &str) -> String {
        self.exec(
            "const el = document.querySelector(arguments[0]); return el ? el.textContent : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until an element matching `css` contains `text`, on the DOM's change events;
    /// returns that element's text. Panics with the page's text after [`WAIT`].
    pub async fn wait_text(&self, css: &str, text: &str) -> String {
        // A click that submits a form returns before the browser leaves the page, so the wait
        // may start in the page being left: it then answers null as that page goes
        // (`pagehide`) and the wait starts again in the page that replaced it.
        for _ in 0..5 {
            let got = self
                .try_cmd(
                    "POST",
                    "/execute/async",
                    json!({"script": "
                        const [css, text, done] = arguments;
                        const find = () => [...document.querySelectorAll(css)]
                            .find((el) => el.textContent.includes(text));
                        const check = () => {
                            const el = find();
                            if (el) { obs.disconnect(); done(el.textContent); }
                        };
                        const obs = new MutationObserver(check);
                        obs.observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
                        window.addEventListener('pagehide', () => { obs.disconnect(); done(null); }, {once: true});
                        check();", "args": [css, text]}),
                )
                .await;
            match got {
                Ok(Value::Null) => continue,
                Ok(v) => return v.as_str().unwrap_or_default().to_owned(),
                Err(e) => {
                    let page = self.text("body").await;
                    panic!("waiting for {text:?} in {css}: {e}\npage: {page}");
                }
            }
        }
        panic!("waiting for {text:?} in {css}: the page changed five times meanwhile");
    }

    /// A PNG screenshot written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.cmd("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot"))
            .expect("png");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("screenshot dir");
        std::fs::write(path, png).expect("screenshot");
    }

    /// Ends the session (the browser quits; chromedriver dies with the handle).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

/// Whether Debian's chromium and chromium-driver are installed.
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// Where the test run writes screenshots for review: `target/webui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("webui-screenshots")
}
