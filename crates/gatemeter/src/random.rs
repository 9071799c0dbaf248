//! Secrets gatemeter makes itself (the privacy key, API tokens and their
//! salts), from the operating system's generator.

use crate::error::CliError;

/// `count` random bytes.
pub fn random_bytes(count: usize) -> Result<Vec<u8>, CliError> {
    let mut buffer = vec![0u8; count];
    getrandom::fill(&mut buffer)
        .map_err(|e| CliError::Usage(format!("the system's random generator failed: {e}")))?;
    Ok(buffer)
}

/// `count` random bytes as lowercase hex.
pub fn random_hex(count: usize) -> Result<String, CliError> {
    random_bytes(count).map(hex::encode)
}
