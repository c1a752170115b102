//! How offers fared over a recent window: counts by what happened, and how long the master's app
//! took to acknowledge them and the master to accept them.

use serde::Serialize;

use crate::{domain::AssignmentStatus, storage::models::Assignment};

/// The window the admin stats cover.
pub const WINDOW_SECS: i64 = 15 * 60;

#[derive(Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferFigures {
    pub window_secs: i64,
    /// Offers ever made (the highest offer id): its rise per second is the offer rate.
    pub created_total: i64,
    pub created: usize,
    pub delivered: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub expired: usize,
    pub cancelled: usize,
    /// Creation to the first acknowledgement.
    pub time_to_deliver_ms: Percentiles,
    /// Creation to the accept.
    pub time_to_accept_ms: Percentiles,
}

/// Nearest-rank percentiles; null when there is nothing to rank.
#[derive(Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub p99: Option<i64>,
}

impl Percentiles {
    fn of(mut values: Vec<i64>) -> Self {
        values.sort_unstable();
        let rank = |q: f64| {
            let n = values.len();
            (n > 0).then(|| values[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        Percentiles {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
        }
    }
}

/// The figures for `offers`, all created within the window.
pub fn figures(offers: &[Assignment]) -> OfferFigures {
    let count = |status| offers.iter().filter(|a| a.status == status).count();
    let to_deliver = offers
        .iter()
        .filter_map(|a| Some(a.delivered_at? - a.created_at))
        .collect::<Vec<_>>();
    let to_accept = offers
        .iter()
        .filter(|a| a.status == AssignmentStatus::Accepted)
        .filter_map(|a| Some(a.decided_at? - a.created_at))
        .collect();
    OfferFigures {
        window_secs: WINDOW_SECS,
        created_total: 0,
        created: offers.len(),
        delivered: to_deliver.len(),
        accepted: count(AssignmentStatus::Accepted),
        rejected: count(AssignmentStatus::Rejected),
        expired: count(AssignmentStatus::Expired),
        cancelled: count(AssignmentStatus::Cancelled),
        time_to_deliver_ms: Percentiles::of(to_deliver),
        time_to_accept_ms: Percentiles::of(to_accept),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).rev().collect());
        assert_eq!((p.p50, p.p90, p.p99), (Some(50), Some(90), Some(99)));
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
        assert_eq!(Percentiles::of(vec![7]).p99, Some(7));
    }
}
