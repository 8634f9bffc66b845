//! Value parsers for numeric flags: clap reports a bad value as "invalid value 'nan' for
//! '--seconds <SECONDS>': ...", naming the flag, before any work starts.

/// A finite number >= 0 (`--seconds`).
pub fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v < 0.0 {
        return Err(format!("must be 0 or more, got {v}"));
    }
    Ok(v)
}

/// A finite number > 0 (`--scale`).
pub fn positive_f64(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v <= 0.0 {
        return Err(format!("must be more than 0, got {v}"));
    }
    Ok(v)
}

/// An integer >= 1 (`--batch`, `--iters`, `--samples`).
pub fn positive_usize(s: &str) -> Result<usize, String> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("must be a whole number of at least 1, got {s:?}"))?;
    if v == 0 {
        return Err("must be at least 1, got 0".into());
    }
    Ok(v)
}

/// An integer >= 1, 64 bits (`--samples`, `--max-ind-range`).
pub fn positive_u64(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("must be a whole number of at least 1, got {s:?}"))?;
    if v == 0 {
        return Err("must be at least 1, got 0".into());
    }
    Ok(v)
}

fn number(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("must be a number, got {s:?}"))?;
    if !v.is_finite() {
        return Err(format!("must be a finite number, got {v}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked() {
        assert_eq!(non_negative_f64("0"), Ok(0.0));
        assert_eq!(non_negative_f64("2.5"), Ok(2.5));
        for bad in ["nan", "NaN", "inf", "-1", "-0.5", "x", ""] {
            assert!(non_negative_f64(bad).is_err(), "{bad}");
        }
        assert!(positive_f64("0").is_err());
        assert_eq!(positive_f64("0.05"), Ok(0.05));
        assert!(positive_usize("0").is_err());
        assert!(positive_usize("-3").is_err());
        assert_eq!(positive_usize("128"), Ok(128));
        assert!(positive_u64("1.5").is_err());
        assert_eq!(positive_u64("10000000"), Ok(10_000_000));
    }
}
