//! Gossip throughput across 4 nodes on loopback, and the CPU it costs.
//!
//! One node publishes `count` distinct messages of `size` bytes on the tx topic; the other three
//! validate (accept) every one, as a node would. The publisher keeps at most `window` messages
//! ahead of the slowest receiver, so queues never overflow and every message is delivered. The
//! figure is messages per second delivered to *every* receiver, and the process CPU time
//! (getrusage: user + system, all 4 nodes together) per message per node.
//!
//! ```sh
//! cargo run --release -p aitbc-p2p --example gossip_throughput -- [size] [count] [window]
//! ```

use aitbc_chain::hash::Hash;
use aitbc_p2p::{start, Acceptance, Config, Event, Handle, Keypair, PublishError, Topic};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass and has no other effect.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn config(bootstrap: Vec<aitbc_p2p::Multiaddr>) -> Config {
    let mut c = Config::new("ait-bench", Hash::of(b"bench genesis"));
    c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("literal")];
    c.bootstrap = bootstrap;
    c.discovery_interval = Duration::from_millis(500);
    c.gossip_heartbeat = Duration::from_millis(500);
    c.event_buffer = 65_536;
    c
}

async fn node(
    bootstrap: Vec<aitbc_p2p::Multiaddr>,
    received: Arc<AtomicU64>,
) -> Result<Handle, Box<dyn std::error::Error>> {
    let (handle, mut events) = start(Keypair::generate_ed25519(), config(bootstrap)).await?;
    let validator = handle.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Gossip { id, source, .. } = event {
                received.fetch_add(1, Ordering::Relaxed);
                let _ = validator
                    .report_validation(id, source, Acceptance::Accept)
                    .await;
            }
        }
    });
    Ok(handle)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let size = args.first().copied().unwrap_or(200);
    let count = args.get(1).copied().unwrap_or(20_000) as u64;
    let window = args.get(2).copied().unwrap_or(500) as u64;

    let counters: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let publisher = node(vec![], counters[0].clone()).await?;
    let addr = publisher
        .listen_addrs()
        .await?
        .into_iter()
        .next()
        .ok_or("no listen address")?
        .with_p2p(publisher.local_peer_id())
        .map_err(|_| "address already has a peer id")?;
    let mut handles = vec![publisher.clone()];
    for counter in &counters[1..] {
        handles.push(node(vec![addr.clone()], counter.clone()).await?);
    }

    // Wait until all four see each other and the publisher's topic has subscribers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = true;
        for h in &handles {
            let peers = h.peers().await?;
            ready &= peers
                .iter()
                .filter(|p| p.connected && p.topics.contains(&Topic::Tx))
                .count()
                == 3;
        }
        if ready {
            break;
        }
        if Instant::now() > deadline {
            return Err("nodes did not connect within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the mesh form (a few heartbeats).
    tokio::time::sleep(Duration::from_secs(2)).await;

    let slowest = || {
        counters[1..]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let mut payload = vec![0u8; size.max(8)];
    let mut published = 0u64;
    while published < count {
        if published - slowest() >= window {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        payload[..8].copy_from_slice(&published.to_le_bytes());
        match publisher.publish(Topic::Tx, payload.clone()).await {
            Ok(_) => published += 1,
            Err(PublishError::QueueFull) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(e) => return Err(e.into()),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while slowest() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    let delivered = slowest();

    let rate = delivered as f64 / elapsed.as_secs_f64();
    println!(
        "payload {size} B: {delivered}/{count} messages delivered to all 3 receivers in {:.2} s \
         = {rate:.0} msg/s ({:.1} MB/s per receiver)",
        elapsed.as_secs_f64(),
        rate * size as f64 / 1e6,
    );
    println!(
        "CPU: {:.2} s for 4 nodes ({:.0}% of one core) = {:.1} µs per message per node",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / (delivered.max(1) as f64 * 4.0),
    );
    for h in &handles {
        h.shutdown().await;
    }
    Ok(())
}
