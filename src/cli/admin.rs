//! Admin commands: users, groups, tokens, device types and devices, run against the
//! database directly (they work while `lavabox serve` runs: SQLite WAL and a busy timeout).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::table::table;
use super::{Command, DeviceCommand, DeviceTypeCommand, GroupCommand, TokenCommand, UserCommand};
use crate::config::Config;
use crate::model::DeviceHealth;
use crate::store::{HealthDenominator, NewDevice, NewDeviceType, NewUser, Store};

/// Logs warnings (or the configured filter's level) to stderr: stdout is for results.
pub(super) fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Creates the data directory if needed and opens (migrating) the database.
pub(super) fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let path = config.database_path();
    Store::open(&path).with_context(|| format!("opening database {}", path.display()))
}

/// Runs one admin command.
pub(super) fn run(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    let mut store = open_store(config)?;
    let mut out = std::io::stdout().lock();
    match command {
        Command::User(cmd) => user(&mut store, &mut out, cmd)?,
        Command::Group(cmd) => group(&mut store, &mut out, cmd)?,
        Command::Token(cmd) => token(&mut store, &mut out, cmd)?,
        Command::DeviceType(cmd) => device_type(&mut store, &mut out, cmd)?,
        Command::Device(cmd) => device(config, &mut store, &mut out, cmd)?,
        Command::Query(cmd) => super::query::run(&mut store, &mut out, cmd)?,
        Command::Serve { .. } | Command::Validate { .. } | Command::Describe { .. } => {
            bail!("internal error: not an admin command")
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn user(store: &mut Store, out: &mut impl Write, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            name,
            superuser,
            email,
        } => {
            let user = store
                .create_user(&NewUser {
                    username: name.clone(),
                    email: email.unwrap_or_default(),
                    is_superuser: superuser,
                })
                .with_context(|| format!("adding user `{name}`"))?;
            writeln!(out, "user `{}` created", user.username)?;
        }
        UserCommand::List => {
            let rows = store
                .users()
                .context("listing users")?
                .into_iter()
                .map(|u| {
                    vec![
                        u.username,
                        u.email,
                        yes_no(u.is_superuser),
                        yes_no(u.is_active),
                    ]
                })
                .collect();
            table(out, &["USERNAME", "EMAIL", "SUPERUSER", "ACTIVE"], rows)?;
        }
        UserCommand::Passwd { name } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.chars().count() < crate::web::password::MIN_LEN {
                anyhow::bail!(
                    "the password must have at least {} characters",
                    crate::web::password::MIN_LEN
                );
            }
            let phc = crate::web::password::hash(password).context("hashing the password")?;
            store
                .set_password(&name, &phc)
                .with_context(|| format!("setting the password of `{name}`"))?;
            writeln!(out, "password of `{name}` set")?;
        }
    }
    Ok(())
}

fn group(store: &mut Store, out: &mut impl Write, cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::Add { name } => {
            store
                .create_group(&name)
                .with_context(|| format!("adding group `{name}`"))?;
            writeln!(out, "group `{name}` created")?;
        }
        GroupCommand::AddMember { group, user } => {
            store
                .add_group_member(&group, &user)
                .with_context(|| format!("adding `{user}` to group `{group}`"))?;
            writeln!(out, "user `{user}` added to group `{group}`")?;
        }
        GroupCommand::List => {
            let mut rows = Vec::new();
            for group in store.groups().context("listing groups")? {
                let members = store
                    .group_members(&group.name)
                    .context("listing group members")?;
                rows.push(vec![group.name, members.join(",")]);
            }
            table(out, &["GROUP", "MEMBERS"], rows)?;
        }
    }
    Ok(())
}

fn token(store: &mut Store, out: &mut impl Write, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Add { name, description } => {
            let new = store
                .create_token(&name, &description)
                .with_context(|| format!("adding a token for `{name}`"))?;
            // Only the secret on stdout, so scripts can capture it.
            writeln!(out, "{}", new.secret)?;
        }
        TokenCommand::List { name } => {
            let rows = store
                .tokens(&name)
                .with_context(|| format!("listing tokens of `{name}`"))?
                .into_iter()
                .map(|t| {
                    vec![
                        t.id.0.to_string(),
                        t.description,
                        t.created.date().to_string(),
                        t.last_used
                            .map_or_else(|| "never".to_owned(), |d| d.date().to_string()),
                    ]
                })
                .collect();
            table(out, &["ID", "DESCRIPTION", "CREATED", "LAST USED"], rows)?;
        }
        TokenCommand::SecretSet { user, name } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the secret from standard input")?;
            let secret = line.trim_end_matches(['\r', '\n']);
            store
                .set_callback_secret(&user, &name, secret)
                .with_context(|| format!("setting callback secret `{name}` of `{user}`"))?;
            writeln!(out, "callback secret `{name}` of `{user}` set")?;
        }
        TokenCommand::SecretList { user } => {
            for name in store
                .callback_secret_names(&user)
                .with_context(|| format!("listing callback secrets of `{user}`"))?
            {
                writeln!(out, "{name}")?;
            }
        }
        TokenCommand::SecretRemove { user, name } => {
            store
                .remove_callback_secret(&user, &name)
                .with_context(|| format!("removing callback secret `{name}` of `{user}`"))?;
            writeln!(out, "callback secret `{name}` of `{user}` removed")?;
        }
    }
    Ok(())
}

