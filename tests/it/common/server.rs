//! The one server fixture: the whole appliance (`App::bind` → `Bound::run`: scheduler,
//! dispatcher, HTTP API, ZMQ, notifications, TFTP) on ephemeral ports over a temporary data
//! directory, with users, tokens, device types and devices seeded through real store calls.
//!
//! Jobs are never written in production's place: tests submit them through an API (or
//! `lavabox::submit::submit`) and the real scheduler and dispatcher run them. The board is
//! either the virtual lab's (real QEMU, [`Board::Lab`]) or a scripted one at the hardware
//! boundary ([`Board::Scripted`], `hw::fake`), which boots, answers the test shell's runner
//! command with LAVA's signal lines and so produces a real log, real results and a real end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lavabox::app::App;
use lavabox::config::{Config, Overrides, RawConfig};
use lavabox::dispatcher::Dispatcher;
use lavabox::events::{Event, Published};
use lavabox::hw::fake::{FakeBoards, FakeConsole, FakeRunner};
use lavabox::model::{DeviceHealth, DeviceState, JobHealth, JobId, JobState};
use lavabox::store::{DeviceChange, JobChange, NewDevice, NewDeviceType, NewUser, Store};
use tokio::sync::{broadcast, oneshot};

use super::{ensure_assets, health_check, repo};

/// Real boards boot in 20–45 s under load; this only stops a hung test.
pub const SAFETY_NET: Duration = Duration::from_secs(600);

/// Alice's e-mail address (LAVA's `set_user_groups` finds users by e-mail).
pub const ALICE_EMAIL: &str = "alice@example.com";

/// The shell prompt of the scripted board.
pub const SCRIPTED_PROMPT: &str = "root@scripted:~# ";

/// The test run the scripted board plays when the test shell's runner command arrives: one
/// test definition (`0_smoke`) with one failing case `ls`, as LAVA's signals.
const SCRIPTED_RUN: &str = "<LAVA_SIGNAL_STARTRUN 0_smoke 1_smoke>\n\
     <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=ls RESULT=fail>\n\
     <LAVA_SIGNAL_ENDRUN 0_smoke 1_smoke>\n\
     <LAVA_TEST_RUNNER EXIT>\n";

/// A scripted board at the hardware boundary: prints a kernel banner and its prompt when its
/// console opens (a `minimal` boot logs in there), answers an empty line with the prompt,
/// and answers the test shell's runner command with [`SCRIPTED_RUN`].
pub fn scripted_board() -> FakeConsole {
    scripted_board_with(&[])
}

/// [`scripted_board`] with other test runs for some jobs: `(job id, signal lines)`, the
/// lines played when that job's runner command (`/lava-<id>/bin/lava-test-runner`) arrives.
pub fn scripted_board_with(runs: &[(i64, &str)]) -> FakeConsole {
    let mut board = FakeConsole::new(format!(
        "[    0.000000] Linux version 6.1.0-scripted (lavabox tests)\n{SCRIPTED_PROMPT}"
    ))
    .on("^ ?$", SCRIPTED_PROMPT);
    // First match wins: the jobs' own runs before the default one.
    for (job, run) in runs {
        board = board.on(
            &format!("/lava-{job}/bin/lava-test-runner"),
            format!("{run}{SCRIPTED_PROMPT}"),
        );
    }
    board.on(
        "lava-test-runner",
        format!("{SCRIPTED_RUN}{SCRIPTED_PROMPT}"),
    )
}

/// The device dictionary of a scripted board of `device type` template `template`
/// (`qemu.jinja2`…): the connection command is never run (the fake console answers instead),
/// but the dispatcher, as LAVA's, wants one for a `minimal` boot.
pub fn scripted_dictionary(template: &str) -> String {
    format!("{{% extends '{template}' %}}\n{{% set connection_command = 'scripted-board' %}}\n")
}

/// A job for the scripted board: `minimal` boot on its prompt (no reset: the board is on
/// when its console opens), then one inline test definition named `smoke` (the board
/// answers its run).
pub fn scripted_job(device_type: &str, job_name: &str) -> String {
    format!(
        "device_type: {device_type}
job_name: {job_name}
visibility: public
priority: high
metadata:
  build: '42'
timeouts:
  job: {{minutes: 5}}
  action: {{minutes: 2}}
  connection: {{minutes: 1}}
actions:
- boot:
    method: minimal
    reset: false
    prompts: ['root@scripted:~# ']
- test:
    definitions:
    - from: inline
      name: smoke
      path: inline/smoke.yaml
      repository:
        metadata: {{format: Lava-Test Test Definition 1.0, name: smoke}}
        run: {{steps: ['ls']}}
"
    )
}

