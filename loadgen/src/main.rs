//! `loadgen`: measures how many masters one dispatcher node holds, how fast an offer reaches the
//! phone, and what a reconnect storm does. See BENCHMARKS.md.

mod cascade;
mod chaos;
mod cluster;
mod fleet;
mod floor;
mod holder;
mod push;
mod report;
mod scenarios;
mod soak;
mod target;

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use report::Report;
use scenarios::Opts;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator and benchmarks for the dispatcher"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Idle,
    E2e,
    Routing,
    Storm,
    Expiry,
    Slow,
    /// One push to 1,000 users, then to 10,000 in 10 requests.
    Push,
    /// How soon a dispatch offers to the next candidate after a reject or an expiry.
    Cascade,
    /// `--nodes` nodes on PostgreSQL and Redis; not part of `all`, since it needs both.
    Cluster,
    /// Masters held for a long time while some reconnect, offers accepted and expiring; not
    /// part of `all`, since it runs for `--soak-secs`.
    Soak,
    /// Three nodes under faults (kill -9, SIGSTOP, Redis killed, links cut and slowed, a
    /// clock off), with a checker; not part of `all`: it runs for `--chaos-secs` and needs
    /// PostgreSQL, redis-server and libfaketime.
    Chaos,
    /// Every scenario but `cluster`, `soak` and `chaos`.
    All,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios and print the results table.
    Run(Box<RunArgs>),
    /// Run a dispatcher (the service's own `Application`) from the environment; used by `run`.
    Serve,
    /// Run the floor server; used by `run`.
    Floor {
        #[arg(long)]
        port: u16,
    },
    /// Hold subscribed master connections and report latencies of timestamped pushes when asked
    /// on stdin; used by `run` to keep clients and server sockets in separate processes.
    Hold {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        connections: usize,
        #[arg(long, default_value_t = 0)]
        offset: i64,
        #[arg(long)]
        jwt_secret: String,
        #[arg(long, default_value_t = 1)]
        source_ips: u8,
    },
}