fn device_type(
    store: &mut Store,
    out: &mut impl Write,
    cmd: DeviceTypeCommand,
) -> anyhow::Result<()> {
    match cmd {
        DeviceTypeCommand::Add(args) => {
            let denominator: HealthDenominator = args
                .health_denominator
                .parse()
                .context("reading --health-denominator")?;
            let new = NewDeviceType {
                description: args.description,
                health_frequency: args.health_frequency,
                health_denominator: denominator,
                disable_health_check: args.no_health_check,
                ..NewDeviceType::named(args.name.clone())
            };
            store
                .create_device_type(&new)
                .with_context(|| format!("adding device type `{}`", args.name))?;
            writeln!(out, "device type `{}` created", args.name)?;
        }
        DeviceTypeCommand::List => {
            let devices = store.devices(true).context("listing devices")?;
            let rows = store
                .device_types()
                .context("listing device types")?
                .into_iter()
                .map(|dt| {
                    let count = devices.iter().filter(|d| d.device_type == dt.name).count();
                    let health = if dt.disable_health_check {
                        "disabled".to_owned()
                    } else {
                        format!(
                            "every {} {}",
                            dt.health_frequency,
                            dt.health_denominator.as_str()
                        )
                    };
                    vec![dt.name, count.to_string(), health]
                })
                .collect();
            table(out, &["NAME", "DEVICES", "HEALTH CHECK"], rows)?;
        }
    }
    Ok(())
}

fn device(
    config: &Config,
    store: &mut Store,
    out: &mut impl Write,
    cmd: DeviceCommand,
) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::Add(args) => {
            let name = &args.name;
            // As LAVA: the device type must exist already.
            if store
                .device_type(&args.device_type)
                .context("reading device types")?
                .is_none()
            {
                bail!(
                    "adding device `{name}`: device type `{}` not found; create it first with \
                     `lavabox device-type add {}`",
                    args.device_type,
                    args.device_type
                );
            }
            let text = std::fs::read_to_string(&args.dictionary).with_context(|| {
                format!(
                    "adding device `{name}`: cannot read device dictionary {}",
                    args.dictionary.display()
                )
            })?;
            let template = crate::devicetype::check_dictionary(&config.template_dir_refs(), &text)
                .with_context(|| {
                    format!(
                        "adding device `{name}`: invalid device dictionary {}",
                        args.dictionary.display()
                    )
                })?;
            if let Ok(device) = crate::devicetype::Templates::new(config.template_dir_refs())
                .render(&text, &crate::devicetype::Context::new())
            {
                let warnings = crate::hw::check_power(&device.config, &config.hw).map_err(|e| {
                    anyhow::anyhow!(
                        "adding device `{name}`: invalid device dictionary {}: {e}",
                        args.dictionary.display()
                    )
                })?;
                for w in warnings {
                    eprintln!("warning: {w}");
                }
            }
            if template != args.device_type {
                tracing::warn!(
                    device = %name,
                    template,
                    device_type = %args.device_type,
                    "the dictionary extends a template named differently from the device type"
                );
            }
            let health = match &args.health {
                None => DeviceHealth::Unknown,
                Some(h) => h.parse().context("reading --health")?,
            };
            let new = NewDevice {
                description: args.description,
                dictionary: Some(text),
                worker_name: args.worker,
                health,
                ..NewDevice::new(name.clone(), args.device_type.clone())
            };
            store
                .create_device(&new)
                .with_context(|| format!("adding device `{name}`"))?;
            writeln!(out, "device `{name}` created")?;
        }
        DeviceCommand::List { all } => {
            let rows = store
                .devices(all)
                .context("listing devices")?
                .into_iter()
                .map(|d| {
                    vec![
                        d.hostname,
                        d.device_type,
                        d.state.to_string(),
                        d.health.to_string(),
                    ]
                })
                .collect();
            table(out, &["HOSTNAME", "TYPE", "STATE", "HEALTH"], rows)?;
        }
        DeviceCommand::SetHealth { name, health } => {
            let health: DeviceHealth = health.parse().context("reading the health")?;
            let changes = store
                .set_device_health(&name, health)
                .with_context(|| format!("setting the health of `{name}`"))?;
            for job in &changes.jobs {
                tracing::info!(job = %job.id, state = %job.state, "job canceled");
            }
            writeln!(out, "device `{name}` health {health}")?;
        }
    }
    Ok(())
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}
