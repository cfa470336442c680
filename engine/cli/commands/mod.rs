//! One file per subcommand of `executor`.

pub mod gc;
pub mod lint;
pub mod render;
pub mod stage;
