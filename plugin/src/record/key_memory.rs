//! A mapper's memory of the input keys it has seen, with what it decided for each.
//!
//! Records from one source repeat the same keys in much the same order. Each remembered
//! key also remembers the two keys that followed it most recently, so a lookup first
//! compares the key with those guesses: a string comparison or two instead of hashing
//! the key and probing a table. Wrong guesses cost those comparisons and fall back to
//! the table.
//!
//! Two guesses because optional keys come and go: after `level`, the next key is
//! `message` in one record and `msg` in the next. On the bench's generated logs one
//! guess missed 10 % of keys and two miss 2.4 %.

use super::log_map::FastMap;

/// "No slot": after a key that was not remembered, there is no guess.
const NONE: u32 = u32::MAX;
/// Before a record's first key: the guess is the first key of the last record.
const START: u32 = u32::MAX - 1;

/// Slots guessed to come next, the most recent first ([`NONE`] for no guess).
type Guesses = [u32; 2];

struct Slot<P> {
    key: Box<str>,
    value: P,
    /// The slots that followed this one most recently, the latest first.
    next: Guesses,
}

/// Up to `cap` distinct keys, each with a value computed once. Past `cap`, new keys are
/// not remembered: keys that are data (ids as keys) must not grow memory.
pub(crate) struct KeyMemory<P> {
    index: FastMap<Box<str>, u32>,
    slots: Vec<Slot<P>>,
    /// The slots of the records' first keys, as last seen.
    first: Guesses,
    /// The slot of the previous key of the current record.
    prev: u32,
    cap: usize,
    /// Table lookups made, for tests of the guessing.
    #[cfg(test)]
    lookups: usize,
}

impl<P> KeyMemory<P> {
    pub(crate) fn new(cap: usize) -> Self {
        KeyMemory {
            index: FastMap::default(),
            slots: Vec::new(),
            first: [NONE; 2],
            prev: START,
            cap: cap.min(START as usize),
            #[cfg(test)]
            lookups: 0,
        }
    }

    /// Distinct keys remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Marks the start of a record: the next key is guessed to be the last record's
    /// first key.
    pub(crate) fn start_record(&mut self) {
        self.prev = START;
    }

    /// The value remembered for `key`, computed by `make` the first time. `None` when
    /// the key is new and the memory is full: the caller computes it for this use only.
    pub(crate) fn get_or_make(&mut self, key: &str, make: impl FnOnce(&str) -> P) -> Option<&P> {
        let guesses = match self.slots.get(self.prev as usize) {
            Some(p) => p.next,
            None if self.prev == START => self.first,
            None => [NONE; 2],
        };
        let is = |g: u32| {
            self.slots
                .get(g as usize)
                .is_some_and(|s| crate::value::same_key(&s.key, key))
        };
        let found = if is(guesses[0]) {
            guesses[0]
        } else if is(guesses[1]) {
            guesses[1]
        } else {
            self.find(key, make)
        };
        if found != NONE && found != guesses[0] {
            let latest = [found, guesses[0]];
            match self.slots.get_mut(self.prev as usize) {
                Some(p) => p.next = latest,
                None if self.prev == START => self.first = latest,
                None => {}
            }
        }
        self.prev = found;
        self.slots.get(found as usize).map(|s| &s.value)
    }

    /// The table lookup behind a wrong guess; remembers a new key while there is room.
    fn find(&mut self, key: &str, make: impl FnOnce(&str) -> P) -> u32 {
        #[cfg(test)]
        {
            self.lookups += 1;
        }
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        if self.slots.len() >= self.cap {
            return NONE;
        }
        let i = self.slots.len() as u32;
        self.slots.push(Slot {
            key: key.into(),
            value: make(key),
            next: [NONE; 2],
        });
        self.index.insert(key.into(), i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maps one record's keys; `made` lists the keys whose value was computed.
    fn run(
        m: &mut KeyMemory<String>,
        made: &mut Vec<String>,
        keys: &[&str],
    ) -> Vec<Option<String>> {
        m.start_record();
        keys.iter()
            .map(|k| {
                m.get_or_make(k, |k| {
                    made.push(k.to_string());
                    k.to_uppercase()
                })
                .cloned()
            })
            .collect()
    }

    #[test]
    fn finds_each_key_whatever_the_order() {
        let mut m = KeyMemory::new(16);
        let mut made = Vec::new();
        let orders: [&[&str]; 5] = [
            &["a", "b", "c"],
            &["a", "b", "c"],
            &["c", "a", "d", "b"],
            &["b", "b", "a"],
            &["a", "b", "c", "d"],
        ];
        for keys in orders {
            let got = run(&mut m, &mut made, keys);
            let want: Vec<_> = keys.iter().map(|k| Some(k.to_uppercase())).collect();
            assert_eq!(got, want, "{keys:?}");
        }
        // Each distinct key was computed once.
        assert_eq!(made, ["a", "b", "c", "d"]);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn a_full_memory_answers_none_for_new_keys_and_keeps_old_ones() {
        let mut m = KeyMemory::new(2);
        let mut made = Vec::new();
        assert_eq!(
            run(&mut m, &mut made, &["a", "x", "b", "a"]),
            [Some("A".into()), Some("X".into()), None, Some("A".into())]
        );
        // After an unremembered key the guess restarts cleanly.
        assert_eq!(
            run(&mut m, &mut made, &["b", "x", "a"]),
            [None, Some("X".into()), Some("A".into())]
        );
        // A key that is not remembered is not computed here either: the caller does it.
        assert_eq!(made, ["a", "x"]);
        assert_eq!(m.len(), 2);
    }

    /// An optional key that comes and goes between records costs no table lookup once
    /// both orders have been seen: the key before it guesses both of its followers.
    #[test]
    fn alternating_followers_are_both_guessed() {
        let mut m = KeyMemory::new(16);
        let mut made = Vec::new();
        for keys in [["a", "b", "c"], ["a", "x", "c"]] {
            run(&mut m, &mut made, &keys);
        }
        let warm = m.lookups;
        for i in 0..10 {
            let keys = if i % 2 == 0 {
                ["a", "b", "c"]
            } else {
                ["a", "x", "c"]
            };
            let got = run(&mut m, &mut made, &keys);
            assert_eq!(got, keys.map(|k| Some(k.to_uppercase())));
        }
        assert_eq!(m.lookups, warm, "no lookups once both orders were seen");
        // A third follower displaces the older guess, not the latest.
        run(&mut m, &mut made, &["a", "y", "c"]);
        let before = m.lookups;
        run(&mut m, &mut made, &["a", "y", "c"]);
        run(&mut m, &mut made, &["a", "x", "c"]);
        assert_eq!(m.lookups, before);
        run(&mut m, &mut made, &["a", "b", "c"]);
        assert_eq!(m.lookups, before + 1, "b was the oldest guess and fell out");
    }

    #[test]
    fn similar_keys_are_not_confused_by_the_guess() {
        let mut m = KeyMemory::new(8);
        let mut made = Vec::new();
        run(&mut m, &mut made, &["level", "msg"]);
        // Same length, different bytes, in the guessed position.
        let got = run(&mut m, &mut made, &["level", "msh", "msg"]);
        assert_eq!(
            got,
            [Some("LEVEL".into()), Some("MSH".into()), Some("MSG".into())]
        );
    }
}
