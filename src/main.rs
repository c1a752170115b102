use std::process::ExitCode;

use clap::{Parser, Subcommand};
mod doctor;

use dispatcher::{config::Config, domain::Role, startup::Application, wire::auth::JwtKeys};

#[derive(Parser)]
#[command(
    name = "dispatcher",
    version,
    about = "Real-time assignment dispatcher"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open a WebSocket as an app does, step by step, and say what fails and how to fix it.
    Doctor {
        /// The WebSocket URL, such as wss://host/api/v1/ws
        url: String,
        /// A token to sign in with (a master's also checks the subscription)
        #[arg(long)]
        token: String,
        /// The Origin header to send; by default https://<host>, as a browser would
        #[arg(long)]
        origin: Option<String>,
        /// Seconds to hold the connection idle, to catch proxies' idle timeouts
        #[arg(long, default_value_t = 75)]
        hold: u64,
        /// Print the steps as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print a signed JWT for trying the service out.
    Token {
        /// master, client, admin or service
        #[arg(long)]
        role: Role,
        /// User id (the `sub` claim)
        #[arg(long)]
        sub: i64,
        /// Required for --role master
        #[arg(long)]
        master_id: Option<i64>,
        /// Lifetime in seconds
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

/// This node's name, put on every log line once the configuration has been read, so that the
/// logs of several nodes can be told apart when they are gathered in one place.
static NODE_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Human-readable lines, or with `LOG_FORMAT=json` one JSON object per line: time, level,
/// target, message, node, and the fields a line carries (`conn_id`, `user_id`, `request_id`, …).
fn init_logging() {
    use std::io::Write;
    let _ = dotenvy::dotenv();
    let format = std::env::var("LOG_FORMAT").unwrap_or_default();
    let json = match format.trim() {
        "json" => true,
        "" | "text" => false,
        other => {
            eprintln!("LOG_FORMAT is not valid: {other:?} (text or json)");
            std::process::exit(2);
        }
    };
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if json {
        builder.format(|buf, record| {
            let mut line = serde_json::Map::new();
            line.insert(
                "time".into(),
                chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    .into(),
            );
            line.insert("level".into(), record.level().as_str().into());
            line.insert("target".into(), record.target().into());
            line.insert("message".into(), record.args().to_string().into());
            if let Some(node) = NODE_ID.get() {
                line.insert("node".into(), node.as_str().into());
            }
            let _ = record.key_values().visit(&mut Fields(&mut line));
            writeln!(buf, "{}", serde_json::Value::Object(line))
        });
    } else {
        builder.format(|buf, record| {
            let node = NODE_ID.get().map(String::as_str).unwrap_or("-");
            writeln!(
                buf,
                "[{} {:<5} {} node={node}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    builder.init();
}

/// A log line's fields, as JSON: numbers stay numbers.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(x) = value.to_f64() {
            x.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else if value.to_string() == "None" {
            serde_json::Value::Null
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_string(), json);
        Ok(())
    }
}

/// A panic in database work is caught and answered with 500. Anywhere else (the router, the
/// expiry actor, a worker) it would leave a half-dead process that still answers `/health`, so
/// the process exits instead, and the process manager's restart runs start-up recovery.
fn exit_on_panic_outside_database_work() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        if !dispatcher::storage::in_database_task() {
            log::error!("panic outside database work: exiting so that a restart recovers; {info}");
            std::process::exit(70);
        }
    }));
}

fn main() -> ExitCode {
    init_logging();
    exit_on_panic_outside_database_work();
    let cli = Cli::parse();
    if let Some(Command::Doctor {
        url,
        token,
        origin,
        hold,
        json,
    }) = &cli.command
    {
        let options = doctor::Options {
            url: url.clone(),
            token: token.clone(),
            origin: origin.clone(),
            hold: std::time::Duration::from_secs(*hold),
        };
        let steps = doctor::run(&options);
        return if doctor::report(&steps, *json) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    dispatcher::config::raise_open_files_limit();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            // 2: the configuration is wrong, as opposed to a failure while running.
            return ExitCode::from(2);
        }
    };
    let _ = NODE_ID.set(config.node_id.clone());
    match cli.command {
        Some(Command::Token {
            role,
            sub,
            master_id,
            ttl,
        }) => {
            if role == Role::Master && master_id.is_none() {
                eprintln!("--master-id is required for --role master");
                return ExitCode::FAILURE;
            }
            println!(
                "{}",
                JwtKeys::from_config(&config).mint(sub, role, master_id, ttl)
            );
            ExitCode::SUCCESS
        }
        Some(Command::Doctor { .. }) => unreachable!("the doctor ran above"),
        None => serve(config),
    }
}

fn serve(config: Config) -> ExitCode {
    let result = actix_web::rt::System::new().block_on(async {
        let app = Application::build(config).await?;
        app.run_until_stopped().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
