//! One tick's scrapes beside the targets they came from: the lookups every view needs.

use super::views::NodeView;
use crate::reading::Reading;
use crate::target::Target;

/// `readings[i]` is target `i`'s reading (None: it did not answer this tick).
pub(super) struct Scrape<'a> {
    pub(super) targets: &'a [Target],
    pub(super) nodes: &'a [NodeView],
    pub(super) readings: &'a [Option<Reading>],
}

impl<'a> Scrape<'a> {
    pub(super) fn reading_of(&self, name: &str) -> Option<&'a Reading> {
        let i = self.targets.iter().position(|t| t.name == name)?;
        self.readings.get(i)?.as_ref()
    }

    pub(super) fn is_up(&self, name: &str) -> bool {
        self.nodes.iter().any(|n| n.name == name && n.up)
    }
}
