//! Sizes with units, as people write them: `4GiB`, `512M`, `1048576`.

/// Why a size did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {value:?}: {why} (examples: 4GiB, 512MiB, 64M, 1048576)")]
pub struct SizeError {
    pub value: String,
    pub why: &'static str,
}

/// Parses a byte count with an optional unit. `K`, `M`, `G`, `T` and their
/// `KiB`-style spellings are powers of 1024; `KB`, `MB`, `GB`, `TB` are
/// powers of 1000; `B` or no unit means bytes. Case does not matter.
pub fn parse_size(value: &str) -> Result<u64, SizeError> {
    let err = |why| SizeError {
        value: value.to_owned(),
        why,
    };
    let s = value.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(err("no number"));
    }
    let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(err("unknown unit")),
    };
    n.checked_mul(mult).ok_or_else(|| err("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("16 MiB"), Ok(16 << 20));
        assert_eq!(parse_size("2mb"), Ok(2_000_000));
        assert_eq!(parse_size("7b"), Ok(7));
        assert_eq!(parse_size("").unwrap_err().why, "no number");
        assert_eq!(parse_size("GiB").unwrap_err().why, "no number");
        assert_eq!(parse_size("4 parsecs").unwrap_err().why, "unknown unit");
        assert_eq!(parse_size("-1").unwrap_err().why, "no number");
        assert_eq!(parse_size("99999999999T").unwrap_err().why, "too large");
        assert_eq!(
            parse_size("1x").unwrap_err().to_string(),
            "invalid size \"1x\": unknown unit (examples: 4GiB, 512MiB, 64M, 1048576)"
        );
    }
}
