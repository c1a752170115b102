//! Settings read once at start from the environment (and `.env`, which the real environment overrides).

use std::{env, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use thiserror::Error;

mod trusted_proxies;

pub use trusted_proxies::TrustedProxies;

use crate::storage::Backend;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{name} is not valid: {value:?} ({reason})")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "REDIS_URL is set (cluster mode) but DATABASE_URL is not PostgreSQL: nodes share their \
         decisions through one PostgreSQL database; set DATABASE_URL=postgres://… or unset REDIS_URL"
    )]
    ClusterNeedsPostgres,
    #[error(
        "REDIS_URL is set (cluster mode) but JWT_SECRET is not: every node must check tokens with \
         the same secret, so set JWT_SECRET on each"
    )]
    ClusterNeedsSecret,
    #[error("JWT_SECRET is {0} bytes long; it must be at least {MIN_SECRET_BYTES} bytes")]
    SecretTooShort(usize),
    #[error(
        "REDIS_URL is set (cluster mode) but CLUSTER_SECRET is not: nodes sign what they tell each \
         other through Redis with it, and act only on what is signed; set the same CLUSTER_SECRET \
         (at least {MIN_SECRET_BYTES} bytes) on every node"
    )]
    ClusterNeedsClusterSecret,
    #[error("CLUSTER_SECRET is {0} bytes long; it must be at least {MIN_SECRET_BYTES} bytes")]
    ClusterSecretTooShort(usize),
    #[error(
        "DATABASE_URL is PostgreSQL but JWT_SECRET is not set: several processes may share that \
         database, so they must share one secret; set JWT_SECRET (at least {MIN_SECRET_BYTES} bytes)"
    )]
    PostgresNeedsSecret,
    #[error(
        "WEBHOOK_URL is set but WEBHOOK_SECRET is not: receivers check each POST's signature with it; set WEBHOOK_SECRET (at least {MIN_SECRET_BYTES} bytes)"
    )]
    WebhookNeedsSecret,
    #[error("WEBHOOK_SECRET is {0} bytes long; it must be at least {MIN_SECRET_BYTES} bytes")]
    WebhookSecretTooShort(usize),
    #[error("WEBHOOK_URL is not valid: {0:?} (it must be an http:// or https:// URL)")]
    WebhookUrl(String),
    #[error("cannot keep the generated JWT secret at {path}: {source}")]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the generated JWT secret file {path} {problem}; fix or remove it, or set JWT_SECRET")]
    SecretFile { path: PathBuf, problem: String },
}

