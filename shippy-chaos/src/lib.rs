//! `make chaos`: a Jepsen-style soak of the whole cluster.
//!
//! A [generator](workload) of concurrent clients (gRPC and the
//! api-gateway's JSON API), a [nemesis] injecting seeded random faults
//! (`kill -9`, `SIGSTOP`, partitions through [fault proxies](proxy)), a
//! [history] of every operation and fault, and a [checker] that proves,
//! once the cluster has quiesced, that nothing acknowledged was lost,
//! nothing failed was kept, no vessel was overbooked, every user got
//! exactly one welcome mail and every service came back.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod http;
pub mod nemesis;
pub mod proxy;
pub mod report;
pub mod run;
pub mod view;
pub mod workload;
