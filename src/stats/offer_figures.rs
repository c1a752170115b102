//! How offers fared over a recent window: counts by what happened, and how long the master's app
//! took to acknowledge them and the master to accept them.

use crate::{
    domain::{AssignmentStatus, records::Assignment},
    protocol::stats::{OfferFigures, Percentiles},
};

/// The window the admin stats cover.
pub const WINDOW_SECS: i64 = 15 * 60;

/// Nearest-rank percentiles of `values`.
fn percentiles(mut values: Vec<i64>) -> Percentiles {
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

/// The figures for `offers`, all created within the window.
pub fn figures(offers: &[Assignment], created_total: i64) -> OfferFigures {
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
        created_total,
        created: offers.len(),
        delivered: to_deliver.len(),
        accepted: count(AssignmentStatus::Accepted),
        rejected: count(AssignmentStatus::Rejected),
        expired: count(AssignmentStatus::Expired),
        cancelled: count(AssignmentStatus::Cancelled),
        time_to_deliver_ms: percentiles(to_deliver),
        time_to_accept_ms: percentiles(to_accept),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = percentiles((1..=100).rev().collect());
        assert_eq!((p.p50, p.p90, p.p99), (Some(50), Some(90), Some(99)));
        assert_eq!(percentiles(vec![]), Percentiles::default());
        assert_eq!(percentiles(vec![7]).p99, Some(7));
    }
}
