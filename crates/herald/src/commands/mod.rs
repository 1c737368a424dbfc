pub mod bench;
pub mod campaign;
pub mod fake_provider;
pub mod http;
pub mod send;
pub mod serve;
pub mod token;
pub mod vapid_keys;

use herald_server::config::Config;

use crate::ConfigArgs;

/// Loads the configuration the way `herald serve` does, with command-line overrides.
pub fn load_config(args: &ConfigArgs) -> Result<Config, String> {
    let mut config = Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(data) = &args.data {
        config.data = data.clone();
    }
    Ok(config)
}

/// The publisher API key: `--api-key`, else `HERALD_API_KEY`, else the data directory's
/// `api_key` file (the one `herald serve` generates on first start).
pub fn api_key(given: Option<&str>, config: &ConfigArgs) -> Result<String, String> {
    if let Some(key) = given
        .map(str::to_owned)
        .or_else(|| std::env::var("HERALD_API_KEY").ok())
    {
        return Ok(key);
    }
    let path = load_config(config)?.data.join("api_key");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| {
            format!(
                "no API key given and {} is unreadable ({e}); pass --api-key",
                path.display()
            )
        })
}

/// Parses durations such as `90`, `90s`, `15m`, `12h`, `7d` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; try 3600, 90s, 15m, 12h or 7d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in {s:?}; use s, m, h or d")),
    };
    Ok(n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
