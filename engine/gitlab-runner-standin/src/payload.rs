//! The job payload written to `response.json` (`JOB_RESPONSE_FILE`), shaped like gitlab-runner's
//! `spec.Job`.

use serde_json::{Value, json};

use super::job::{Job, JobVariable};
use super::project;

pub(crate) struct PayloadContext<'a> {
    pub job: &'a Job,
    pub job_id: u64,
    pub job_token: &'a str,
    pub timeout_secs: u64,
    pub runner_uuid: &'a str,
    /// What GitLab would send: predefined and user variables (the runner adds its own later).
    pub variables: &'a [JobVariable],
}

pub(crate) fn payload(cx: &PayloadContext<'_>) -> Value {
    let job = cx.job;
    let variables: Vec<Value> = cx
        .variables
        .iter()
        .map(|v| json!({"key": v.key, "value": v.value, "public": v.public, "file": v.file, "masked": v.masked, "raw": v.raw}))
        .collect();
    let mut steps = vec![json!({
        "name": "script",
        "script": job.script,
        "timeout": cx.timeout_secs,
        "when": "on_success",
        "allow_failure": false,
    })];
    if !job.after_script.is_empty() {
        steps.push(json!({
            "name": "after_script",
            "script": job.after_script,
            "timeout": cx.timeout_secs,
            "when": "always",
            "allow_failure": true,
        }));
    }
    let cache: Vec<Value> = job
        .cache
        .iter()
        .map(|c| json!({"key": c.key, "untracked": false, "policy": "pull-push", "paths": c.paths, "when": when(c.when), "fallback_keys": []}))
        .collect();
    let artifacts: Vec<Value> = job
        .artifacts
        .iter()
        .map(|a| json!({"name": "", "untracked": false, "paths": a.paths, "when": when(a.when), "artifact_type": "archive", "artifact_format": "zip", "expire_in": ""}))
        .collect();
    let path = project::project_path();
    json!({
        "id": cx.job_id,
        "token": cx.job_token,
        "allow_git_fetch": true,
        "job_info": {
            "id": cx.job_id,
            "name": job.name,
            "stage": "test",
            "project_id": project::PROJECT_ID,
            "project_name": project::PROJECT_NAME,
            "project_full_path": path,
            "pipeline_id": cx.job_id + 100_000,
            "time_in_queue_seconds": 0.0,
            "project_jobs_running_on_instance_runners_count": "0",
        },
        "git_info": {
            "repo_url": project::repository_url(cx.job_token),
            "repo_object_format": "sha1",
            "ref": project::REF_NAME,
            "sha": project::COMMIT_SHA,
            "before_sha": "0000000000000000000000000000000000000000",
            "ref_type": "branch",
            "refspecs": [format!("+refs/heads/{0}:refs/remotes/origin/{0}", project::REF_NAME)],
            "depth": 20,
            "protected": false,
        },
        "runner_info": {"uuid": cx.runner_uuid, "timeout": cx.timeout_secs},
        "inputs": [],
        "variables": variables,
        "steps": steps,
        "image": {"name": ""},
        "services": [],
        "artifacts": artifacts,
        "cache": cache,
        "credentials": [{"type": "registry", "url": project::SERVER_HOST, "username": "gitlab-ci-token", "password": cx.job_token}],
        "dependencies": [],
        "features": {"trace_sections": true, "failure_reasons": ["script_failure", "runner_system_failure", "job_execution_timeout"]},
        "policy_options": {"execution_policy_job": false},
        "suspend_options": {},
    })
}

fn when(w: super::job::When) -> &'static str {
    match w {
        super::job::When::OnSuccess => "on_success",
        super::job::When::OnFailure => "on_failure",
        super::job::When::Always => "always",
    }
}
