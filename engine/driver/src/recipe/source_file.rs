//! Recipe files as loaded, kept whole so that diagnostics can quote them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One loaded file and its text.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    /// The name diagnostics print: the path as the user gave it.
    pub name: String,
    pub text: Arc<str>,
    /// The file's place in the order layers are merged, base first: a clash between two
    /// layers is the later one's doing.
    pub layer: usize,
}

/// A byte range in one of the loaded files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub file: usize,
    pub start: usize,
    pub end: usize,
}

/// Every file a recipe was assembled from, indexed by `Loc::file`.
#[derive(Debug, Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
}

impl Sources {
    pub fn add(&mut self, path: &Path, text: String) -> usize {
        self.files.push(SourceFile {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            text: text.into(),
            layer: usize::MAX,
        });
        self.files.len() - 1
    }

    pub fn get(&self, file: usize) -> &SourceFile {
        &self.files[file]
    }

    /// 1-based line and column of a location, for plain-text reports.
    pub fn line_col(&self, loc: Loc) -> (usize, usize) {
        let text = &self.files[loc.file].text;
        let before = &text[..loc.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}