/// What runs the jobs.
pub enum Board {
    /// No scheduler and no dispatcher: the HTTP API alone over the data directory, for the
    /// API suites that assert on jobs staying queued (a running scheduler would take them).
    /// Their finished jobs come from an earlier run of the whole appliance on the same data
    /// directory ([`Server::restart`]).
    ApiOnly,
    /// The real dispatcher on the virtual lab's boards (QEMU); registers `lab/devices/`
    /// boards through [`Options::lab_boards`].
    Lab,
    /// The real dispatcher driving this console and recorded power commands (those
    /// containing one of [`Options::failing_commands`] fail).
    Scripted(FakeConsole),
}

/// Seeding through real store calls.
pub type Seed = Box<dyn FnOnce(&mut Store) -> Result<(), lavabox::store::Error> + Send>;

/// How to start a [`Server`].
pub struct Options {
    /// The board behind the dispatcher.
    pub board: Board,
    /// Virtual lab boards (`lab/devices/<name>.jinja2`) to register, with health
    /// [`Options::board_health`].
    pub lab_boards: Vec<&'static str>,
    /// The health the lab boards start with.
    pub board_health: DeviceHealth,
    /// The lab device types whose health check is enabled (disabled for the others).
    pub health_checks: Vec<&'static str>,
    /// The health check installed for a lab device type instead of its shipped one.
    pub health_check_text: Vec<(&'static str, String)>,
    /// Job definitions submitted as alice before the app runs, so its first pass sees them all.
    pub queued: Vec<String>,
    /// Bind TFTP on 127.0.0.1:69 (the U-Boot lab board needs it); else an ephemeral port.
    pub tftp_port_69: bool,
    /// Substrings of the scripted board's power commands that fail (`hw::fake::FakeRunner`).
    pub failing_commands: Vec<String>,
    /// The instance name (the appliance's own worker).
    pub instance: &'static str,
    /// Notification settings (tests shorten retries); `None`: from the configuration.
    pub notify: Option<lavabox::notify::Settings>,
    /// More seeding (device types, devices, tags…) after the users, before serving.
    pub seed: Seed,
    /// The `[hw]` section (default: the served pdudaemon API off, so tests never take
    /// port 16421).
    pub hw: Option<lavabox::config::RawHw>,
}

impl Options {
    /// A scripted board, no lab boards, no extra seed.
    pub fn scripted() -> Options {
        Options {
            board: Board::Scripted(scripted_board()),
            lab_boards: Vec::new(),
            board_health: DeviceHealth::Good,
            health_checks: Vec::new(),
            health_check_text: Vec::new(),
            queued: Vec::new(),
            tftp_port_69: false,
            failing_commands: Vec::new(),
            instance: "lavabox-test",
            notify: None,
            seed: Box::new(|_| Ok(())),
            hw: None,
        }
    }