#[derive(Args)]
struct RunArgs {
    #[arg(value_enum, required = true)]
    scenarios: Vec<Scenario>,
    /// Master connections held: 10,000 unless told, and in the cluster scenario 1,500 per node.
    #[arg(long)]
    connections: Option<usize>,
    /// Nodes in the cluster scenario.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    nodes: u64,
    /// Offers per second in the end-to-end and slow-consumer scenarios.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds the fixed-rate load lasts.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds idle CPU is measured over.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Pending assignments seeded for the expiry scenario.
    #[arg(long, default_value_t = 100_000)]
    pending: usize,
    /// Deadlines spread from this many seconds after seeding...
    #[arg(long, default_value_t = 10)]
    expiry_min: u64,
    /// ...to this many.
    #[arg(long, default_value_t = 60)]
    expiry_max: u64,
    /// Offer rates tried after the fixed-rate load to find the highest sustained, lowest first.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,3000,4000,6000,8000"
    )]
    e2e_steps: Vec<u64>,
    /// Seconds each of those steps lasts.
    #[arg(long, default_value_t = 10)]
    e2e_step_secs: u64,
    /// Offers per request in the end-to-end scenario: above 1 they go through
    /// `POST /api/v1/assignments/batch` (at most 100), at the same offers per second.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    batch: u64,
    /// Delivery rates tried in the routing scenario, lowest first.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50000,100000,200000,300000,400000,600000"
    )]
    routing_rates: Vec<u64>,
    /// Spread client sockets over 127.0.0.1 .. 127.0.0.N (more ephemeral ports per server).
    #[arg(long, default_value_t = 1)]
    source_ips: u8,
    /// Connections set up at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// A dispatcher already running at this address, instead of one started here.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Its process id, to read its memory and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The JWT secret of that dispatcher (tokens are minted here).
    #[arg(long, default_value = "loadgen-secret-0123456789abcdef0123")]
    jwt_secret: String,
    /// Offer rates tried in the cluster scenario to find the highest sustained, lowest first.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "250,500,750,1000,1500,2000"
    )]
    cluster_steps: Vec<u64>,
    /// PostgreSQL for the cluster scenario, which creates (and drops) a database of its own there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Masters in the soak.
    #[arg(long, default_value_t = 5_000)]
    soak_masters: usize,
    /// How long the soak runs.
    #[arg(long, default_value_t = 1_800)]
    soak_secs: u64,
    /// Offers per second in the soak.
    #[arg(long, default_value_t = 50)]
    soak_rate: u64,
    /// Response deadline of the soak's offers; those not accepted expire after it.
    #[arg(long, default_value_t = 10)]
    soak_ttl: u64,
    /// How long the chaos run injects faults.
    #[arg(long, default_value_t = 600)]
    chaos_secs: u64,
    /// Masters in the chaos run.
    #[arg(long, default_value_t = 1_500)]
    chaos_masters: usize,
    /// Offers per second in the chaos run.
    #[arg(long, default_value_t = 50)]
    chaos_rate: u64,
    /// Where the results go as JSON.
    #[arg(long, default_value = "bench-results.json")]
    json: String,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve => serve(),
        Command::Floor { port } => {
            floor::serve_process(port);
            ExitCode::SUCCESS
        }
        Command::Hold {
            addr,
            connections,
            offset,
            jwt_secret,
            source_ips,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(holder::hold(
                addr,
                connections,
                offset,
                &jwt_secret,
                source_ips,
            ));
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            let RunArgs {
                scenarios,
                connections,
                nodes,
                rate,
                duration,
                idle_secs,
                pending,
                expiry_min,
                expiry_max,
                e2e_steps,
                e2e_step_secs,
                batch,
                routing_rates,
                source_ips,
                concurrency,
                addr,
                server_pid,
                jwt_secret,
                postgres_url,
                cluster_steps,
                soak_masters,
                soak_secs,
                soak_rate,
                soak_ttl,
                chaos_secs,
                chaos_masters,
                chaos_rate,
                json,
            } = *args;
            let chaos = chaos::ChaosOpts {
                duration: Duration::from_secs(chaos_secs),
                masters: chaos_masters.max(1),
                rate: chaos_rate.max(1),
            };
            let soak = soak::SoakOpts {
                masters: soak_masters,
                duration: Duration::from_secs(soak_secs),
                rate: soak_rate.max(1),
                ttl_secs: soak_ttl.max(1),
            };
            let nodes = nodes as usize;
            let opts = Opts {
                connections: connections.unwrap_or(10_000),
                nodes,
                cluster_masters: connections.unwrap_or(1_500 * nodes),
                rate,
                duration: Duration::from_secs(duration),
                idle_window: Duration::from_secs(idle_secs),
                pending,
                expiry_spread: (expiry_min, expiry_max.max(expiry_min + 1)),
                e2e_steps,
                e2e_step: Duration::from_secs(e2e_step_secs),
                batch: batch as usize,
                routing_rates,
                source_ips,
                jwt_secret,
                addr,
                server_pid,
                concurrency,
                postgres_url,
                cluster_steps,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            let report = runtime.block_on(run(&scenarios, &opts, &soak, &chaos));
            report.print();
            std::fs::write(&json, serde_json::to_string_pretty(&report).unwrap())
                .expect("write JSON");
            println!("\nresults written to {json}");
            // The chaos run is a verdict: any violation fails it.
            let violated = report
                .rows
                .iter()
                .any(|r| r.scenario == "chaos" && r.met == Some(false));
            if violated {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

async fn run(
    scenarios: &[Scenario],
    opts: &Opts,
    soak: &soak::SoakOpts,
    chaos: &chaos::ChaosOpts,
) -> Report {
    let all = scenarios.contains(&Scenario::All);
    let wants = |s: Scenario| all || scenarios.contains(&s);
    let mut report = Report::default();
    if wants(Scenario::Idle) {
        scenarios::idle(opts, &mut report).await;
    }
    let mut e2e_p99 = None;
    if wants(Scenario::E2e) {
        e2e_p99 = Some(scenarios::end_to_end(opts, &mut report, 0.0).await);
    }
    if wants(Scenario::Routing) {
        scenarios::routing(opts, &mut report).await;
    }
    if wants(Scenario::Storm) {
        scenarios::reconnect_storm(opts, &mut report).await;
    }
    if wants(Scenario::Expiry) {
        scenarios::expiry(opts, &mut report).await;
    }
    if wants(Scenario::Slow) {
        let baseline = match e2e_p99 {
            Some(p99) => p99,
            None => scenarios::end_to_end(opts, &mut Report::default(), 0.0).await,
        };
        scenarios::slow_consumers(opts, &mut report, baseline).await;
    }
    if wants(Scenario::Push) {
        push::push(opts, &mut report).await;
    }
    if wants(Scenario::Cascade) {
        cascade::cascade(opts, &mut report).await;
    }
    if scenarios.contains(&Scenario::Cluster) {
        cluster::cluster(opts, &mut report).await;
    }
    if scenarios.contains(&Scenario::Soak) {
        soak::soak(opts, soak, &mut report).await;
    }
    if scenarios.contains(&Scenario::Chaos) {
        chaos::chaos(opts, chaos, &mut report).await;
    }
    report
}

fn serve() -> ExitCode {
    let config = match dispatcher::config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let result = actix_web::rt::System::new().block_on(async {
        let app = dispatcher::startup::Application::build(config).await?;
        app.run_until_stopped().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