/// HS256 keys shorter than the hash output are weak (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// A secret that `Debug` never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Every setting of the service; `.env.example` documents each variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// `BIND_ADDR`: where HTTP and WebSocket are served.
    pub bind_addr: SocketAddr,
    /// `DATABASE_URL`: a SQLite file path (created on first run).
    pub database_url: String,
    /// `JWT_SECRET`: HS256 key; generated and kept beside the database when unset.
    pub jwt_secret: Secret,
    /// `ALLOWED_ORIGINS`: browser origins allowed to open a WebSocket; `None` allows any.
    pub allowed_origins: Option<Vec<String>>,
    /// `ASSIGNMENT_TTL_SECS`: response deadline of an offer when the request names none.
    pub assignment_ttl: Duration,
    /// `SUBSCRIPTION_TIMEOUT_SECS`: a subscription with no ping for this long is dropped.
    pub subscription_timeout: Duration,
    /// `EXPIRY_SWEEP_SECS` (1 to 60): how often every node expires what fell due and arms what
    /// falls due soon, from the database.
    pub expiry_sweep: Duration,
    /// `UNDELIVERED_AFTER_SECS` (default 5; 0 turns it off): a pending offer that no connection
    /// of its master acknowledged this long after it was made is told `undelivered`.
    pub undelivered_after: Option<Duration>,
    /// `CLEANUP_INTERVAL_SECS`: how often idle subscriptions are looked for.
    pub cleanup_interval: Duration,
    /// `ACTIVE_WINDOW_SECS`: a master pinged within this window counts as active.
    pub active_window: Duration,
    /// `AUTH_TIMEOUT_SECS`: an unauthenticated connection is closed after this long.
    pub auth_timeout: Duration,
    /// `TOKEN_EXPIRY_NOTICE_SECS`: how long before a connection's token runs out it is warned.
    pub token_expiry_notice: Duration,
    /// `MAX_MESSAGE_BYTES`: larger inbound frames close the connection with 1009.
    pub max_message_bytes: usize,
    /// `RATE_LIMIT_PER_SEC`: sustained inbound messages per connection.
    pub rate_limit_per_sec: u32,
    /// `RATE_LIMIT_BURST`: inbound messages a connection may send at once.
    pub rate_limit_burst: u32,
    /// `MAX_QUEUED_BYTES`: unsent bytes a connection may have before it is a slow consumer.
    pub max_queued_bytes: usize,
    /// `MAX_QUEUED_WRITES`: decisions waiting for the database's writer; more are refused with
    /// `unavailable`.
    pub max_queued_writes: usize,
    /// `MAX_CONNECTIONS`: WebSocket connections this process takes; more get 503.
    pub max_connections: usize,
    /// `MAX_HTTP_CONNECTIONS`: plain HTTP connections open at once (1,024, or less to stay within
    /// the open-files limit); past it a newcomer replaces the one idle longest.
    pub max_http_connections: usize,
    /// `MAX_CONNECTIONS_PER_USER`: a master's or client's connections; a newer one replaces the oldest.
    pub max_connections_per_user: usize,
    /// `MAX_UNAUTHENTICATED_PER_IP`: connections from one address not yet authenticated; more get 429.
    pub max_unauthenticated_per_ip: usize,
    /// `MAX_UNAUTHENTICATED`: connections not yet authenticated, in all (a tenth of
    /// `MAX_CONNECTIONS`, at least 1), so that they never take the places of valid tokens.
    pub max_unauthenticated: usize,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `DB_POOL_SIZE`: database connections kept open.
    pub db_pool_size: u32,
    /// `DB_TIMEOUT_SECS`: how long a request waits for a database connection.
    pub db_timeout: Duration,
    /// `JWT_AUDIENCE`: when set, tokens must carry this `aud`.
    pub jwt_audience: Option<String>,
    /// `JWT_ISSUER`: when set, tokens must carry this `iss`.
    pub jwt_issuer: Option<String>,
    /// `REDIS_URL`: when set, this process is one node of a cluster that shares events over Redis.
    pub redis_url: Option<String>,
    /// `NODE_ID`: this node's name in logs, stats and `/health`; unique per process by default.
    pub node_id: String,
    /// `METRICS_BIND_ADDR`: when set, `/metrics` is served there without a token (and not on
    /// `BIND_ADDR`), for a scraper on a private network.
    pub metrics_bind_addr: Option<SocketAddr>,
    /// `WEBHOOK_URL` and `WEBHOOK_SECRET`: when set, assignment and dispatch events are POSTed there.
    pub webhook: Option<WebhookConfig>,
    /// `CLUSTER_SECRET`, required with `REDIS_URL`: signs what nodes tell each other.
    pub cluster_secret: Option<Secret>,
}

/// Where webhooks go and how they are signed.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    /// `WEBHOOK_MAX_AGE_SECS`: an event not delivered by then is given up.
    pub max_age: Duration,
    /// `WEBHOOK_RETENTION_SECS`: delivered events are deleted this long after.
    pub retention: Duration,
}

impl WebhookConfig {
    fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        max_age: Duration,
        retention: Duration,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(url) = get("WEBHOOK_URL").map(|u| u.trim().to_string()) else {
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::WebhookUrl(url));
        }
        let secret = get("WEBHOOK_SECRET").ok_or(ConfigError::WebhookNeedsSecret)?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::WebhookSecretTooShort(secret.len()));
        }
        Ok(Some(WebhookConfig {
            url,
            secret: Secret(secret),
            max_age,
            retention,
        }))
    }
}

