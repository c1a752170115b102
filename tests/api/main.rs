#[macro_use]
mod helpers;

mod assignments;
mod cluster;
mod concurrency;
mod expiry;
mod http_errors;
mod origin;
mod postgres;
mod process;
mod restart;
mod stats;
mod ws_auth;
mod ws_protocol;
