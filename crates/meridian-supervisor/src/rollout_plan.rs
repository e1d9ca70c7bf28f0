//! The steps of a rolling update of one group of instances, from ECS's two bounds: at
//! most `maximum_percent` of the count running (rounded down), at least
//! `minimum_healthy_percent` healthy (rounded up). A pure function, so it is tested alone.

/// One step: start this many new instances (and wait until they are healthy and
/// registered), or stop this many old ones (deregister, drain, stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start(usize),
    Stop(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("with {count} instance(s), minimum_healthy_percent = {min} and maximum_percent = {max} allow neither starting a new instance nor stopping an old one; raise maximum_percent or lower minimum_healthy_percent")]
pub struct PlanError {
    pub count: usize,
    pub min: u32,
    pub max: u32,
}

/// The steps that replace `count` instances. Each round starts as many new instances as
/// `maximum_percent` leaves room for, then stops as many old ones as
/// `minimum_healthy_percent` allows.
pub fn plan(count: usize, min: u32, max: u32) -> Result<Vec<Step>, PlanError> {
    let min_healthy = (count * min as usize).div_ceil(100);
    let max_running = count * max as usize / 100;
    let (mut old, mut new) = (count, 0usize);
    let mut steps = Vec::new();
    while old > 0 || new < count {
        let start = max_running.saturating_sub(old + new).min(count - new);
        if start > 0 {
            steps.push(Step::Start(start));
            new += start;
        }
        let stop = old.min((old + new).saturating_sub(min_healthy));
        if stop > 0 {
            steps.push(Step::Stop(stop));
            old -= stop;
        }
        if start == 0 && stop == 0 {
            return Err(PlanError { count, min, max });
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::{plan, Step::*};

    #[test]
    fn ecs_defaults_start_every_replacement_first() {
        assert_eq!(plan(1, 100, 200), Ok(vec![Start(1), Stop(1)]));
        assert_eq!(plan(3, 100, 200), Ok(vec![Start(3), Stop(3)]));
    }

    #[test]
    fn a_tighter_maximum_goes_in_batches() {
        // 4 instances, at most 5 running: one new at a time, never below 4 healthy.
        assert_eq!(
            plan(4, 100, 125),
            Ok(vec![
                Start(1),
                Stop(1),
                Start(1),
                Stop(1),
                Start(1),
                Stop(1),
                Start(1),
                Stop(1)
            ])
        );
        assert_eq!(
            plan(4, 100, 150),
            Ok(vec![Start(2), Stop(2), Start(2), Stop(2)])
        );
    }

    #[test]
    fn no_room_above_means_stopping_first() {
        assert_eq!(
            plan(2, 50, 100),
            Ok(vec![Stop(1), Start(1), Stop(1), Start(1)])
        );
        assert_eq!(plan(1, 0, 100), Ok(vec![Stop(1), Start(1)]));
    }

    #[test]
    fn bounds_are_respected_at_every_step() {
        for count in 1..=6usize {
            for min in [0u32, 25, 50, 75, 100] {
                for max in [100u32, 125, 150, 200] {
                    let Ok(steps) = plan(count, min, max) else {
                        continue;
                    };
                    let (mut old, mut new) = (count, 0);
                    for s in steps {
                        match s {
                            Start(n) => new += n,
                            Stop(n) => old -= n,
                        }
                        assert!(old + new <= (count * max as usize / 100).max(count));
                        assert!(old + new >= (count * min as usize).div_ceil(100));
                    }
                    assert_eq!((old, new), (0, count), "{count} {min} {max}");
                }
            }
        }
    }

    #[test]
    fn a_stuck_pair_is_an_error_not_a_loop() {
        let e = plan(1, 50, 150).unwrap_err();
        assert!(e.to_string().contains("raise maximum_percent"), "{e}");
        assert_eq!(plan(0, 100, 200), Ok(vec![]));
    }
}