impl Config {
    /// Reads `.env` (if present) and then the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| env::var(name).ok())
    }

    /// Builds the settings from any variable source, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            parse(name, get(name), default).map(Duration::from_secs)
        };
        let secs_between = |name: &'static str,
                            default: u64,
                            range: std::ops::RangeInclusive<u64>|
         -> Result<Duration, ConfigError> {
            let value: u64 = parse(name, get(name), default)?;
            if range.contains(&value) {
                Ok(Duration::from_secs(value))
            } else {
                Err(ConfigError::Invalid {
                    name,
                    value: value.to_string(),
                    reason: format!("from {} to {} seconds", range.start(), range.end()),
                })
            }
        };
        let database_url = get("DATABASE_URL").unwrap_or_else(|| "data/dispatcher.db".into());
        let redis_url = get("REDIS_URL");
        if redis_url.is_some() {
            if Backend::of(&database_url) != Backend::Postgres {
                return Err(ConfigError::ClusterNeedsPostgres);
            }
            if get("JWT_SECRET").is_none() {
                return Err(ConfigError::ClusterNeedsSecret);
            }
        }
        let cluster_secret = match (&redis_url, get("CLUSTER_SECRET")) {
            (None, _) => None,
            (Some(_), None) => return Err(ConfigError::ClusterNeedsClusterSecret),
            (Some(_), Some(secret)) if secret.len() < MIN_SECRET_BYTES => {
                return Err(ConfigError::ClusterSecretTooShort(secret.len()));
            }
            (Some(_), Some(secret)) => Some(Secret(secret)),
        };
        let jwt_secret = match get("JWT_SECRET") {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => {
                return Err(ConfigError::SecretTooShort(secret.len()));
            }
            Some(secret) => secret,
            None if Backend::of(&database_url) == Backend::Postgres => {
                return Err(ConfigError::PostgresNeedsSecret);
            }
            None => generated_secret(&database_url)?,
        };
        let allowed_origins = get("ALLOWED_ORIGINS").map(|list| {
            list.split(',')
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect()
        });
        let max_connections = parse(
            "MAX_CONNECTIONS",
            get("MAX_CONNECTIONS"),
            default_max_connections(),
        )?;
        Ok(Config {
            bind_addr: parse(
                "BIND_ADDR",
                get("BIND_ADDR"),
                "127.0.0.1:8080".parse().unwrap(),
            )?,
            database_url,
            jwt_secret: Secret(jwt_secret),
            allowed_origins,
            assignment_ttl: secs("ASSIGNMENT_TTL_SECS", 300)?,
            subscription_timeout: secs("SUBSCRIPTION_TIMEOUT_SECS", 300)?,
            expiry_sweep: secs_between("EXPIRY_SWEEP_SECS", 5, 1..=60)?,
            undelivered_after: Some(secs("UNDELIVERED_AFTER_SECS", 5)?)
                .filter(|after| !after.is_zero()),
            cleanup_interval: secs("CLEANUP_INTERVAL_SECS", 60)?.max(Duration::from_secs(1)),
            active_window: secs("ACTIVE_WINDOW_SECS", 90)?,
            auth_timeout: secs("AUTH_TIMEOUT_SECS", 10)?,
            token_expiry_notice: secs("TOKEN_EXPIRY_NOTICE_SECS", 60)?,
            max_message_bytes: parse("MAX_MESSAGE_BYTES", get("MAX_MESSAGE_BYTES"), 65536)?,
            rate_limit_per_sec: parse("RATE_LIMIT_PER_SEC", get("RATE_LIMIT_PER_SEC"), 20)?,
            rate_limit_burst: parse("RATE_LIMIT_BURST", get("RATE_LIMIT_BURST"), 40)?,
            max_queued_bytes: parse("MAX_QUEUED_BYTES", get("MAX_QUEUED_BYTES"), 1 << 20)?.max(1),
            max_queued_writes: parse("MAX_QUEUED_WRITES", get("MAX_QUEUED_WRITES"), 4_096)?.max(1),
            max_connections,
            max_http_connections: parse(
                "MAX_HTTP_CONNECTIONS",
                get("MAX_HTTP_CONNECTIONS"),
                default_max_http_connections(max_connections),
            )?
            .max(1),
            max_unauthenticated: parse(
                "MAX_UNAUTHENTICATED",
                get("MAX_UNAUTHENTICATED"),
                (max_connections / 10).max(1),
            )?,
            max_connections_per_user: parse(
                "MAX_CONNECTIONS_PER_USER",
                get("MAX_CONNECTIONS_PER_USER"),
                10,
            )?
            .max(1),
            max_unauthenticated_per_ip: parse(
                "MAX_UNAUTHENTICATED_PER_IP",
                get("MAX_UNAUTHENTICATED_PER_IP"),
                100,
            )?,
            trusted_proxies: parse(
                "TRUSTED_PROXIES",
                get("TRUSTED_PROXIES"),
                TrustedProxies::default(),
            )?,
            db_pool_size: parse("DB_POOL_SIZE", get("DB_POOL_SIZE"), 8)?.max(1),
            db_timeout: secs("DB_TIMEOUT_SECS", 5)?,
            jwt_audience: get("JWT_AUDIENCE").map(|a| a.trim().to_string()),
            jwt_issuer: get("JWT_ISSUER").map(|i| i.trim().to_string()),
            redis_url,
            node_id: get("NODE_ID")
                .map(|id| id.trim().to_string())
                .unwrap_or_else(default_node_id),
            metrics_bind_addr: match get("METRICS_BIND_ADDR") {
                None => None,
                // The default is never used: the value is there.
                raw => Some(parse("METRICS_BIND_ADDR", raw, ([0, 0, 0, 0], 0).into())?),
            },
            webhook: WebhookConfig::from_lookup(
                get,
                secs("WEBHOOK_MAX_AGE_SECS", 86_400)?,
                secs("WEBHOOK_RETENTION_SECS", 7 * 86_400)?,
            )?,
            cluster_secret,
        })
    }
}

