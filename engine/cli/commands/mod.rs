//! One file per subcommand of `executor`.

pub mod gc;
pub mod gc_held;
pub mod lint;
pub mod render;
pub mod stage;
