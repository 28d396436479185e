//! Measures what the sandbox costs per generator run: a trivial script run N times
//! unsandboxed and N times under bubblewrap, through the same `vars::sandbox::run` (work dir
//! on tmpfs, inputs, verification and cleanup included), printing the mean of each and the
//! difference. Target (DESIGN §10 spirit): at most 5 ms of overhead per run.
//!
//! ```text
//! cargo run --release --example sandbox_overhead [RUNS]
//! ```

use std::time::{Duration, Instant};

use vars::sandbox::{self, InputFile, Job, SandboxKind, SandboxSetting};
use vars::secret::SecretBytes;

fn job() -> Job {
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
    job
}

fn mean_ms(kind: &SandboxKind, runs: u32) -> f64 {
    let job = job();
    // Warm-up: page cache, the core-set resolution (cached per process), bwrap's binary.
    for _ in 0..3 {
        sandbox::run(kind, &job).expect("warm-up run");
    }
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let started = Instant::now();
        let out = sandbox::run(kind, &job).expect("run");
        total += started.elapsed();
        assert_eq!(out["value"].expose(), b"0123456789abcdef");
    }
    total.as_secs_f64() * 1000.0 / f64::from(runs)
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
    let bare = mean_ms(&SandboxKind::Unsandboxed, runs);
    let sandboxed = mean_ms(&bwrap, runs);
    println!("runs per mode:      {runs}");
    println!("unsandboxed mean:   {bare:.2} ms");
    println!("{bwrap} mean: {sandboxed:.2} ms");
    println!("sandbox overhead:   {:.2} ms per run", sandboxed - bare);
}