/// Open files kept for plain HTTP connections (`MAX_HTTP_CONNECTIONS`) and the reserve, out of
/// the process's limit.
const FILES_KEPT_FOR_OTHER_USES: u64 = 1024 + FILES_KEPT_IN_RESERVE;

/// The open-files limit less what HTTP and the database need. Under a small limit (1,024 is a
/// common default) that would leave nothing, so then half of it is used.
fn default_max_connections() -> usize {
    let limit = open_files_limit();
    let rest = limit
        .saturating_sub(FILES_KEPT_FOR_OTHER_USES)
        .max(limit / 2);
    usize::try_from(rest).unwrap_or(usize::MAX)
}

/// Open files kept for the database, Redis, logs and a newcomer, beyond both connection caps.
const FILES_KEPT_IN_RESERVE: u64 = 64;

/// 1,024, or what the open-files limit leaves beside the WebSockets and the reserve.
fn default_max_http_connections(max_connections: usize) -> usize {
    let left = open_files_limit()
        .saturating_sub(max_connections as u64)
        .saturating_sub(FILES_KEPT_IN_RESERVE);
    usize::try_from(left.clamp(16, 1024)).unwrap_or(1024)
}

#[cfg(unix)]
fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return FILES_KEPT_FOR_OTHER_USES;
    }
    limit.rlim_cur
}

#[cfg(not(unix))]
fn open_files_limit() -> u64 {
    8192
}

/// Raises the soft open-files limit to the hard one, as servers that hold many sockets do.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

/// The host name and a random suffix: unique per process, and readable in logs.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn parse<T: FromStr>(
    name: &'static str,
    value: Option<String>,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                value: raw,
                reason: e.to_string(),
            }),
    }
}

/// Where the generated secret lives: beside a SQLite file, else in `./data`.
fn secret_path(database_url: &str) -> PathBuf {
    let is_file_path = !database_url.contains("://") && database_url != ":memory:";
    let dir = if is_file_path {
        PathBuf::from(database_url)
            .parent()
            .map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    } else {
        PathBuf::from("data")
    };
    dir.join("jwt_secret")
}

