//! `vars unlock [--ttl 15m]` and `vars lock`: unwrap the current store's vault once (one
//! passphrase, one YubiKey touch) and cache its key in the OS keyring for a while, keyed by the
//! store's vault recipient; `lock` drops it early. Commands that need the vault use the cache.

use std::path::PathBuf;
use std::time::Duration;

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// How long the vault stays unlocked: 90s, 15m, 2h, 1d
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Identity to unwrap the vault with (age identity file, ssh private key or plugin identity; repeatable)
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LockArgs {}

/// The longest unlock: a day. A longer-lived cached vault key is a standing copy of every secret.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 2h or 1d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    let ttl = Duration::from_secs(secs);
    if ttl.is_zero() {
        return Err("the duration must be longer than 0".into());
    }
    if ttl > MAX_TTL {
        return Err("the duration must be at most 1d".into());
    }
    Ok(ttl)
}

pub fn run_unlock(global: &Global, args: UnlockArgs) -> Result<(), CliError> {
    let config = global.load()?;
    let store = config.store();
    let from = vars::vault::unlock(&store, &args.identities, args.ttl)?;
    let how = match from {
        vars::vault::Unlocked::Identities => "unlocked",
        vars::vault::Unlocked::Cache => "was unlocked already; renewed",
    };
    ui::status(format!(
        "vault of {} {how} for {}s in {}; vars lock locks it again",
        store.dir.display(),
        args.ttl.as_secs(),
        vars::keyring::backend_name()
    ));
    Ok(())
}

pub fn run_lock(global: &Global, _args: LockArgs) -> Result<(), CliError> {
    let config = global.load()?;
    let store = config.store();
    if vars::vault::lock(&store)? {
        ui::status(format!("vault of {} locked", store.dir.display()));
    } else {
        ui::status(format!("vault of {} was not unlocked", store.dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parses_units_and_rejects_nonsense() {
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("1d"), Ok(Duration::from_secs(86400)));
        for bad in ["", "0", "m", "5w", "2d", "-1m", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
