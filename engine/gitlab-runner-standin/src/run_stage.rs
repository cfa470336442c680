//! The run sub-stages: the name passed to `run_exec`, the log section, and the header.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStage {
    PrepareScript,
    GetSources,
    ClearWorktree,
    RestoreCache,
    DownloadArtifacts,
    /// A user step; `script` is the job's main step.
    Step(String),
    AfterScript,
    ArchiveCache {
        on_failure: bool,
    },
    UploadArtifacts {
        on_failure: bool,
    },
    CleanupFileVariables,
}

impl RunStage {
    /// The stage argument `run_exec` receives. The custom executor still renames
    /// `step_script` to `build_script`.
    pub fn driver_name(&self) -> String {
        match self {
            RunStage::PrepareScript => "prepare_script".into(),
            RunStage::GetSources => "get_sources".into(),
            RunStage::ClearWorktree => "clear_worktree".into(),
            RunStage::RestoreCache => "restore_cache".into(),
            RunStage::DownloadArtifacts => "download_artifacts".into(),
            RunStage::Step(name) if name == "script" => "build_script".into(),
            RunStage::Step(name) => format!("step_{name}"),
            RunStage::AfterScript => "after_script".into(),
            RunStage::ArchiveCache { on_failure: false } => "archive_cache".into(),
            RunStage::ArchiveCache { on_failure: true } => "archive_cache_on_failure".into(),
            RunStage::UploadArtifacts { on_failure: false } => "upload_artifacts_on_success".into(),
            RunStage::UploadArtifacts { on_failure: true } => "upload_artifacts_on_failure".into(),
            RunStage::CleanupFileVariables => "cleanup_file_variables".into(),
        }
    }

    /// The collapsible section's name in the job log (the runner's own stage name).
    pub fn section_name(&self) -> String {
        match self {
            RunStage::Step(name) => format!("step_{name}"),
            other => other.driver_name(),
        }
    }

    /// gitlab-runner's `GetStageDescription`.
    pub fn header(&self) -> String {
        match self {
            RunStage::PrepareScript => "Preparing environment".into(),
            RunStage::GetSources => "Getting source from Git repository".into(),
            RunStage::ClearWorktree => {
                "Deleting all tracked and untracked files due to source fetch failure".into()
            }
            RunStage::RestoreCache => "Restoring cache".into(),
            RunStage::DownloadArtifacts => "Downloading artifacts".into(),
            RunStage::Step(name) => format!("Executing \"step_{name}\" stage of the job script"),
            RunStage::AfterScript => "Running after_script".into(),
            RunStage::ArchiveCache { on_failure: false } => {
                "Saving cache for successful job".into()
            }
            RunStage::ArchiveCache { on_failure: true } => "Saving cache for failed job".into(),
            RunStage::UploadArtifacts { on_failure: false } => {
                "Uploading artifacts for successful job".into()
            }
            RunStage::UploadArtifacts { on_failure: true } => {
                "Uploading artifacts for failed job".into()
            }
            RunStage::CleanupFileVariables => {
                "Cleaning up project directory and file based variables".into()
            }
        }
    }
}
