//! The per-job key pair: imported under a name derived from the job, deleted at cleanup.

use super::backend::Cloud;
use super::error::{CloudError, CloudErrorKind};
use super::ownership::Ownership;

/// The key pair name for a job. Only characters Nova accepts everywhere are kept.
pub fn job_keypair_name(owner: &Ownership) -> String {
    let raw = format!("executor-{}-{}-{}", owner.runner, owner.project, owner.job);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(255)
        .collect()
}

/// The job a per-job key pair name belongs to, when it is one of `runner`'s. GitLab's project
/// and job ids are numbers, which keeps the parse unambiguous: runner `a` never claims runner
/// `a-1`'s key pairs.
pub fn job_of_keypair_name(runner: &str, name: &str) -> Option<Ownership> {
    let prefix = job_keypair_name(&Ownership {
        runner: runner.to_string(),
        project: String::new(),
        job: String::new(),
    });
    let rest = name.strip_prefix(prefix.strip_suffix('-')?)?;
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
}
