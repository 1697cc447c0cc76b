//! The pinned state a session holds on its primary connection, piece by
//! piece, so that each piece ends on its own (a temp table dropped, a
//! cursor deallocated, an app lock released) and the session is free to
//! move once none is left.

use crate::classify::{Pin, PinReason};

/// Most pieces told apart by name; a client cannot make the set grow
/// without bound. Past it, a new piece is kept as "more of this reason",
/// which only a reset ends.
pub const MAX_PINS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pin: Pin,
    /// Starts not yet ended (1 for reasons that are not counted).
    count: u32,
    /// Kept past [`MAX_PINS`]: no end matches it.
    until_reset: bool,
}

/// Active pins, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinSet {
    entries: Vec<Entry>,
}

impl PinSet {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The reason of the oldest active pin.
    pub fn first(&self) -> Option<PinReason> {
        self.entries.first().map(|e| e.pin.reason)
    }

    /// Active pins, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Pin> {
        self.entries.iter().map(|e| &e.pin)
    }

    /// A reset would not undo one of them: the connection must be discarded.
    pub fn survives_reset(&self) -> bool {
        self.entries.iter().any(|e| e.pin.reason.survives_reset())
    }

    /// How many starts of `pin` are not ended yet.
    #[cfg(test)]
    pub fn count(&self, pin: &Pin) -> u32 {
        self.entries
            .iter()
            .filter(|e| e.pin == *pin && !e.until_reset)
            .map(|e| e.count)
            .sum()
    }

    /// Adds a start of `pin`.
    pub fn start(&mut self, pin: &Pin) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.pin == *pin) {
            if pin.reason.is_counted() {
                entry.count = entry.count.saturating_add(1);
            }
            return;
        }
        if self.entries.len() < MAX_PINS {
            self.entries.push(Entry {
                pin: pin.clone(),
                count: 1,
                until_reset: false,
            });
            return;
        }
        let overflow = self
            .entries
            .iter()
            .any(|e| e.until_reset && e.pin.reason == pin.reason);
        if !overflow {
            tracing::warn!(
                reason = pin.reason.as_str(),
                "more than {MAX_PINS} pinned objects; the session keeps the primary until it is reset"
            );
            self.entries.push(Entry {
                pin: Pin::named(pin.reason, format!("(more than {MAX_PINS})")),
                count: 1,
                until_reset: true,
            });
        }
    }

    /// Ends one start of `pin`: names must match exactly, and a nameless
    /// start is ended only by a nameless end.
    pub fn end(&mut self, pin: &Pin) {
        let Some(i) = self
            .entries
            .iter()
            .position(|e| e.pin == *pin && !e.until_reset)
        else {
            return;
        };
        let entry = &mut self.entries[i];
        entry.count -= 1;
        if entry.count == 0 {
            self.entries.remove(i);
        }
    }

    /// The pins of `self` that `after` no longer has.
    pub fn ended_in<'a>(&'a self, after: &'a PinSet) -> impl Iterator<Item = &'a Pin> {
        self.iter().filter(|p| !after.iter().any(|q| q == *p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_pins_end_by_exact_name_and_counted_ones_by_count() {
        let mut set = PinSet::default();
        let t = Pin::named(PinReason::TempTable, "#t");
        set.start(&t);
        set.start(&t);
        set.end(&Pin::named(PinReason::TempTable, "#T"));
        assert_eq!(set.first(), Some(PinReason::TempTable));
        set.end(&t);
        assert!(set.is_empty(), "a temp table is created once");
        let lock = Pin::named(PinReason::SessionLock, "r");
        set.start(&lock);
        set.start(&lock);
        set.end(&lock);
        assert_eq!(set.count(&lock), 1, "app locks nest");
        set.end(&lock);
        assert!(set.is_empty());
        let unknown = Pin::new(PinReason::SessionLock);
        set.start(&unknown);
        set.end(&lock);
        assert_eq!(
            set.count(&unknown),
            1,
            "a named end never ends a nameless start"
        );
    }

    #[test]
    fn the_set_is_bounded_and_overflow_holds_until_reset() {
        let mut set = PinSet::default();
        for i in 0..MAX_PINS + 10 {
            set.start(&Pin::named(PinReason::TempTable, format!("#t{i}")));
        }
        assert_eq!(set.iter().count(), MAX_PINS + 1);
        for i in 0..MAX_PINS + 10 {
            set.end(&Pin::named(PinReason::TempTable, format!("#t{i}")));
        }
        assert_eq!(set.first(), Some(PinReason::TempTable));
        assert_eq!(set.iter().count(), 1);
    }

    #[test]
    fn reasons_that_survive_a_reset() {
        let mut set = PinSet::default();
        set.start(&Pin::named(PinReason::TempTable, "#t"));
        assert!(!set.survives_reset());
        set.start(&Pin::new(PinReason::ExecuteAs));
        assert!(set.survives_reset());
        set.end(&Pin::new(PinReason::ExecuteAs));
        assert!(!set.survives_reset());
        set.start(&Pin::new(PinReason::AppRole));
        assert!(set.survives_reset());
    }
}
