//! The driver's core: a recipe is loaded and checked (`recipe`), its templates rendered
//! (`template`), and a stage's steps run in order (`interpreter`) as typed steps (`steps`) that
//! call the back ends (`executor_cloud`, `executor_ssh`).
//!
//! Layers, top down; an arrow never goes up (ARCHITECTURE.md, checked by a test):
//! `interpreter` → `recipe` → `template` → `steps` → back ends → `executor_foundation`.

pub mod interpreter;
pub mod recipe;
pub mod steps;
pub mod template;
