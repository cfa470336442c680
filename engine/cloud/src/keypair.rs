//! The per-job key pair: imported under a name derived from the job, deleted at cleanup.

use super::backend::Cloud;
use super::error::{CloudError, CloudErrorKind};
use super::ownership::Ownership;

/// The key pair name for a job: `executor-<owner>-<project>-<job>`, with only characters Nova
/// accepts everywhere.
///
/// Nova key pairs carry no metadata, so the name is the only place the owner can be read back
/// from, and it must name the owner exactly: gc deletes the key pairs it attributes to its owner.
/// An owner made of letters, digits, `-` and `_` is written as it is (the shipped naming, kept
/// so that key pairs made before this rule still match). Any other owner is escaped under a
/// prefix such an owner can never produce, `executor_`: each byte outside letters, digits and
/// `-` becomes `_` and two hex digits. Mapping the other characters to `_`, as names once did,
/// gave owners `ci.a` and `ci_a` the same key pairs.
pub fn job_keypair_name(owner: &Ownership) -> String {
    let raw = format!(
        "{}-{}-{}",
        owner_part(&owner.runner),
        sanitize(&owner.project),
        sanitize(&owner.job)
    );
    raw.chars().take(255).collect()
}

/// The name `owner`'s key pairs had before names named the owner exactly (every character
/// outside letters, digits, `-` and `_` made `_`). Only for recognising the key pairs of
/// servers made before then; never for deciding whose a key pair is.
pub fn shipped_keypair_name(owner: &Ownership) -> String {
    format!(
        "executor-{}-{}-{}",
        sanitize(&owner.runner),
        sanitize(&owner.project),
        sanitize(&owner.job)
    )
    .chars()
    .take(255)
    .collect()
}

fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if is_plain(c) { c } else { '_' })
        .collect()
}

/// `executor-<owner>` for a plain owner, else `executor_<owner escaped>`.
fn owner_part(runner: &str) -> String {
    if runner.chars().all(is_plain) {
        return format!("executor-{runner}");
    }
    let mut out = String::from("executor_");
    for b in runner.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The job a per-job key pair name belongs to, when it is one of `runner`'s. GitLab's project
/// and job ids are numbers, which keeps the parse unambiguous: runner `a` never claims runner
/// `a-1`'s key pairs. The owner is compared exactly (see [`job_keypair_name`]): runner `ci_a`
/// never claims `ci.a`'s key pairs, nor `ci.a` those of `ci_a`.
pub fn job_of_keypair_name(runner: &str, name: &str) -> Option<Ownership> {
    let prefix = format!("{}-", owner_part(runner));
    let rest = name.strip_prefix(&prefix)?;
    let (project, job) = rest.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(project) || !digits(job) {
        return None;
    }
    let owner = Ownership {
        runner: runner.to_string(),
        project: project.to_string(),
        job: job.to_string(),
    };
    (job_keypair_name(&owner) == name).then_some(owner)
}

fn same_key(a: &str, b: &str) -> bool {
    // Compare type and key material; the comment may differ.
    let fields = |s: &str| {
        s.split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    fields(a) == fields(b)
}

/// Imports `public_key` as `name`. Re-importing the same key is fine (a repeated prepare).
/// A different key under the name is a conflict, unless `replace_stale`: then the old key
/// pair (left by an earlier attempt of this very job whose cleanup failed) is replaced. Pass
/// it only for the per-job name, never for a shared key pair.
pub async fn import_job_keypair(
    cloud: &dyn Cloud,
    name: &str,
    public_key: &str,
    replace_stale: bool,
) -> Result<(), CloudError> {
    let mut replaced = false;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match cloud.import_keypair(name, public_key).await {
            Ok(()) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind,
                    CloudErrorKind::Conflict | CloudErrorKind::Transient | CloudErrorKind::Timeout
                ) =>
            {
                match cloud.keypair_public_key(name).await? {
                    Some(existing) if same_key(&existing, public_key) => return Ok(()),
                    Some(_) if replace_stale && !replaced => {
                        tracing::warn!(keypair = name, "replacing a stale per-job key pair");
                        cloud.delete_keypair(name).await?;
                        replaced = true;
                    }
                    Some(_) => {
                        return Err(CloudError {
                            message: format!(
                                "{}; a different key is already stored under this name",
                                e.message
                            ),
                            kind: CloudErrorKind::Conflict,
                            ..e
                        });
                    }
                    None if attempts < 3 && e.kind != CloudErrorKind::Conflict => continue,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(runner: &str, project: &str, job: &str) -> Ownership {
        Ownership {
            runner: runner.into(),
            project: project.into(),
            job: job.into(),
        }
    }

    #[test]
    fn a_per_job_name_parses_back_to_its_job_for_its_runner_only() {
        let name = job_keypair_name(&owner("a-1", "5", "7"));
        assert_eq!(name, "executor-a-1-5-7");
        assert_eq!(
            job_of_keypair_name("a-1", &name),
            Some(owner("a-1", "5", "7"))
        );
        // Runner `a` sees "1-5-7" after its prefix: not <project>-<job>.
        assert_eq!(job_of_keypair_name("a", &name), None);
        assert_eq!(
            job_of_keypair_name("a", "executor-a-12-34"),
            Some(owner("a", "12", "34"))
        );
        for foreign in [
            "site-static",
            "executor-a-x-34",
            "executor-a--34",
            "executor-a-12-",
            "executor-b-1-2",
        ] {
            assert_eq!(job_of_keypair_name("a", foreign), None, "{foreign}");
        }
    }

    #[test]
    fn owners_that_differ_only_in_punctuation_never_share_key_pairs() {
        let dotted = job_keypair_name(&owner("ci.a", "5", "7"));
        let underscored = job_keypair_name(&owner("ci_a", "5", "7"));
        // The shipped naming is kept for plain owners.
        assert_eq!(underscored, "executor-ci_a-5-7");
        assert_eq!(dotted, "executor_ci_2ea-5-7");
        assert_eq!(job_of_keypair_name("ci_a", &dotted), None);
        assert_eq!(job_of_keypair_name("ci.a", &underscored), None);
        assert_eq!(
            job_of_keypair_name("ci.a", &dotted),
            Some(owner("ci.a", "5", "7"))
        );
        // An escaped owner cannot pose as a plain one whose name contains the escape.
        let escaped_look = job_keypair_name(&owner("ci_2ea", "5", "7"));
        assert_ne!(escaped_look, dotted);
        assert_eq!(job_of_keypair_name("ci.a", &escaped_look), None);
        assert_eq!(job_of_keypair_name("ci_2ea", &dotted), None);
        // Every byte outside the plain set is escaped, `_` included, so the escape is lossless.
        assert_ne!(
            job_keypair_name(&owner("a_2e", "1", "2")),
            job_keypair_name(&owner("a.", "1", "2"))
        );
        assert_ne!(
            job_keypair_name(&owner("a_.", "1", "2")),
            job_keypair_name(&owner("a._", "1", "2"))
        );
    }
}
