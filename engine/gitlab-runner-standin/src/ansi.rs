//! The ANSI colour sequences gitlab-runner writes around its own lines, in the job trace and in
//! the scripts it generates: the stand-in copies them so that its trace reads like the runner's.

pub(crate) const BOLD_CYAN: &str = "\x1b[36;1m";
pub(crate) const BOLD_GREEN: &str = "\x1b[32;1m";
pub(crate) const BOLD_RED: &str = "\x1b[31;1m";
pub(crate) const YELLOW: &str = "\x1b[0;33m";
pub(crate) const RESET: &str = "\x1b[0;m";
pub(crate) const CLEAR: &str = "\x1b[0K";
