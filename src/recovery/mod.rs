//! Recovery: whatever a node missed, it reads back from the database. At start, the deadlines of
//! pending offers ([`start_up`]); every few seconds, the deadlines that passed or fall due soon
//! ([`sweep_deadlines`]) and the dispatch steps another node left ([`sweep_dispatches`]); every
//! second, in a cluster, the offers and decisions whose events may have been lost between nodes
//! ([`catch_up`]); and after a gap in what the other nodes told it ([`recover_gaps`]).

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::Addr;
use thiserror::Error;
use tokio::sync::Notify;

use crate::{
    domain::{MasterId, Offer},
    expiry::{Expiry, Recover},
    router::{
        Router,
        messages::{CatchUp, Resync, ShedSubscribed, SubscribedMasters, TellMissed},
    },
    service::{Service, error::AppError},
    storage::{self, Backend, DbError, DbPool},
};

/// A decided offer's dispatch step that has not been taken this long after is taken by the sweep.
const STEP_OVERDUE_AFTER: Duration = Duration::from_secs(2);

/// Why the database could not be made ready at start.
#[derive(Debug, Error)]
pub enum PrepareError {
    #[error(transparent)]
    Migrate(#[from] DbError),
    #[error("recovering open offers: {0}")]
    Recover(AppError),
}

impl PrepareError {
    fn is_unavailable(&self) -> bool {
        match self {
            PrepareError::Migrate(e) => e.is_unavailable(),
            PrepareError::Recover(e) => matches!(e, AppError::Unavailable),
        }
    }
}

/// Migrates and recovers the deadlines of pending offers. A PostgreSQL that is down at start
/// does not stop the node: it serves 503 and keeps trying in the background.
pub async fn start_up(
    database_url: &str,
    pool: &DbPool,
    expiry: &Addr<Expiry>,
) -> Result<(), PrepareError> {
    match prepare_database(database_url, pool, expiry).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_unavailable() && Backend::of(database_url) == Backend::Postgres => {
            log::warn!("database unavailable at start ({e}); serving 503 and retrying");
            actix_web::rt::spawn(retry_prepare(
                database_url.to_string(),
                pool.clone(),
                expiry.clone(),
            ));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Every `every`, expires the pending offers whose deadline has passed and arms those due before
/// the next sweep, whatever this node heard of them: an offer whose `offered` event never left
/// the node that made it (which died, or lost Redis) still expires within one sweep of its
/// deadline, and its cascade moves on.
pub async fn sweep_deadlines(expiry: Addr<Expiry>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A little more than one period ahead, so that nothing due falls between two sweeps.
        let due_within = Some(every + every / 2);
        match expiry.send(Recover { due_within }).await {
            Ok(Ok(_)) | Ok(Err(AppError::Unavailable)) => {}
            Ok(Err(e)) => log::warn!("expiry sweep failed: {e}"),
            Err(_) => return,
        }
    }
}

/// Recovers after each gap the cluster link reports, one recovery at a time; gaps reported
/// during one are caught by the next.
pub async fn recover_gaps(
    gaps: Arc<Notify>,
    expiry: Addr<Expiry>,
    router: Addr<Router>,
    service: Service,
) {
    /// Between two tries of a recovery that failed.
    const RETRY: Duration = Duration::from_millis(500);
    loop {
        gaps.notified().await;
        let mut shed = false;
        while let Err(e) = recover_gap(&expiry, &router, &service).await {
            // Redis lost events and the database cannot give them back: offers made through
            // other nodes would not reach this node's masters, so they go to another node,
            // whose subscription replays them. Connections made meanwhile go too.
            let count = router.send(ShedSubscribed).await.unwrap_or(0);
            if !shed {
                log::warn!(
                    "gap recovery failed ({e}); closed {count} subscribed connections with \
                     1013 so they reconnect to a node that can read the database"
                );
            }
            shed = true;
            tokio::time::sleep(RETRY).await;
        }
        if shed {
            log::info!("gap recovered after the database came back");
        }
    }
}

/// After (re)subscribing: arm every pending deadline again, send subscribed masters the open
/// offers they missed (the router skips offers a connection has already been sent), and tell
/// them of offers they hold that were expired or cancelled meanwhile.
async fn recover_gap(
    expiry: &Addr<Expiry>,
    router: &Addr<Router>,
    service: &Service,
) -> Result<(), AppError> {
    match expiry.send(Recover { due_within: None }).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => log::error!("gap recovery: expiry actor unreachable: {e}"),
    }
    let Ok(subscribed) = router.send(SubscribedMasters).await else {
        return Ok(());
    };
    if subscribed.is_empty() {
        return Ok(());
    }
    let mut masters: Vec<MasterId> = subscribed.iter().map(|&(_, m)| m).collect();
    masters.sort_unstable();
    masters.dedup();
    let offers = service.pending_offers_of(masters).await?;
    let mut by_master: HashMap<MasterId, Vec<Offer>> = HashMap::new();
    for offer in offers {
        by_master.entry(offer.master_id).or_default().push(offer);
    }
    for (id, master) in subscribed {
        let open = by_master.get(&master).cloned().unwrap_or_default();
        let Ok(stale) = router.send(Resync { id, open }).await else {
            return Ok(());
        };
        if stale.is_empty() {
            continue;
        }
        let decisions = service.decisions_among(stale).await?;
        if !decisions.is_empty() {
            let _ = router.send(TellMissed { id, decisions }).await;
        }
    }
    Ok(())
}

/// How often a node of a cluster reads back what changed lately.
const CATCH_UP_EVERY: Duration = Duration::from_secs(1);
/// Each read reaches this far before the previous one began: a change carries the time its
/// transaction began, and a transaction may wait seconds (for locks a stopped node holds, or on a
/// slow link) before it commits and shows.
const CATCH_UP_OVERLAP: Duration = Duration::from_secs(10);

/// Every second, reads back the offers made and decided since the last read (with an
/// overlap) and has the router send those its connections missed. Events between nodes can be
/// lost: the node that committed may die before it publishes, or be cut from Redis, and then
/// no gap is seen anywhere; the database still has the truth. The router sends nothing twice.
///
/// A node that can read neither (`link_up` false, the database unavailable) sends its
/// subscribed connections to other nodes, with 1013.
pub async fn catch_up(router: Addr<Router>, service: Service, link_up: impl Fn() -> bool) {
    let overlap = CATCH_UP_OVERLAP.as_millis() as i64;
    // By the deciding clock as read with each query: this node's own may be off.
    let mut since = None;
    let mut tick = tokio::time::interval(CATCH_UP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match service.changed_since(since, CATCH_UP_OVERLAP).await {
            Ok((read_at, offers, decisions)) => {
                let changed = !offers.is_empty() || !decisions.is_empty();
                if changed && router.send(CatchUp { offers, decisions }).await.is_err() {
                    return;
                }
                since = Some(read_at.saturating_sub(overlap));
            }
            Err(AppError::Unavailable) if !link_up() => {
                let count = router.send(ShedSubscribed).await.unwrap_or(0);
                if count > 0 {
                    log::warn!(
                        "cut off from Redis and the database: closed {count} subscribed \
                         connections with 1013 so they reconnect to another node"
                    );
                }
            }
            Err(AppError::Unavailable) => {}
            Err(e) => log::warn!("catch-up could not read what changed: {e}"),
        }
    }
}

/// Migrates, then has the expiry actor expire what fell due while the service was down and arm
/// the rest.
async fn prepare_database(
    database_url: &str,
    pool: &DbPool,
    expiry: &Addr<Expiry>,
) -> Result<(), PrepareError> {
    let (url, migrate_pool) = (database_url.to_string(), pool.clone());
    actix_web::web::block(move || storage::migrate(&url, &migrate_pool))
        .await
        .map_err(|_| DbError::Cancelled)??;
    expiry
        .send(Recover { due_within: None })
        .await
        .map_err(|_| DbError::Cancelled)?
        .map_err(PrepareError::Recover)
        .map(|_| ())
}

/// Takes the dispatch steps that were decided but not taken: at start, for what a stop left,
/// then for what another node (or this one) left when it died or lost the database.
pub async fn sweep_dispatches(service: Service) {
    loop {
        match service.step_overdue(STEP_OVERDUE_AFTER).await {
            Ok(0) => {}
            Ok(taken) => log::info!("dispatch sweep: took {taken} overdue steps"),
            Err(AppError::Unavailable) => {}
            Err(e) => log::warn!("dispatch sweep failed: {e}"),
        }
        tokio::time::sleep(STEP_OVERDUE_AFTER).await;
    }
}

/// Keeps trying to reach a database that was down at start, backing off up to `MAX_BACKOFF`.
async fn retry_prepare(database_url: String, pool: DbPool, expiry: Addr<Expiry>) {
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    let mut backoff = Duration::from_millis(500);
    loop {
        tokio::time::sleep(backoff).await;
        match prepare_database(&database_url, &pool, &expiry).await {
            Ok(()) => {
                log::info!("database reachable again");
                return;
            }
            Err(e) => {
                backoff = (backoff * 2).min(MAX_BACKOFF);
                log::warn!("database still unavailable ({e}); next try in {backoff:?}");
            }
        }
    }
}
