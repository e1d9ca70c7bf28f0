//! How a rollout moves traffic, as CodeDeploy's deployment configurations for ECS say it:
//! `rolling` (ECS's rolling update, `rollout.rs`, the default), and three that start the
//! new version beside the old one in a green twin of the target group (`rollout_canary.rs`)
//! and shift the balancer's weights: `canary` (`Canary10Percent5Minutes`: X%, bake, then
//! all), `linear` (`Linear10PercentEvery1Minute`: X% more every interval) and `blue-green`
//! (`AllAtOnce`). A pure file: what the query asks for, and the weights in order.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Rolling,
    /// `percent` to green, bake, then 100%.
    Canary {
        percent: u32,
        bake: Duration,
    },
    /// `step` more percent every `interval`, until 100%.
    Linear {
        step: u32,
        interval: Duration,
    },
    /// 100% at once, once green is healthy.
    BlueGreen,
}

/// A traffic-shifting rollout: the strategy, and how long the old (blue) instances stay
/// after all traffic went green, still ready to take it back (CodeDeploy's termination
/// wait; the rollback watch goes on meanwhile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shifting {
    pub strategy: Strategy,
    pub termination_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    #[error("strategy `{0}`: use rolling, canary, linear or blue-green")]
    Unknown(String),
    #[error("{name} = `{value}`: give a percent from 1 to 99")]
    Percent { name: &'static str, value: String },
    #[error("{name} = `{value}`: give a duration such as 20s or 5m")]
    Duration { name: &'static str, value: String },
}

/// One shift: send `percent` of the traffic to green, then watch it for `hold` before the
/// next (the last shift's hold is the termination wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub percent: u32,
    pub hold: Duration,
}

impl Shifting {
    /// The strategy a `POST /rollout` query asks for: `strategy`, and `canary_percent` +
    /// `bake`, or `step_percent` + `step_interval`, and `termination_wait`. Unset values
    /// take CodeDeploy's shape with short times (10%, 20s; 10% every 10s; no wait).
    pub fn from_query(query: Option<&str>) -> Result<Shifting, StrategyError> {
        let get = |k: &str| meridian_http::percent::query_param(query, k);
        let percent = |name: &'static str, default: u32| -> Result<u32, StrategyError> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.parse::<u32>() {
                    Ok(p) if (1..=99).contains(&p) => Ok(p),
                    _ => Err(StrategyError::Percent { name, value: v }),
                },
            }
        };
        let duration = |name: &'static str, default: Duration| -> Result<Duration, StrategyError> {
            match get(name) {
                None => Ok(default),
                Some(v) => meridian_config::units::parse_duration(&v)
                    .map_err(|_| StrategyError::Duration { name, value: v }),
            }
        };
        let strategy = match get("strategy").as_deref().unwrap_or("rolling") {
            "rolling" => Strategy::Rolling,
            "canary" => Strategy::Canary {
                percent: percent("canary_percent", 10)?,
                bake: duration("bake", Duration::from_secs(20))?,
            },
            "linear" => Strategy::Linear {
                step: percent("step_percent", 10)?,
                interval: duration("step_interval", Duration::from_secs(10))?,
            },
            "blue-green" | "blue_green" | "all-at-once" => Strategy::BlueGreen,
            other => return Err(StrategyError::Unknown(other.to_owned())),
        };
        Ok(Shifting {
            strategy,
            termination_wait: duration("termination_wait", Duration::ZERO)?,
        })
    }

    /// The shifts in order, ending at 100% (none for a rolling update).
    pub fn shifts(&self) -> Vec<Shift> {
        let last = Shift {
            percent: 100,
            hold: self.termination_wait,
        };
        match self.strategy {
            Strategy::Rolling => Vec::new(),
            Strategy::Canary { percent, bake } => vec![
                Shift {
                    percent,
                    hold: bake,
                },
                last,
            ],
            Strategy::Linear { step, interval } => {
                let step = step.clamp(1, 100);
                (1..)
                    .map(|k| k * step)
                    .take_while(|&p| p < 100)
                    .map(|percent| Shift {
                        percent,
                        hold: interval,
                    })
                    .chain([last])
                    .collect()
            }
            Strategy::BlueGreen => vec![last],
        }
    }

    /// The name a report and the events use.
    pub fn name(&self) -> &'static str {
        match self.strategy {
            Strategy::Rolling => "rolling",
            Strategy::Canary { .. } => "canary",
            Strategy::Linear { .. } => "linear",
            Strategy::BlueGreen => "blue-green",
        }
    }
}

