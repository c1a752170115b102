//! What operators see: metrics, the admin stats and their feed, offer figures, the access log.

pub mod access;
pub mod metrics;
pub mod offer_figures;
pub mod stats;
pub mod stats_feed;