    /// The virtual lab's `boards` behind the real dispatcher.
    pub fn lab(boards: &[&'static str]) -> Options {
        Options {
            board: Board::Lab,
            lab_boards: boards.to_vec(),
            ..Options::scripted()
        }
    }

    /// The HTTP API alone ([`Board::ApiOnly`]).
    pub fn api_only() -> Options {
        Options {
            board: Board::ApiOnly,
            ..Options::scripted()
        }
    }

    /// Adds seeding.
    pub fn seed(
        mut self,
        seed: impl FnOnce(&mut Store) -> Result<(), lavabox::store::Error> + Send + 'static,
    ) -> Options {
        self.seed = Box::new(seed);
        self
    }
}

/// A running appliance.
pub struct Server {
    /// Every event [`Server::until`] has read so far, in order.
    pub seen: Vec<Event>,
    /// Where the HTTP API (XML-RPC, REST, results) listens.
    pub addr: SocketAddr,
    /// Where the ZMQ publisher listens.
    pub zmq: Option<SocketAddr>,
    /// Where the served pdudaemon API listens, if on.
    pub pdudaemon: Option<SocketAddr>,
    /// The application (store reads in assertions, the event bus).
    pub app: App,
    /// Superuser `admin`'s token.
    pub admin_token: String,
    /// Plain user `alice`'s token.
    pub alice_token: String,
    /// Plain user `bob`'s token.
    pub bob_token: String,
    /// The appliance's worker (instance) name.
    pub worker: String,
    /// Every event from before serving on.
    pub events: broadcast::Receiver<Arc<Published>>,
    /// Notification delivery outcomes from before serving on.
    pub outcomes: broadcast::Receiver<Arc<lavabox::notify::Outcome>>,
    /// Temporary directory (data, templates, client configuration); `None` only while
    /// stopping.
    dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _tftp_turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Server {
    /// Builds the app in a temporary directory, seeds it, binds every listener on an
    /// ephemeral port and runs it.
    pub async fn start(options: Options) -> Server {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("lavabox=info")
            .with_test_writer()
            .try_init();
        Server::start_in(tempfile::tempdir().expect("tempdir"), None, options).await
    }

    /// Stops this appliance and starts another over the same data directory (users and
    /// tokens kept, `options.seed` applied again).
    pub async fn restart(self, options: Options) -> Server {
        let tokens = (
            self.admin_token.clone(),
            self.alice_token.clone(),
            self.bob_token.clone(),
        );
        let dir = self.stop().await;
        Server::start_in(dir, Some(tokens), options).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        tokens: Option<(String, String, String)>,
        mut options: Options,
    ) -> Server {
        let templates = dir.path().join("templates");
        std::fs::create_dir_all(templates.join("health-checks")).expect("templates dir");
        let _ = tokio::fs::remove_dir_all(dir.path().join("xdg")).await;
        let lab = matches!(options.board, Board::Lab);
        if lab {
            ensure_assets().await;
            for ty in ["qemu", "qemu-uboot-arm"] {
                let text = options
                    .health_check_text
                    .iter()
                    .find(|(t, _)| *t == ty)
                    .map_or_else(|| health_check(ty), |(_, text)| text.clone());
                std::fs::write(templates.join(format!("health-checks/{ty}.yaml")), text)
                    .expect("health check");
            }
        }
        let tftp_turn = if options.tftp_port_69 {
            Some(super::PORT_69.lock().await)
        } else {
            None
        };
        let tftp_listen = if options.tftp_port_69 {
            "127.0.0.1:69"
        } else {
            "127.0.0.1:0"
        };
        let raw = RawConfig {
            instance: Some(options.instance.into()),
            template_dirs: Some(vec![templates, repo().join("device-types")]),
            tftp: Some(lavabox::config::RawTftp {
                root: None,
                listen: Some(tftp_listen.into()),
                server_ip: None,
            }),
            hw: Some(options.hw.take().unwrap_or_else(|| lavabox::config::RawHw {
                pdudaemon_listen: Some("off".into()),
                ..Default::default()
            })),
            ..RawConfig::default()
        };
        let mut config = Config::from_raw(raw, None).expect("config");
        config.apply(&Overrides {
            data_dir: Some(dir.path().join("data")),
            listen: Some("127.0.0.1:0".parse().expect("addr")),
        });
        config.events.zmq_port = 0;
        let worker = config.instance.clone();
        let app = App::build(config).await.expect("app");
        let boards = options.lab_boards.clone();
        let (board_health, health_checks) = (options.board_health, options.health_checks);
        let seed = options.seed;
        let (admin_token, alice_token, bob_token) = app
            .store()
            .call(move |s| {
                if let Some(tokens) = tokens {
                    seed(s)?;
                    return Ok(tokens);
                }
                let mut admin = NewUser::named("admin");
                admin.is_superuser = true;
                s.create_user(&admin)?;
                let mut alice = NewUser::named("alice");
                alice.email = ALICE_EMAIL.into();
                s.create_user(&alice)?;
                s.create_user(&NewUser::named("bob"))?;
                let tokens = (
                    s.create_token("admin", "test")?.secret,
                    s.create_token("alice", "test")?.secret,
                    s.create_token("bob", "test")?.secret,
                );
                for board in boards {
                    let ty = if board.starts_with("uboot-arm") {
                        "qemu-uboot-arm"
                    } else {
                        "qemu"
                    };
                    if s.device_type(ty)?.is_none() {
                        let mut dt = NewDeviceType::named(ty);
                        dt.disable_health_check = !health_checks.contains(&ty);
                        s.create_device_type(&dt)?;
                    }
                    let file = repo().join(format!("lab/devices/{board}.jinja2"));
                    let mut new = NewDevice::new(board, ty);
                    new.dictionary = Some(std::fs::read_to_string(file).expect("lab device"));
                    new.health = board_health;
                    s.create_device(&new)?;
                }
                seed(s)?;
                Ok(tokens)
            })
            .await
            .expect("seed");
        let events = app.events().subscribe();
        for definition in &options.queued {
            super::submit_as(&app, "alice", definition).await;
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let (addr, zmq, pdudaemon, outcomes, task) = if let Board::ApiOnly = options.board {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let served = app.clone();
            let task = tokio::spawn(async move {
                lavabox::api::serve(listener, served, stopped).await?;
                Ok(())
            });
            (addr, None, None, broadcast::channel(1).1, task)
        } else {
            let mut bound = match options.board {
                Board::Scripted(console) => {
                    let dispatcher = Dispatcher::new(
                        app.dispatcher_config(),
                        app.store().clone(),
                        app.templates().clone(),
                    )
                    .with_boards(Arc::new(FakeBoards::new(
                        Arc::new(FakeRunner {
                            failing: options.failing_commands,
                            ..FakeRunner::default()
                        }),
                        Arc::new(console),
                    )));
                    app.clone().bind_with(Arc::new(dispatcher)).await
                }
                Board::ApiOnly | Board::Lab => app.clone().bind().await,
            }
            .expect("bind");
            if let Some(settings) = options.notify {
                bound.notify_with(settings);
            }
            let outcomes = bound.notify_outcomes();
            let (addr, zmq) = (bound.http_addr(), bound.zmq_addr());
            let pdudaemon = bound.pdudaemon_addr();
            (
                addr,
                zmq,
                pdudaemon,
                outcomes,
                tokio::spawn(bound.run(stopped)),
            )
        };
        Server {
            seen: Vec::new(),
            addr,
            zmq,
            pdudaemon,
            app,
            admin_token,
            alice_token,
            bob_token,
            worker,
            events,
            outcomes,
            dir: Some(dir),
            stop: Some(stop),
            task: Some(task),
            _tftp_turn: tftp_turn,
        }
    }

    /// The next event matching `want` on the bus (the job path's own announcements); every
    /// event read on the way is kept in [`Server::seen`], and shown if none comes.
    pub async fn until(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        let (events, seen) = (&mut self.events, &mut self.seen);
        let found = tokio::time::timeout(SAFETY_NET, async {
            loop {
                match events.recv().await {
                    Ok(p) => {
                        seen.push(p.event.clone());
                        if want(&p.event) {
                            return p.event.clone();
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}; seen: {:#?}", self.seen))
    }

    /// The next job change matching `want`.
    pub async fn until_job(&mut self, what: &str, want: impl Fn(&JobChange) -> bool) -> JobChange {
        match self
            .until(what, |e| matches!(e, Event::Job(j) if want(j)))
            .await
        {
            Event::Job(j) => j,
            Event::Device(_) | Event::Worker(_) => unreachable!("matched a job change"),
        }
    }

    /// The next change of device `host` to `state`.
    pub async fn until_device(&mut self, host: &str, state: DeviceState) -> DeviceChange {
        let what = format!("device {host} {state:?}");
        match self
            .until(
                &what,
                |e| matches!(e, Event::Device(d) if d.hostname == host && d.state == state),
            )
            .await
        {
            Event::Device(d) => d,
            Event::Job(_) | Event::Worker(_) => unreachable!("matched a device change"),
        }
    }

    /// Waits until job `id` is Finished and returns its end, showing the log when it did not
    /// end `health`.
    pub async fn finished(&mut self, id: JobId, health: JobHealth) -> JobChange {
        let end = self
            .until_job(&format!("job {id} Finished"), |j| {
                j.id == id && j.state == JobState::Finished
            })
            .await;
        if end.health != health {
            let log =
                std::fs::read_to_string(self.app.config().job_log_path(id)).unwrap_or_default();
            let job = self.app.store().call(move |s| s.job(id)).await;
            panic!(
                "job {id} ended {:?}, not {health:?} ({job:?}); log:\n{log}",
                end.health
            );
        }
        end
    }

    /// The temporary directory (data, templates, client configuration).
    pub fn dir(&self) -> &std::path::Path {
        self.dir
            .as_ref()
            .expect("running server has its directory")
            .path()
    }

    /// Stops the app (canceling what still runs), checks it stopped cleanly, and hands back
    /// its directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(SAFETY_NET, task)
                .await
                .expect("app stops")
                .expect("app task")
                .expect("app run");
        }
        self.dir.take().expect("directory")
    }
}
