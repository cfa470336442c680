//! Reading files whose size someone else decides, with a ceiling.
//!
//! A recipe may `extends:` any path, gitlab-runner's job response grows with the job's
//! variables, and a state or key file may have been replaced by anything. `/dev/zero` or a
//! runaway file must end in a clear error, not in a process that grows until the host kills it.

use std::io::{self, Read};
use std::path::Path;

const MIB: u64 = 1024 * 1024;
/// Recipes and override files: the largest real ones are a few tens of KiB.
pub const RECIPE_LIMIT: u64 = 8 * MIB;
/// gitlab-runner's job response: variables, dependencies and steps of one job.
pub const JOB_RESPONSE_LIMIT: u64 = 64 * MIB;
/// Small configuration and state: clouds.yaml, the job state, keys, CA bundles, env files.
pub const CONFIG_LIMIT: u64 = 16 * MIB;

/// The file's bytes, or an `InvalidData` error once it holds more than `limit`.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

/// [`read_bounded`], as UTF-8 text.
pub fn read_to_string_bounded(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file is not UTF-8 text"))
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the file holds more than {} MiB, far more than this file ever needs; is it the right file?",
            limit / MIB
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_at_the_limit() {
        let err = read_bounded(Path::new("/dev/zero"), MIB).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("more than 1 MiB"), "{err}");
    }

    #[test]
    fn a_file_at_the_limit_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'a'; 1024]).unwrap();
        assert_eq!(read_bounded(&path, 1024).unwrap().len(), 1024);
        assert!(read_bounded(&path, 1023).is_err());
    }
}