/// The rollback alarm of a traffic-shifting rollout, as CloudWatch alarms on the green
/// target group would be: green's 5xx share since the shift began is over `max` (once at
/// least `MIN_ANSWERS` green answers say anything) and worse than blue's over the same
/// time (so a region whose old version errs too does not blame the new one). Counts are
/// (answers, 5xx).
pub fn green_worse(green: (u64, u64), blue: (u64, u64), max: f64) -> Option<String> {
    const MIN_ANSWERS: u64 = 10;
    let rate = |(n, e): (u64, u64)| if n == 0 { 0.0 } else { e as f64 / n as f64 };
    let (g, b) = (rate(green), rate(blue));
    (green.0 >= MIN_ANSWERS && g > max && g > b).then(|| {
        format!(
            "the new version's 5xx rate is {:.1}% ({} of {} answers), over the {:.1}% threshold and the old version's {:.1}%",
            g * 100.0,
            green.1,
            green.0,
            max * 100.0,
            b * 100.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Shifting, StrategyError> {
        Shifting::from_query(Some(s))
    }

    fn percents(s: &Shifting) -> Vec<u32> {
        s.shifts().iter().map(|s| s.percent).collect()
    }

    #[test]
    fn canary_shifts_the_percent_then_all() {
        let s =
            q("version=2&strategy=canary&canary_percent=5&bake=20s&termination_wait=3s").unwrap();
        assert_eq!(
            s.shifts(),
            vec![
                Shift {
                    percent: 5,
                    hold: Duration::from_secs(20)
                },
                Shift {
                    percent: 100,
                    hold: Duration::from_secs(3)
                }
            ]
        );
        assert_eq!(s.name(), "canary");
    }

    #[test]
    fn linear_steps_up_to_all_without_overshooting() {
        let s = q("strategy=linear&step_percent=30&step_interval=1s").unwrap();
        assert_eq!(percents(&s), vec![30, 60, 90, 100]);
        assert!(s.shifts()[..3]
            .iter()
            .all(|x| x.hold == Duration::from_secs(1)));
        let s = q("strategy=linear&step_percent=25").unwrap();
        assert_eq!(percents(&s), vec![25, 50, 75, 100]);
    }

    #[test]
    fn blue_green_is_all_at_once_and_rolling_shifts_nothing() {
        assert_eq!(percents(&q("strategy=blue-green").unwrap()), vec![100]);
        let r = Shifting::from_query(None).unwrap();
        assert_eq!(r.strategy, Strategy::Rolling);
        assert!(r.shifts().is_empty());
    }

    #[test]
    fn bad_values_are_refused_with_the_name() {
        let e = q("strategy=canary&canary_percent=100").unwrap_err();
        assert!(e.to_string().contains("canary_percent"), "{e}");
        assert!(q("strategy=canary&canary_percent=0").is_err());
        let e = q("strategy=linear&step_interval=soon").unwrap_err();
        assert!(e.to_string().contains("step_interval"), "{e}");
        assert!(q("strategy=sideways").is_err());
    }

    #[test]
    fn the_alarm_needs_answers_a_threshold_and_a_worse_green() {
        // Too few answers to judge.
        assert!(green_worse((5, 5), (100, 0), 0.01).is_none());
        // Green errs, blue does not.
        let r = green_worse((20, 10), (400, 0), 0.01).unwrap();
        assert!(r.contains("50.0%"), "{r}");
        // Both err alike: not the new version's fault.
        assert!(green_worse((20, 2), (200, 40), 0.01).is_none());
        // Under the threshold.
        assert!(green_worse((1000, 5), (100, 0), 0.01).is_none());
    }
}
