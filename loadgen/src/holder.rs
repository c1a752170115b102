//! Client connections in processes of their own, so no process holds both ends of 10,000 sockets.
//! The parent says `report` on stdin; the holder answers one JSON line and starts counting afresh.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::fleet::{Fleet, Recorder};

/// Most connections one holder takes, leaving room under the open-files limit.
pub const PER_PROCESS: usize = 15_000;

#[derive(Serialize, Deserialize, Debug, Default, Clone, Copy)]
pub struct Window {
    pub received: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

pub async fn hold(addr: SocketAddr, connections: usize, offset: i64, secret: &str, source_ips: u8) {
    let recorder = Recorder::timestamped();
    let mut fleet = Fleet::new(secret, connections, offset, source_ips, recorder.clone());
    let failures = fleet.connect_all(addr, 256).await;
    println!("ready {failures}");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "report" {
            let (hist, received) = recorder.take();
            let window = Window {
                received,
                p50_us: hist.value_at_quantile(0.5),
                p99_us: hist.value_at_quantile(0.99),
                max_us: hist.max(),
            };
            println!("{}", serde_json::to_string(&window).unwrap());
        }
    }
}

/// The holders of one run, spread so that each stays under [`PER_PROCESS`] connections.
pub struct Holders {
    children: Vec<(Child, ChildStdin, BufReader<ChildStdout>)>,
    pub failures: usize,
}

impl Holders {
    pub fn start(addr: SocketAddr, connections: usize, secret: &str, source_ips: u8) -> Holders {
        let processes = connections.div_ceil(PER_PROCESS).max(1);
        let mut children = Vec::new();
        let mut failures = 0;
        for p in 0..processes {
            let offset = p * connections / processes;
            let count = (p + 1) * connections / processes - offset;
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "hold",
                    "--addr",
                    &addr.to_string(),
                    "--connections",
                    &count.to_string(),
                ])
                .args(["--offset", &offset.to_string(), "--jwt-secret", secret])
                .args(["--source-ips", &source_ips.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("holder starts");
            let stdin = child.stdin.take().unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut ready = String::new();
            stdout.read_line(&mut ready).unwrap();
            failures += ready
                .trim()
                .strip_prefix("ready ")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(count);
            children.push((child, stdin, stdout));
        }
        Holders { children, failures }
    }

    /// Deliveries since the last report, summed; percentiles are the worst holder's.
    pub fn report(&mut self) -> Window {
        let mut total = Window::default();
        for (_, stdin, stdout) in &mut self.children {
            writeln!(stdin, "report").unwrap();
            stdin.flush().unwrap();
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let w: Window = serde_json::from_str(&line).expect("holder report");
            total.received += w.received;
            total.p50_us = total.p50_us.max(w.p50_us);
            total.p99_us = total.p99_us.max(w.p99_us);
            total.max_us = total.max_us.max(w.max_us);
        }
        total
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        for (child, _, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
