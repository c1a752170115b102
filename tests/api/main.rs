#[macro_use]
mod helpers;

mod assignments;
mod cluster;
mod concurrency;
mod dashboard;
mod dispatch;
mod doctor;
mod expiry;
mod fuzz;
mod http_errors;
mod limits;
mod metrics;
mod openapi;
mod origin;
mod postgres;
mod process;
mod protocol_doc;
mod push;
mod receipts;
mod replay;
mod restart;
mod stats;
mod token_lifetime;
mod webhooks;
mod ws_auth;
mod ws_protocol;
