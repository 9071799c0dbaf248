//! Secrets gatemeter makes itself (the privacy key, API tokens), from the
//! operating system's generator.

use crate::error::CliError;

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, CliError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|e| CliError::Usage(format!("the system's random generator failed: {e}")))?;
    Ok(hex::encode(buffer))
}
