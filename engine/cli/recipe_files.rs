//! Loading the `--recipe` files for a command, with every problem printed (file, line, column)
//! before the command gives up.

use std::path::PathBuf;

use executor_driver::recipe::{LoadedRecipe, diagnostics, loader};

/// The merged recipe, or the number of problems, which have been printed to stderr.
pub fn load_or_report(recipes: &[PathBuf]) -> Result<LoadedRecipe, usize> {
    loader::load(recipes).map_err(|problems| {
        eprint!(
            "{}",
            diagnostics::render(&problems, diagnostics::use_color())
        );
        problems.list.len()
    })
}
