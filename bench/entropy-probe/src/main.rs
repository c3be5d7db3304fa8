//! Times what AWS-LC's random generator costs the first time a process uses it: the library's
//! initialisation, the first fill (which seeds the process-wide DRBG, from CPU jitter entropy
//! unless `aws-lc-sys` was built with `AWS_LC_SYS_NO_JITTER_ENTROPY=1`), a second fill, and the
//! first fill on a new thread (which seeds that thread's DRBG from the process-wide one).
//!
//! Prints one JSON line, times in microseconds. Build it twice to compare:
//!
//! ```text
//! cargo run --release -p entropy-probe    # as the workspace builds it: no jitter (.cargo/config.toml)
//! AWS_LC_SYS_NO_JITTER_ENTROPY=0 CARGO_TARGET_DIR=target/jitter cargo run --release -p entropy-probe
//! ```

use std::time::Instant;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

fn micros(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e6
}

/// Times one 32-byte fill, as a TLS client random or a key share would ask for.
fn timed_fill(rng: &SystemRandom) -> Result<f64, aws_lc_rs::error::Unspecified> {
    let mut buffer = [0_u8; 32];
    let start = Instant::now();
    rng.fill(&mut buffer)?;
    Ok(micros(start))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    aws_lc_rs::init();
    let init_us = micros(start);

    let rng = SystemRandom::new();
    let first_fill_us = timed_fill(&rng)?;
    let second_fill_us = timed_fill(&rng)?;
    let thread_rng = rng.clone();
    let new_thread_first_fill_us = std::thread::spawn(move || timed_fill(&thread_rng))
        .join()
        .map_err(|_| "the probe thread panicked")??;

    println!(
        "{{\"init_us\":{init_us:.1},\"first_fill_us\":{first_fill_us:.1},\
         \"second_fill_us\":{second_fill_us:.1},\
         \"new_thread_first_fill_us\":{new_thread_first_fill_us:.1}}}"
    );
    Ok(())
}
