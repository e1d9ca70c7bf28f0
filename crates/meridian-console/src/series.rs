//! One-second time series in fixed rings: an hour of history in bounded memory.
//!
//! Each series is a ring of `f32` slots indexed by the second it describes; a second with
//! no value (a node that did not answer) stays NaN, so a gap shows as a gap, not a zero.
//! The number of series is capped too: the console derives its series from the config's
//! nodes, not from label values a node invents, but a cap keeps a surprise bounded.

use std::collections::HashMap;

pub struct Ring {
    slots: Box<[f32]>,
    /// The last second written, if any.
    last: Option<u64>,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Ring {
            slots: vec![f32::NAN; capacity.max(1)].into_boxed_slice(),
            last: None,
        }
    }

    /// Records `value` for second `t`. Seconds skipped since the last write become gaps;
    /// a write for an older second than the last is ignored.
    pub fn push(&mut self, t: u64, value: f64) {
        let cap = self.slots.len() as u64;
        if let Some(last) = self.last {
            if t < last {
                return;
            }
            let gap_from = (last + 1).max(t.saturating_sub(cap));
            for s in gap_from..t {
                self.slots[(s % cap) as usize] = f32::NAN;
            }
        }
        self.slots[(t % cap) as usize] = value as f32;
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
    }

    /// The values of the `n` seconds up to and including `until`, oldest first
    /// (None where there is no value).
    pub fn window(&self, until: u64, n: usize) -> Vec<Option<f64>> {
        let cap = self.slots.len() as u64;
        let n = (n as u64).min(cap);
        let Some(last) = self.last else {
            return vec![None; n as usize];
        };
        (0..n)
            .map(|i| {
                let t = (until + 1 + i).checked_sub(n)?;
                // Too old for the ring, or not written yet.
                if t > last || last - t >= cap {
                    return None;
                }
                let v = self.slots[(t % cap) as usize];
                (!v.is_nan()).then_some(v as f64)
            })
            .collect()
    }

    /// The sum of the values in the `n` seconds up to `until`.
    pub fn sum(&self, until: u64, n: usize) -> f64 {
        self.window(until, n).into_iter().flatten().sum()
    }
}

/// Every series the console keeps, by name.
pub struct Store {
    capacity: usize,
    max_series: usize,
    series: HashMap<String, Ring>,
    /// Writes refused because the cap was reached.
    pub refused: u64,
}

impl Store {
    /// `capacity` seconds per series, at most `max_series` series.
    pub fn new(capacity: usize, max_series: usize) -> Self {
        Store {
            capacity,
            max_series,
            series: HashMap::new(),
            refused: 0,
        }
    }

    pub fn push(&mut self, name: &str, t: u64, value: f64) {
        if let Some(r) = self.series.get_mut(name) {
            r.push(t, value);
            return;
        }
        if self.series.len() >= self.max_series {
            self.refused += 1;
            return;
        }
        let mut r = Ring::new(self.capacity);
        r.push(t, value);
        self.series.insert(name.to_owned(), r);
    }

    pub fn get(&self, name: &str) -> Option<&Ring> {
        self.series.get(name)
    }

    /// The value series `name` got for second `sec` (0 without one): a tick's delta.
    pub fn sum_last(&self, name: &str, sec: u64) -> f64 {
        self.get(name).map_or(0.0, |r| r.sum(sec, 1))
    }

    /// The sum of series `name` over the `secs` seconds up to `sec` (at least one second).
    pub fn sum_window(&self, name: &str, sec: u64, secs: u64) -> f64 {
        self.get(name)
            .map_or(0.0, |r| r.sum(sec, secs.max(1) as usize))
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.series.keys()
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Bytes held by the rings: the bound the retention and series cap put on memory.
    pub fn bytes(&self) -> usize {
        self.series.len() * self.capacity * std::mem::size_of::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_capacity_seconds_with_gaps() {
        let mut r = Ring::new(5);
        r.push(100, 1.0);
        r.push(101, 2.0);
        r.push(103, 4.0); // 102 is a gap
        assert_eq!(
            r.window(103, 4),
            vec![Some(1.0), Some(2.0), None, Some(4.0)]
        );
        // Asking for more than the ring holds gives at most its capacity.
        assert_eq!(r.window(103, 10).len(), 5);
        // Wrapping around overwrites the oldest seconds.
        for t in 104..=110 {
            r.push(t, t as f64);
        }
        assert_eq!(
            r.window(110, 5),
            vec![
                Some(106.0),
                Some(107.0),
                Some(108.0),
                Some(109.0),
                Some(110.0)
            ]
        );
        // A long silence leaves only gaps, never stale values from a lap ago.
        r.push(200, 7.0);
        assert_eq!(r.window(200, 3), vec![None, None, Some(7.0)]);
        assert_eq!(r.window(199, 2), vec![None, None]);
        // Old writes are ignored; sums skip gaps.
        r.push(150, 9.0);
        assert_eq!(r.sum(200, 5), 7.0);
    }

    #[test]
    fn the_store_is_bounded() {
        let mut s = Store::new(60, 2);
        s.push("a", 1, 1.0);
        s.push("b", 1, 1.0);
        s.push("c", 1, 1.0);
        s.push("a", 2, 2.0);
        assert_eq!(s.len(), 2);
        assert_eq!(s.refused, 1);
        assert!(s.get("c").is_none());
        assert_eq!(s.bytes(), 2 * 60 * 4);
    }
}
