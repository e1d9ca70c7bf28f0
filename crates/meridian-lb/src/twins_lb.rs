//! What the balancer does with its green twins (`twins.rs`): routes a request to a group
//! or its twin, makes twins, sets their weights, and lists them.

use crate::proxy::LoadBalancer;
use crate::target::TargetGroup;
use crate::twins::TwinError;

impl LoadBalancer {
    /// The group at `i`, or its twin for the share the twin's weight says.
    pub(crate) fn route(&self, i: usize) -> &TargetGroup {
        self.twins().pick(i).unwrap_or(&self.groups()[i])
    }

    /// Every group and every twin made so far.
    pub fn all_groups(&self) -> impl Iterator<Item = &TargetGroup> {
        let twins = self.twins();
        self.groups()
            .iter()
            .chain((0..self.groups().len()).filter_map(move |i| twins.get(i)))
    }

    fn group_index(&self, group: &str) -> Result<usize, TwinError> {
        self.groups()
            .iter()
            .position(|g| g.name == group)
            .ok_or_else(|| TwinError::NoGroup(group.to_owned()))
    }

    /// Makes group `group`'s twin (or finds the one made before): its name.
    pub fn make_twin(&self, group: &str) -> Result<String, TwinError> {
        let i = self.group_index(group)?;
        Ok(self.twin_at(i).name.clone())
    }

    /// The twin of the group at `i`, made if there is none yet.
    pub(crate) fn twin_at(&self, i: usize) -> &TargetGroup {
        self.twins().make(i, &self.groups()[i])
    }

    /// Sends `percent` of group `group`'s traffic (every twinned group's when None) to its
    /// twin; (group, percent) of each group changed.
    pub fn set_twin_percent(
        &self,
        group: Option<&str>,
        percent: u32,
    ) -> Result<Vec<(String, u32)>, TwinError> {
        if percent > 100 {
            return Err(TwinError::Percent(percent.to_string()));
        }
        let twins = self.twins();
        let which: Vec<usize> = match group {
            Some(g) => {
                let i = self.group_index(g)?;
                if twins.get(i).is_none() && percent > 0 {
                    return Err(TwinError::NoTwin(g.to_owned()));
                }
                vec![i]
            }
            None => (0..self.groups().len())
                .filter(|&i| twins.get(i).is_some())
                .collect(),
        };
        let mut changed = Vec::new();
        for i in which {
            twins.set_percent(i, percent);
            changed.push((self.groups()[i].name.clone(), percent));
        }
        tracing::info!(lb = %self.name(), ?changed, "twin weights set");
        Ok(changed)
    }

    /// `GET /target-groups`: every group, its twin and the share the twin takes.
    pub(crate) fn twins_json(&self) -> serde_json::Value {
        let twins = self.twins();
        let groups: Vec<serde_json::Value> = self
            .groups()
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let twin = twins.get(i);
                serde_json::json!({
                    "target_group": g.name,
                    "twin": twin.map(|t| t.name.clone()),
                    "twin_percent": twins.percent(i),
                    "healthy_targets": g.healthy_count(),
                    "twin_healthy_targets": twin.map(|t| t.healthy_count()),
                })
            })
            .collect();
        serde_json::json!({ "name": self.name(), "target_groups": groups })
    }
}
