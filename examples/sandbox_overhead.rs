//! Measures what the sandbox costs per generator run: a trivial script run N times
//! unsandboxed and N times under bubblewrap, through the same `vars::sandbox::run` (work dir
//! on tmpfs, inputs, verification and cleanup included), printing the mean of each and the
//! difference. Target (DESIGN §10 spirit): at most 5 ms of overhead per run. A last row runs
//! the same job with `network: true` (slirp4netns attached), when slirp4netns is installed.
//!
//! ```text
//! cargo run --release --example sandbox_overhead [RUNS]
//! ```
//!
//! Namespace set-up waits on the kernel more than it computes, so on a busy machine the mean
//! grows far more than the minimum; both are printed.

use std::time::{Duration, Instant};

use vars::sandbox::{self, InputFile, Job, SandboxKind, SandboxSetting};
use vars::secret::SecretBytes;

fn job(network: bool) -> Job {
    let mut job = Job::new(
        "machines/bench/overhead",
        "overhead",
        r#"cat "$in/dep/seed" > "$out/value""#,
    );
    job.outputs = vec!["value".into()];
    job.env = vec![("machine".into(), "bench".into())];
    job.inputs = vec![InputFile {
        dependency: "dep".into(),
        file: "seed".into(),
        bytes: SecretBytes::new(b"0123456789abcdef".to_vec()),
    }];
    job.network = network;
    job
}

/// Mean, median and minimum wall time of `runs` runs, in milliseconds.
fn measure(kind: &SandboxKind, runs: u32, network: bool) -> [f64; 3] {
    let job = job(network);
    // Warm-up: page cache, the core-set resolution (cached per process), bwrap's binary.
    for _ in 0..3 {
        sandbox::run(kind, &job).expect("warm-up run");
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let out = sandbox::run(kind, &job).expect("run");
            let elapsed = started.elapsed();
            assert_eq!(out["value"].expose(), b"0123456789abcdef");
            elapsed
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = ms(times.iter().sum::<Duration>()) / times.len() as f64;
    [mean, ms(times[times.len() / 2]), ms(times[0])]
}

fn main() {
    let runs: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("RUNS must be a number"))
        .unwrap_or(50);
    let bwrap = match sandbox::detect(SandboxSetting::Auto) {
        Ok(kind) => kind,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let bare = measure(&SandboxKind::Unsandboxed, runs, false);
    let sandboxed = measure(&bwrap, runs, false);
    // The minimum approximates an idle machine; the mean includes whatever else is running.
    println!("{runs} runs each          mean    median  min  (ms)");
    let row = |name: &str, [mean, median, min]: [f64; 3]| {
        println!("{name:<22}{mean:>7.2} {median:>7.2} {min:>7.2}");
    };
    row("unsandboxed", bare);
    row("bubblewrap", sandboxed);
    row(
        "sandbox overhead",
        [0, 1, 2].map(|i| sandboxed[i] - bare[i]),
    );
    let network_probe = sandbox::run(&bwrap, &job(true));
    match network_probe {
        Ok(_) => row("bubblewrap, network", measure(&bwrap, runs, true)),
        Err(e) => println!("bubblewrap, network    (not measured: {e})"),
    }
    println!("({bwrap})");
}