/// The secret kept beside the database: read if it exists, else created exclusively, so that two
/// starts cannot race to different secrets. A file that is there but unusable stops the start
/// and is never overwritten.
fn generated_secret(database_url: &str) -> Result<String, ConfigError> {
    let path = secret_path(database_url);
    let err = |source| ConfigError::Secret {
        path: path.clone(),
        source,
    };
    if let Some(existing) = read_secret_file(&path)? {
        return Ok(existing);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let secret: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    match create_private(&path, &secret) {
        Ok(()) => {
            log::warn!(
                "JWT_SECRET is not set; generated one and kept it in {} (mode 0600)",
                path.display()
            );
            Ok(secret)
        }
        // Another start created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret_file(&path)?
            .ok_or_else(|| ConfigError::SecretFile {
                path: path.clone(),
                problem: "is empty".into(),
            }),
        Err(e) => Err(err(e)),
    }
}

/// The secret in `path`; `None` when there is no such file.
fn read_secret_file(path: &std::path::Path) -> Result<Option<String>, ConfigError> {
    let problem = |problem: String| ConfigError::SecretFile {
        path: path.to_path_buf(),
        problem,
    };
    // A start that has just created the file may not have written it yet.
    for _ in 0..20 {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(problem(format!("cannot be read ({e})"))),
        };
        let text = String::from_utf8(bytes).map_err(|_| problem("is not UTF-8 text".into()))?;
        let secret = text.trim();
        if secret.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(25));
            continue;
        }
        warn_if_exposed(path);
        log::warn!(
            "JWT_SECRET is not set; using the generated secret in {}",
            path.display()
        );
        return Ok(Some(secret.to_string()));
    }
    Err(problem("is empty".into()))
}

fn warn_if_exposed(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            log::warn!(
                "the JWT secret file {} can be read by other users (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
}

fn create_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let secret = "a-secret-that-is-long-enough-for-hs256!";
        let config = Config::from_lookup(|name| match name {
            "JWT_SECRET" => Some(secret.into()),
            "DATABASE_URL" => Some(":memory:".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.jwt_secret.expose(), secret);
        assert!(!format!("{config:?}").contains(secret));
    }

    #[test]
    fn expiry_sweep_secs_is_from_1_to_60_seconds() {
        let with = |value: &str| {
            let value = value.to_string();
            Config::from_lookup(move |name| match name {
                "JWT_SECRET" => Some("a-secret-that-is-long-enough-for-hs256!".into()),
                "DATABASE_URL" => Some(":memory:".into()),
                "EXPIRY_SWEEP_SECS" => Some(value.clone()),
                _ => None,
            })
        };
        assert_eq!(with("1").unwrap().expiry_sweep, Duration::from_secs(1));
        assert_eq!(with("60").unwrap().expiry_sweep, Duration::from_secs(60));
        for bad in ["0", "61", "soon"] {
            let refused = with(bad).unwrap_err().to_string();
            assert!(refused.contains("EXPIRY_SWEEP_SECS"), "{refused}");
        }
    }

    #[test]
    fn cluster_mode_needs_a_cluster_secret_of_32_bytes() {
        let with = |secret: Option<&str>| {
            let secret = secret.map(str::to_string);
            Config::from_lookup(move |name| match name {
                "JWT_SECRET" => Some("a-secret-that-is-long-enough-for-hs256!".into()),
                "DATABASE_URL" => Some("postgres://u@127.0.0.1:1/d".into()),
                "REDIS_URL" => Some("redis://127.0.0.1:1".into()),
                "CLUSTER_SECRET" => secret.clone(),
                _ => None,
            })
        };
        for refused in [with(None), with(Some("short"))] {
            let said = refused.unwrap_err().to_string();
            assert!(said.contains("CLUSTER_SECRET"), "{said}");
        }
        let config = with(Some("a-cluster-secret-that-is-long-enough")).unwrap();
        assert!(config.cluster_secret.is_some());
        assert!(!format!("{config:?}").contains("a-cluster-secret"));
    }
}
