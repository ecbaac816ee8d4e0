//! Running a property over many seeds, as every property test does: which
//! seeds (`SIM_SEED=S` one, else `SIM_SEEDS=N` from `SIM_FIRST`), how long a
//! run is (`SIM_ACTIONS`), and a failure that names its seed and the command
//! that replays it.

use std::panic::{catch_unwind, RefUnwindSafe};

fn var(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// The seeds to run: `SIM_SEED`, or `SIM_SEEDS` (default `default_count`)
/// from `SIM_FIRST` (default 0).
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = var("SIM_SEED") {
        return vec![seed];
    }
    let first = var("SIM_FIRST").unwrap_or(0);
    (first..first + var("SIM_SEEDS").unwrap_or(default_count)).collect()
}

/// Runs `run(seed, actions)` for every seed with `seed % 2 == half` (a test
/// file runs its two halves as two tests, in parallel), and panics at the
/// first failure with the seed and how to replay it (`test`: the test file).
pub fn run_half(
    test: &str,
    half: u64,
    default_count: u64,
    default_actions: usize,
    run: impl Fn(u64, usize) -> Result<(), String> + RefUnwindSafe,
) {
    let actions = var("SIM_ACTIONS").map_or(default_actions, |a| a as usize);
    for seed in seeds(default_count).into_iter().filter(|s| s % 2 == half) {
        let failure = match catch_unwind(|| run(seed, actions)) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| format!("{panic:?}")),
        };
        panic!("seed {seed} failed: {failure}\nreplay: SIM_SEED={seed} SIM_TRACE=1 cargo test -p askutron-sim --test {test}");
    }
}
